"""Argo CD health.lua scripts, run by real Lua (lupa) against status objects that the
reconciler writes (and, in test_operator_e2e.py, that the API server returns)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from plugins.prerequisites import require_module

from infinitecontext.crds.generate import ARGOCD_DIR
from infinitecontext.crds.models import RegisteredModel
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.jobs import JobObservation
from infinitecontext.operator.workloads.planner import (
    InputModel,
    Observed,
    RunObservation,
    parse,
    reconcile,
)

lupa = require_module("lupa", "Lua for Python, in the dev extra")

WORKLOAD = ARGOCD_DIR / "workload-health.lua"
ISVC = ARGOCD_DIR / "inferenceservice-health.lua"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def health(script: Path, obj: dict[str, Any]) -> tuple[str, str]:
    """What Argo CD would compute: run the script with `obj` as a global."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script.read_text())
    return str(result["status"]), str(result["message"] or "")


def as_object(resource: Resource, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "infinitecontext.dev/v1alpha1",
        "kind": resource.kind,
        "metadata": {"name": resource.name, "generation": resource.generation},
        "spec": resource.spec,
        "status": status,
    }


def pass_(resource: Resource, observed: Observed) -> tuple[Resource, dict[str, Any]]:
    status = reconcile(resource, parse(resource), observed, NOW).status
    return Resource(**{**resource.__dict__, "status": status}), as_object(resource, status)


SPEC = {"model": {"preset": "tiny"}, "hyperparameters": {"steps": 8, "warmupSteps": 2}}


def test_training_run_lifecycle_health() -> None:
    res = Resource("TrainingRun", "t", "ns", "u", 1, SPEC, {})
    assert health(WORKLOAD, as_object(res, {}) | {"status": None})[0] == "Progressing"
    res, obj = pass_(res, Observed())
    assert health(WORKLOAD, obj)[0] == "Progressing"
    job = JobObservation("Succeeded", "Completed")
    run = RunObservation("r", "FINISHED", has_model=True)
    model = RegisteredModel(run_id="r", name="m", version="1", uri="models:/m/1")
    res, obj = pass_(res, Observed(job=job, run=run, registered=model))
    assert health(WORKLOAD, obj) == ("Healthy", "registered models:/m/1")
    moved = obj | {"metadata": {"name": "t", "generation": 2}}
    assert health(WORKLOAD, moved)[0] == "Progressing"


def test_failed_and_invalid_are_degraded() -> None:
    res = Resource("TrainingRun", "t", "ns", "u", 1, SPEC, {})
    res, _ = pass_(res, Observed())
    _, obj = pass_(res, Observed(job=JobObservation("Failed", "BackoffLimitExceeded", "boom")))
    assert health(WORKLOAD, obj) == ("Degraded", "boom")
    bad = Resource("TrainingRun", "t", "ns", "u", 1, {"model": {"preset": "huge"}}, {})
    _, obj = pass_(bad, Observed())
    assert health(WORKLOAD, obj)[0] == "Degraded"


def test_suspended() -> None:
    res = Resource("TrainingRun", "t", "ns", "u", 1, SPEC | {"suspend": True}, {})
    _, obj = pass_(res, Observed())
    assert health(WORKLOAD, obj)[0] == "Suspended"


def test_waiting_alignment_is_progressing_with_the_reason() -> None:
    res = Resource("Alignment", "a", "ns", "u", 1, {"baseModel": {"trainingRun": "t"}}, {})
    _, obj = pass_(res, Observed(input=InputModel(False, message="waiting for TrainingRun t")))
    assert health(WORKLOAD, obj) == ("Progressing", "waiting for TrainingRun t")


def _isvc(conditions: list[dict[str, str]], generation: int = 1, replicas: int = 2) -> Any:
    return {
        "metadata": {"name": "s", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1, "conditions": conditions},
    }


@pytest.mark.parametrize(
    ("conditions", "generation", "replicas", "expected"),
    [
        ([{"type": "Ready", "status": "True", "message": "ok"}], 1, 2, "Healthy"),
        ([{"type": "Ready", "status": "True"}], 2, 2, "Progressing"),
        (
            [{"type": "Ready", "status": "True"}, {"type": "Progressing", "status": "True"}],
            1,
            2,
            "Progressing",
        ),
        ([{"type": "RolledBack", "status": "True", "message": "gate failed"}], 1, 2, "Degraded"),
        ([{"type": "Degraded", "status": "True"}], 1, 2, "Degraded"),
        ([{"type": "Ready", "status": "True"}], 1, 0, "Suspended"),
        ([], 1, 2, "Progressing"),
    ],
)
def test_inference_service_health(
    conditions: list[dict[str, str]], generation: int, replicas: int, expected: str
) -> None:
    assert health(ISVC, _isvc(conditions, generation, replicas))[0] == expected
