"""Argo CD health of InferenceService (deploy/argocd/inferenceservice-health.lua), run by
real Lua on the statuses the planner writes through a canary and a failed rollout.
(test_inference_e2e.py runs it on the objects the API server returns as well.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from plugins.prerequisites import require_module

from infinitecontext.crds.generate import ARGOCD_DIR
from infinitecontext.operator.inference.children import LABEL_REVISION
from infinitecontext.operator.inference.planner import (
    DeploymentState,
    GateState,
    InferenceObserved,
    InvalidSpec,
    parse,
    plan_inference,
)
from infinitecontext.operator.resource import Resource

lupa = require_module("lupa", "Lua for Python, in the dev extra")

SCRIPT = ARGOCD_DIR / "inferenceservice-health.lua"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def argocd_health(obj: dict[str, Any], script: Path = SCRIPT) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script.read_text())
    return str(result["status"]), str(result["message"] or "")


def as_object(svc: Resource) -> dict[str, Any]:
    return {
        "apiVersion": "infinitecontext.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": svc.name, "generation": svc.generation},
        "spec": svc.spec,
        "status": svc.status,
    }


def spec(version: str) -> dict[str, Any]:
    rollout = {"strategy": "Canary", "stepIntervalSeconds": 0, "gate": {"evaluation": "e"}}
    return {
        "model": {"mlflow": {"name": "m", "version": version}},
        "replicas": 4,
        "rollout": rollout,
    }


def step(svc: Resource, observed: InferenceObserved, now: datetime = T0) -> tuple[Resource, Any]:
    spec_ = parse(svc)
    assert not isinstance(spec_, InvalidSpec)
    plan = plan_inference(svc, spec_, observed, now)
    return replace(svc, status=plan.status), plan


def ready(plan: Any, name: str) -> DeploymentState | None:
    obj = next((o for o in plan.apply if o["metadata"]["name"] == name), None)
    if obj is None:
        return None
    n = obj["spec"]["replicas"]
    revision = int(obj["spec"]["template"]["metadata"]["labels"][LABEL_REVISION])
    return DeploymentState(revision, n, n, n, n, n)


def stable_on_v1() -> Resource:
    passed = GateState("Passed", "")
    svc, plan = step(
        Resource("InferenceService", "s", "ns", "u", 1, spec("1"), {}),
        InferenceObserved("models:/m/1", gate=passed),
    )
    assert argocd_health(as_object(svc))[0] == "Progressing"
    svc, _ = step(svc, InferenceObserved("models:/m/1", stable=ready(plan, "s")))
    return svc


def test_healthy_then_progressing_during_the_canary_then_healthy() -> None:
    svc = stable_on_v1()
    assert argocd_health(as_object(svc)) == (
        "Healthy",
        "revision 1 (models:/m/1) serves; 4/4 replicas ready",
    )
    v2 = replace(svc, spec=spec("2"), generation=2)
    assert argocd_health(as_object(v2))[0] == "Progressing"  # generation not observed yet
    waiting = GateState("Waiting", "Evaluation e is Running")
    v2, plan = step(v2, InferenceObserved("models:/m/2", gate=waiting))
    status, message = argocd_health(as_object(v2))
    assert status == "Progressing" and "canary" in message
    observed = InferenceObserved(
        "models:/m/2", stable=ready(plan, "s"), canary=ready(plan, "s-canary"), gate=waiting
    )
    v2, plan = step(v2, observed, T0 + timedelta(seconds=5))
    v2, plan = step(
        v2, replace(observed, canary=ready(plan, "s-canary")), T0 + timedelta(seconds=9)
    )
    assert argocd_health(as_object(v2)) == (
        "Progressing",
        "revision 2 (models:/m/2) waits for its gate: Evaluation e is Running",
    )
    passed = GateState("Passed", "")
    later = T0 + timedelta(seconds=20)
    v2, plan = step(v2, replace(observed, canary=ready(plan, "s-canary"), gate=passed), later)
    v2, plan = step(
        v2, InferenceObserved("models:/m/2", stable=ready(plan, "s"), gate=passed), later
    )
    assert v2.status["stableRevision"] == 2
    assert argocd_health(as_object(v2))[0] == "Healthy"


def test_degraded_after_a_failed_rollout() -> None:
    svc = replace(stable_on_v1(), spec=spec("2"))
    svc, _ = step(svc, InferenceObserved("models:/m/2", gate=GateState("Waiting", "")))
    failed = GateState("Failed", "Evaluation e: passkey accuracy 0.4 < 0.9")
    svc, _ = step(svc, InferenceObserved("models:/m/2", gate=failed))
    status, message = argocd_health(as_object(svc))
    assert status == "Degraded"
    assert "0.4 < 0.9" in message and "revision 2" in message
    # Setting the spec back to the stable revision clears it.
    back = replace(svc, spec=spec("1"))
    back, _ = step(back, InferenceObserved("models:/m/1", stable=DeploymentState(1, 4, 4, 4, 4, 4)))
    assert argocd_health(as_object(back))[0] == "Healthy"
