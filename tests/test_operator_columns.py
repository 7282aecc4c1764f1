"""What `kubectl get` shows of our kinds: the Ready condition's reason and message as
columns, and a phase even for an object whose passes fail before any phase is set
(`passes.retrying`), checked against the real API server's printer columns."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from threading import Lock
from types import SimpleNamespace
from typing import Any

import pytest
from plugins.kube import KubeCluster

from infinitecontext.crds.models import TRAINING_RUN
from infinitecontext.operator.passes import reconcile_pass, retrying

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_a_failing_pass_on_a_fresh_object_leaves_a_phase_and_says_why() -> None:
    status = retrying({}, ConnectionError("mlflow.test: connection refused"), NOW, 3)
    assert status["phase"] == "Pending"
    [ready] = status["conditions"]
    assert ready["type"] == "Ready" and ready["status"] == "Unknown"
    assert ready["reason"] == "Retrying" and ready["observedGeneration"] == 3
    assert ready["message"] == "ConnectionError: mlflow.test: connection refused"


def test_a_failing_pass_keeps_what_the_controller_set() -> None:
    """A phase the controller wrote (with its own Ready reason) is left as it is."""
    running = {"phase": "Running", "conditions": [{"type": "Ready", "reason": "Running"}]}
    assert retrying(running, RuntimeError("boom"), NOW, 1) == running


def test_the_pass_writes_that_status_when_the_controller_raises() -> None:
    patches: list[dict[str, Any]] = []

    def patch_status(kind: Any, name: str, namespace: str, patch: dict[str, Any]) -> str:
        patches.append(patch)
        return "7"

    ctx: Any = SimpleNamespace(
        locks=defaultdict(Lock), written={}, kube=SimpleNamespace(patch_status=patch_status)
    )
    body = {"metadata": {"name": "r", "namespace": "ns", "uid": "u1", "generation": 1}}
    with pytest.raises(OSError), reconcile_pass(ctx, TRAINING_RUN, body):
        raise OSError("unreachable")
    [patch] = patches
    assert patch["phase"] == "Pending"
    assert patch["conditions"][0]["reason"] == "Retrying"


@pytest.mark.slow
def test_kubectl_get_shows_phase_reason_and_message(
    icx_crds: KubeCluster, kube_namespace: str
) -> None:
    manifest = f"""
apiVersion: infinitecontext.dev/v1alpha1
kind: TrainingRun
metadata: {{name: columns, namespace: {kube_namespace}}}
spec: {{model: {{preset: tiny}}}}
"""
    icx_crds.kubectl("apply", "-f", "-", stdin=manifest)
    status = retrying({}, ConnectionError("mlflow.test: connection refused"), NOW, 1)
    patch = json.dumps({"status": status})
    icx_crds.kubectl(
        "patch", "trainingrun", "columns", "-n", kube_namespace,
        "--subresource=status", "--type=merge", "-p", patch,
    )  # fmt: skip
    table = icx_crds.kubectl("get", "trainingrun", "columns", "-n", kube_namespace)
    header, row = table.splitlines()
    assert header.split()[:3] == ["NAME", "PHASE", "READY"]
    assert header.split()[-2:] == ["REASON", "MESSAGE"]
    assert row.split()[:3] == ["columns", "Pending", "Unknown"]
    assert row.endswith("Retrying   ConnectionError: mlflow.test: connection refused")
