"""Deleting a SLURM-backed TrainingRun while SLURM cannot be reached: the real API
server and operator process; slurmrestd is a port nothing listens on and the operator's
PATH has no SLURM commands. The finalizer's tries show in a `Deleting` condition, and
the skip-remote-cancel annotation lets the deletion finish."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from plugins.kube import KubeCluster
from plugins.operator import StartOperator

from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools.waiting import wait_for

SPEC = {
    "model": {"preset": "tiny"},
    "backend": "slurm",
    "slurm": {"partition": "debug"},
    "hyperparameters": {"steps": 8, "warmupSteps": 2},
}


def deleting(cluster: KubeCluster, namespace: str) -> dict[str, Any] | None:
    obj = json.loads(cluster.kubectl("get", "trainingrun", "gone", "-n", namespace, "-o", "json"))
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Deleting"), None)


def is_gone(cluster: KubeCluster, namespace: str) -> bool:
    names = cluster.kubectl("get", "trainingruns", "-n", namespace, "-o", "name")
    return "gone" not in names


def test_deletion_with_slurm_down_shows_its_tries_and_the_annotation_ends_it(
    icx_crds: KubeCluster, kube_namespace: str, operator_factory: StartOperator
) -> None:
    operator_factory(
        icx_crds.kubeconfig,
        [kube_namespace],
        extra_args=["--slurm-url", "http://127.0.0.1:9"],
        extra_env={"PATH": str(Path(sys.executable).parent)},
    )
    obj = {
        "apiVersion": "infinitecontext.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "gone", "namespace": kube_namespace},
        "spec": SPEC,
    }
    icx_crds.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj))
    wait_for(
        "the operator's finalizer",
        lambda: (
            "finalizers"
            in icx_crds.kubectl(
                "get", "trainingrun", "gone", "-n", kube_namespace, "-o", "jsonpath={.metadata}"
            )
        ),
        timeout_s=60,
    )
    icx_crds.kubectl("delete", "trainingrun", "gone", "-n", kube_namespace, "--wait=false")
    shown = wait_for("the Deleting condition", lambda: deleting(icx_crds, kube_namespace), 60)
    assert shown["reason"] == "RemoteCancelRetrying"
    assert "try 1 of 12" in shown["message"]
    assert "infinitecontext.dev/skip-remote-cancel" in shown["message"]
    icx_crds.kubectl(
        "annotate", "trainingrun", "gone", "-n", kube_namespace,
        "infinitecontext.dev/skip-remote-cancel=true",
    )  # fmt: skip
    wait_for(
        "the deletion to finish",
        lambda: is_gone(icx_crds, kube_namespace),
        timeout_s=90,
        retry_on=(devcluster.ClusterError,),
    )
    events = icx_crds.kubectl("get", "events", "-n", kube_namespace, "-o", "json")
    assert "RemoteCancelSkipped" in events
