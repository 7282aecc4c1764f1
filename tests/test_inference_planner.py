"""The pure InferenceService planner, transition by transition (operator/inference/planner.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infinitecontext.crds.models import RolloutGate, Thresholds
from infinitecontext.operator.inference.children import LABEL_REVISION, quantity, server_command
from infinitecontext.operator.inference.planner import (
    DeploymentState,
    GateState,
    InferenceObserved,
    InferencePlan,
    InvalidSpec,
    canary_replicas,
    canary_steps,
    gate_verdict,
    invalid_plan,
    parse,
    plan_inference,
    rollback_patch,
    rollback_target,
    stable_replicas_beside,
)
from infinitecontext.operator.resource import Resource

T0 = datetime(2026, 1, 1, tzinfo=UTC)
V1, V2, V3 = "models:/tiny/1", "models:/tiny/2", "models:/tiny/3"


def spec(version: str = "1", **fields: Any) -> dict[str, Any]:
    return {"model": {"mlflow": {"name": "tiny", "version": version}}, **fields}


def service(spec_: dict[str, Any], status: dict[str, Any] | None = None, gen: int = 1) -> Resource:
    return Resource("InferenceService", "svc", "ns", "uid-1", gen, spec_, status or {})


def run(
    svc: Resource, observed: InferenceObserved, now: datetime
) -> tuple[Resource, InferencePlan]:
    """One pass as the handler plans it: parse, then the Invalid path or the planner."""
    spec = parse(svc)
    if isinstance(spec, InvalidSpec):
        plan = invalid_plan(svc, spec, now)
    else:
        plan = plan_inference(svc, spec, observed, now)
    return replace(svc, status=plan.status), plan


def children(plan: InferencePlan) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in plan.apply}


def deleted(plan: InferencePlan) -> set[str]:
    return {f"{d.kind}/{d.name}" for d in plan.delete}


def revision_of(obj: dict[str, Any]) -> int:
    return int(obj["spec"]["template"]["metadata"]["labels"][LABEL_REVISION])


def rolled_out(obj: dict[str, Any]) -> DeploymentState:
    """What the Deployment controller reports once `obj` has fully rolled out."""
    n = obj["spec"]["replicas"]
    return DeploymentState(revision_of(obj), n, n, n, n, n)


def stuck(obj: dict[str, Any], ready: int = 0) -> DeploymentState:
    n = obj["spec"]["replicas"]
    return DeploymentState(revision_of(obj), n, ready, ready, 1, n + 1)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def outcomes(status: dict[str, Any]) -> dict[int, str]:
    return {r["revision"]: r["outcome"] for r in status["revisions"]}


def serve_v1(spec_: dict[str, Any]) -> Resource:
    """An InferenceService whose revision 1 (V1) is stable and fully ready (its gate, if
    any, passed)."""
    passed = GateState("Passed", "")
    svc, plan = run(service(spec_), InferenceObserved(model_uri=V1, gate=passed), T0)
    stable = rolled_out(children(plan)["Deployment/svc"])
    svc, _ = run(svc, InferenceObserved(model_uri=V1, stable=stable), T0)
    assert svc.status["stableRevision"] == 1
    return svc


# ---------------------------------------------------------------- create


def test_create_rolls_out_revision_one_then_is_available() -> None:
    svc, plan = run(service(spec(replicas=2)), InferenceObserved(model_uri=V1), T0)
    kids = children(plan)
    assert set(kids) == {"Deployment/svc", "Service/svc", "PodDisruptionBudget/svc"}
    assert "Deployment/svc-canary" in deleted(plan)
    assert "HorizontalPodAutoscaler/svc" in deleted(plan)
    dep = kids["Deployment/svc"]
    assert dep["spec"]["replicas"] == 2 and revision_of(dep) == 1
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    assert svc.status["phase"] == "Progressing"
    assert outcomes(svc.status) == {1: "Progressing"}
    assert condition(svc.status, "Ready")["status"] == "False"
    assert [e.reason for e in plan.events][:1] == ["NewRevision"]

    svc, plan = run(svc, InferenceObserved(model_uri=V1, stable=rolled_out(dep)), T0)
    status = svc.status
    assert outcomes(status) == {1: "Stable"} and status["stableRevision"] == 1
    assert status["phase"] == "Available" and status["latestRolledOutModel"] == V1
    for type_, value in [("Ready", "True"), ("Available", "True"), ("Progressing", "False")]:
        assert condition(status, type_)["status"] == value
    assert condition(status, "RolledBack")["status"] == "False"
    assert status["replicas"] == 2 and status["readyReplicas"] == 2
    assert status["url"] == "http://svc.ns.svc.cluster.local:8000"
    assert status["selector"] == "infinitecontext.dev/inferenceservice=svc"
    assert "Promoted" in [e.reason for e in plan.events]


def test_deployment_runs_the_server_entrypoint_with_probes_and_gpus() -> None:
    _, plan = run(
        service(spec(resources={"gpusPerNode": 2}, server={"maxModelLen": 4096})),
        InferenceObserved(model_uri=V1, tracking_uri="http://mlflow:5000"),
        T0,
    )
    pod = children(plan)["Deployment/svc"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:3] == ["icx", "serve", V1]
    assert "--tensor-parallel-size" in container["command"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] == 120
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow:5000"} in container["env"]
    assert {v["name"] for v in pod["volumes"]} == {"model-cache", "shm"}


def test_server_command_passes_extra_vllm_arguments() -> None:
    from infinitecontext.crds.models import ServedTemplate, ServerOptions

    template = ServedTemplate(model_uri=V1, server=ServerOptions(extra_args=["--seed=1"]))
    argv = server_command("svc", template)
    assert argv[argv.index("--served-model-name") + 1] == "svc"
    assert "--vllm-arg=--seed=1" in argv


def test_waiting_for_the_model_deploys_nothing() -> None:
    svc, plan = run(service(spec()), InferenceObserved(model_message="no version yet"), T0)
    assert plan.apply == []
    progressing = condition(svc.status, "Progressing")
    assert progressing["reason"] == "WaitingForModel" and progressing["message"] == "no version yet"
    assert svc.status["phase"] == "Progressing"


def test_invalid_spec_is_degraded() -> None:
    svc, plan = run(service({"model": {}}), InferenceObserved(), T0)
    assert svc.status["phase"] == "Degraded"
    assert condition(svc.status, "Degraded")["reason"] == "InvalidSpec"
    assert plan.apply == [] and plan.events[0].type == "Warning"


# ---------------------------------------------------------------- RollingUpdate


def test_rolling_update_new_model_version_becomes_a_stable_revision() -> None:
    svc = serve_v1(spec(replicas=2))
    svc = replace(svc, spec=spec("2", replicas=2), generation=2)
    v1 = DeploymentState(1, 2, 2, 2, 2, 2)
    svc, plan = run(svc, InferenceObserved(model_uri=V2, stable=v1), T0)
    dep = children(plan)["Deployment/svc"]
    assert revision_of(dep) == 2 and dep["spec"]["replicas"] == 2
    assert outcomes(svc.status) == {1: "Stable", 2: "Progressing"}
    assert condition(svc.status, "Progressing")["reason"] == "RollingUpdate"
    assert condition(svc.status, "Ready")["status"] == "True"  # revision 1 still serves

    svc, _ = run(svc, InferenceObserved(model_uri=V2, stable=rolled_out(dep)), T0)
    status = svc.status
    assert outcomes(status) == {1: "Superseded", 2: "Stable"}
    assert status["revisions"][0]["reason"] == "Replaced"
    assert status["latestRolledOutModel"] == V2 and status["previousRolledOutModel"] == V1
    assert status["revisions"][1]["template"]["modelUri"] == V2


def test_a_quiet_pass_changes_nothing() -> None:
    svc = serve_v1(spec())
    dep = children(run(svc, InferenceObserved(model_uri=V1), T0)[1])["Deployment/svc"]
    observed = InferenceObserved(model_uri=V1, stable=rolled_out(dep))
    again, plan = run(svc, observed, T0 + timedelta(hours=1))
    assert again.status == svc.status and plan.events == []


def test_scaling_changes_the_deployment_replicas() -> None:
    svc = serve_v1(spec(replicas=1))
    _, plan = run(replace(svc, spec=spec(replicas=3)), InferenceObserved(model_uri=V1), T0)
    assert children(plan)["Deployment/svc"]["spec"]["replicas"] == 3
    assert outcomes(plan.status) == {1: "Stable"}  # replicas are not a new revision


def test_changing_the_spec_mid_rollout_abandons_the_old_rollout() -> None:
    svc = serve_v1(spec())
    svc, _ = run(replace(svc, spec=spec("2")), InferenceObserved(model_uri=V2), T0)
    svc, plan = run(replace(svc, spec=spec("3")), InferenceObserved(model_uri=V3), T0)
    assert outcomes(svc.status) == {1: "Stable", 2: "Superseded", 3: "Progressing"}
    assert svc.status["revisions"][1]["reason"] == "Abandoned"
    assert revision_of(children(plan)["Deployment/svc"]) == 3


def test_setting_the_spec_back_mid_rollout_keeps_the_stable_revision() -> None:
    svc = serve_v1(spec())
    svc, _ = run(replace(svc, spec=spec("2")), InferenceObserved(model_uri=V2), T0)
    svc, plan = run(replace(svc, spec=spec("1")), InferenceObserved(model_uri=V1), T0)
    assert outcomes(svc.status) == {1: "Stable", 2: "Superseded"}
    assert revision_of(children(plan)["Deployment/svc"]) == 1
    assert "RolloutAborted" in [e.reason for e in plan.events]


# ---------------------------------------------------------------- automatic rollback


def test_revision_not_ready_within_the_deadline_is_rolled_back() -> None:
    rollout = {"progressDeadlineSeconds": 60}
    svc = serve_v1(spec(rollout=rollout))
    svc, plan = run(replace(svc, spec=spec("2", rollout=rollout)), InferenceObserved(V2), T0)
    new = children(plan)["Deployment/svc"]
    observed = InferenceObserved(model_uri=V2, stable=stuck(new))
    svc, plan = run(svc, observed, T0 + timedelta(seconds=59))
    assert outcomes(svc.status)[2] == "Progressing"

    # Revision 1's pods still run beside the stuck new one (maxUnavailable 0).
    observed = replace(observed, stable=replace(observed.stable, ready_replicas=1))
    svc, plan = run(svc, observed, T0 + timedelta(seconds=61))
    status = svc.status
    assert outcomes(status) == {1: "Stable", 2: "RolledBack"}
    assert revision_of(children(plan)["Deployment/svc"]) == 1
    rolled = condition(status, "RolledBack")
    assert rolled["status"] == "True" and rolled["reason"] == "ProgressDeadlineExceeded"
    assert condition(status, "Degraded")["status"] == "True"
    assert condition(status, "Ready")["status"] == "True"  # revision 1 serves on
    assert status["phase"] == "Degraded"
    warning = next(e for e in plan.events if e.reason == "RolledBack")
    assert warning.type == "Warning" and "rolled back to revision 1" in warning.message

    # The spec still asks for revision 2's template: it is not rolled out again.
    svc, plan = run(svc, InferenceObserved(model_uri=V2), T0 + timedelta(hours=1))
    assert outcomes(svc.status) == {1: "Stable", 2: "RolledBack"}
    assert revision_of(children(plan)["Deployment/svc"]) == 1


def test_crash_looping_revision_is_rolled_back() -> None:
    svc = serve_v1(spec())
    svc, _ = run(replace(svc, spec=spec("2")), InferenceObserved(model_uri=V2), T0)
    crash = InferenceObserved(model_uri=V2, crashlooping={2: "server: CrashLoopBackOff"})
    svc, plan = run(svc, crash, T0 + timedelta(seconds=5))
    assert outcomes(svc.status)[2] == "RolledBack"
    assert condition(svc.status, "RolledBack")["reason"] == "CrashLoopBackOff"
    assert revision_of(children(plan)["Deployment/svc"]) == 1


def test_first_revision_rolled_back_leaves_nothing_serving() -> None:
    svc, plan = run(
        service(spec(rollout={"progressDeadlineSeconds": 1})), InferenceObserved(V1), T0
    )
    observed = InferenceObserved(model_uri=V1, stable=stuck(children(plan)["Deployment/svc"]))
    svc, plan = run(svc, observed, T0 + timedelta(seconds=5))
    assert outcomes(svc.status) == {1: "RolledBack"}
    assert plan.apply == [] and svc.status["phase"] == "Degraded"
    progressing = condition(svc.status, "Progressing")  # ended, but not "RolloutComplete"
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_setting_the_spec_back_clears_rolled_back() -> None:
    svc = serve_v1(spec())
    svc, _ = run(replace(svc, spec=spec("2")), InferenceObserved(model_uri=V2), T0)
    crash = InferenceObserved(model_uri=V2, crashlooping={2: "boom"})
    svc, _ = run(svc, crash, T0)
    svc, _ = run(replace(svc, spec=spec("1")), InferenceObserved(model_uri=V1), T0)
    assert condition(svc.status, "RolledBack")["status"] == "False"
    assert condition(svc.status, "Degraded")["status"] == "False"


# ---------------------------------------------------------------- canary and gate


def canary_spec(version: str, gate: bool = True, replicas: int = 10) -> dict[str, Any]:
    rollout: dict[str, Any] = {
        "strategy": "Canary",
        "canaryPercent": 10,
        "steps": [10, 50, 100],
        "stepIntervalSeconds": 30,
        "progressDeadlineSeconds": 300,
    }
    if gate:
        rollout["gate"] = {"evaluation": "eval-v2"}
    return spec(version, replicas=replicas, rollout=rollout)


def test_canary_splits_steps_waits_for_the_gate_then_promotes() -> None:
    svc = serve_v1(canary_spec("1"))
    svc = replace(svc, spec=canary_spec("2"))
    waiting = GateState("Waiting", "Evaluation eval-v2 is Running")
    svc, plan = run(svc, InferenceObserved(model_uri=V2, gate=waiting), T0)
    kids = children(plan)
    assert kids["Deployment/svc-canary"]["spec"]["replicas"] == 1
    assert revision_of(kids["Deployment/svc-canary"]) == 2
    assert kids["Deployment/svc"]["spec"]["replicas"] == 9
    assert revision_of(kids["Deployment/svc"]) == 1
    assert svc.status["canaryRevision"] == 2 and svc.status["canaryPercent"] == 10
    assert condition(svc.status, "Progressing")["reason"] == "CanaryStep"

    def observe(plan: InferencePlan, gate: GateState) -> InferenceObserved:
        kids = children(plan)
        canary = kids.get("Deployment/svc-canary")
        return InferenceObserved(
            model_uri=V2,
            stable=rolled_out(kids["Deployment/svc"]),
            canary=rolled_out(canary) if canary else None,
            gate=gate,
        )

    # Ready, but the step interval has not passed: stay at 10 %.
    svc, plan = run(svc, observe(plan, waiting), T0 + timedelta(seconds=10))
    assert svc.status["canaryPercent"] == 10
    svc, plan = run(svc, observe(plan, waiting), T0 + timedelta(seconds=31))
    assert svc.status["canaryPercent"] == 50
    assert children(plan)["Deployment/svc-canary"]["spec"]["replicas"] == 5
    assert children(plan)["Deployment/svc"]["spec"]["replicas"] == 5

    # The last step before 100 % waits for the gate, with the gate's message.
    later = T0 + timedelta(seconds=120)
    svc, plan = run(svc, observe(plan, waiting), later)
    progressing = condition(svc.status, "Progressing")
    assert progressing["reason"] == "WaitingForGate" and "is Running" in progressing["message"]
    assert svc.status["canaryPercent"] == 50 and svc.status["phase"] == "Progressing"

    passed = GateState("Passed", "Evaluation eval-v2 passed")
    svc, plan = run(svc, observe(plan, passed), later)
    assert svc.status["canaryPercent"] == 100
    kids = children(plan)
    assert (
        revision_of(kids["Deployment/svc"]) == 2
        and kids["Deployment/svc"]["spec"]["replicas"] == 10
    )

    svc, plan = run(svc, observe(plan, passed), later)
    assert outcomes(svc.status) == {1: "Superseded", 2: "Stable"}
    assert "Deployment/svc-canary" in deleted(plan)
    assert "canaryRevision" not in svc.status and "canaryPercent" not in svc.status
    assert svc.status["phase"] == "Available"


def test_failed_gate_rolls_the_canary_back() -> None:
    svc = serve_v1(canary_spec("1"))
    svc = replace(svc, spec=canary_spec("2"))
    svc, plan = run(svc, InferenceObserved(model_uri=V2, gate=GateState("Waiting", "")), T0)
    failed = GateState("Failed", "Evaluation eval-v2: passkey accuracy 0.5 < 0.9")
    svc, plan = run(svc, InferenceObserved(model_uri=V2, gate=failed), T0)
    assert outcomes(svc.status)[2] == "RolledBack"
    rolled = condition(svc.status, "RolledBack")
    assert rolled["reason"] == "GateFailed" and "0.5 < 0.9" in rolled["message"]
    assert "Deployment/svc-canary" in deleted(plan)
    assert children(plan)["Deployment/svc"]["spec"]["replicas"] == 10


def test_canary_not_ready_within_the_deadline_is_rolled_back() -> None:
    svc = serve_v1(canary_spec("1", gate=False))
    svc = replace(svc, spec=canary_spec("2", gate=False))
    svc, plan = run(svc, InferenceObserved(model_uri=V2), T0)
    canary = stuck(children(plan)["Deployment/svc-canary"])
    svc, plan = run(svc, InferenceObserved(V2, canary=canary), T0 + timedelta(seconds=301))
    assert condition(svc.status, "RolledBack")["reason"] == "ProgressDeadlineExceeded"
    assert "Deployment/svc-canary" in deleted(plan)


def test_first_revision_waits_for_its_gate_too() -> None:
    rollout = {"gate": {"evaluation": "e"}}
    waiting = GateState("Waiting", "Evaluation e does not exist")
    svc, plan = run(service(spec(rollout=rollout)), InferenceObserved(V1, gate=waiting), T0)
    assert plan.apply == []
    assert condition(svc.status, "Progressing")["reason"] == "WaitingForGate"
    assert "does not exist" in condition(svc.status, "Progressing")["message"]


def test_rolling_update_with_a_gate_waits_before_rolling() -> None:
    rollout = {"gate": {"evaluation": "e"}}
    svc = serve_v1(spec(rollout=rollout))
    waiting = GateState("Waiting", "Evaluation e does not exist")
    svc, plan = run(
        replace(svc, spec=spec("2", rollout=rollout)), InferenceObserved(V2, gate=waiting), T0
    )
    assert revision_of(children(plan)["Deployment/svc"]) == 1
    assert condition(svc.status, "Progressing")["reason"] == "WaitingForGate"
    passed = GateState("Passed", "ok")
    svc, plan = run(svc, InferenceObserved(V2, gate=passed), T0)
    assert revision_of(children(plan)["Deployment/svc"]) == 2


def test_canary_with_one_replica_keeps_one_stable_replica() -> None:
    assert canary_replicas(1, 10) == 1 and stable_replicas_beside(1, 1) == 1
    assert canary_replicas(10, 10) == 1 and stable_replicas_beside(10, 1) == 9
    assert canary_replicas(4, 50) == 2 and stable_replicas_beside(0, 1) == 0
    assert canary_steps(20, [10, 50, 100]) == [20, 50, 100]
    assert canary_steps(10, []) == [10, 100]


# ---------------------------------------------------------------- gate verdicts


def evaluation(uri: str, phase: str, passed: bool | None, accuracy: float = 0.95) -> dict[str, Any]:
    results = {"passkeyAccuracy": accuracy, "passed": passed}
    return {"status": {"phase": phase, "inputModel": {"uri": uri}, "results": results}}


@pytest.mark.parametrize(
    ("obj", "thresholds", "verdict"),
    [
        (None, None, "Waiting"),
        (evaluation(V1, "Succeeded", True), None, "Waiting"),  # another model version
        (evaluation(V2, "Running", None), None, "Waiting"),
        (evaluation(V2, "Succeeded", True), None, "Passed"),
        (evaluation(V2, "Succeeded", False), None, "Failed"),
        (evaluation(V2, "Failed", None), None, "Failed"),
        (evaluation(V2, "Succeeded", True, 0.92), Thresholds(passkey_accuracy=0.99), "Failed"),
        (evaluation(V2, "Succeeded", False, 0.92), Thresholds(passkey_accuracy=0.9), "Passed"),
    ],
)
def test_gate_verdict(obj: Any, thresholds: Thresholds | None, verdict: str) -> None:
    gate = RolloutGate(evaluation="e", thresholds=thresholds)
    assert gate_verdict(gate, obj, V2).verdict == verdict


# ---------------------------------------------------------------- autoscaling


def test_hpa_targets_the_scale_subresource_with_vllm_metrics() -> None:
    scaling = {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 6,
        "metric": "vllm:kv_cache_usage_perc",
        "target": 0.8,
        "scaleDownStabilizationSeconds": 600,
    }
    _, plan = run(service(spec(autoscaling=scaling)), InferenceObserved(model_uri=V1), T0)
    hpa = children(plan)["HorizontalPodAutoscaler/svc"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "infinitecontext.dev/v1alpha1",
        "kind": "InferenceService",
        "name": "svc",
    }
    assert hpa["minReplicas"] == 1 and hpa["maxReplicas"] == 6
    metric = hpa["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "vllm:kv_cache_usage_perc"
    assert metric["target"]["averageValue"] == "800m"
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_keda_scaled_object_when_keda_is_installed() -> None:
    scaling = {"enabled": True, "metric": "vllm:num_requests_waiting", "target": 5}
    observed = InferenceObserved(model_uri=V1, keda=True, prometheus_url="http://prom:9090")
    _, plan = run(service(spec(autoscaling=scaling)), observed, T0)
    scaled = children(plan)["ScaledObject/svc"]["spec"]
    assert scaled["scaleTargetRef"]["kind"] == "InferenceService"
    trigger = scaled["triggers"][0]
    assert trigger["metadata"]["serverAddress"] == "http://prom:9090"
    assert trigger["metadata"]["query"].startswith('sum(vllm:num_requests_waiting{namespace="ns"')
    assert "HorizontalPodAutoscaler/svc" in deleted(plan)
    forced_hpa = spec(autoscaling=scaling | {"engine": "hpa"})
    _, plan = run(service(forced_hpa), observed, T0)
    assert "HorizontalPodAutoscaler/svc" in children(plan)
    assert "ScaledObject/svc" in deleted(plan)


def test_quantity() -> None:
    assert quantity(5) == "5" and quantity(0.8) == "800m" and quantity(2.5) == "2500m"


# ---------------------------------------------------------------- manual rollback


def test_icx_rollback_sets_the_spec_back_to_the_previous_stable_revision() -> None:
    svc = serve_v1(spec())
    svc, plan = run(replace(svc, spec=spec("2")), InferenceObserved(model_uri=V2), T0)
    dep = children(plan)["Deployment/svc"]
    svc, _ = run(svc, InferenceObserved(model_uri=V2, stable=rolled_out(dep)), T0)
    target = rollback_target(svc.status, None)
    assert target.revision == 1
    patch = rollback_patch(target)["spec"]
    assert patch["model"]["mlflow"] == {"name": "tiny", "version": "1", "alias": None}
    assert patch["model"]["trainingRun"] is None
    new_spec = {**svc.spec, **{k: v for k, v in patch.items() if v is not None}}
    new_spec["model"] = {"mlflow": {"name": "tiny", "version": "1"}}
    svc, plan = run(replace(svc, spec=new_spec), InferenceObserved(model_uri=V1), T0)
    # The same template as revision 1, rolled out as revision 3 (like a Deployment undo).
    assert outcomes(svc.status)[3] == "Progressing"
    assert svc.status["revisions"][2]["templateHash"] == svc.status["revisions"][0]["templateHash"]
    assert rollback_target(svc.status, 2).revision == 2
    with pytest.raises(ValueError, match="not in the history"):
        rollback_target(svc.status, 9)


def test_icx_rollback_after_an_automatic_rollback_targets_the_stable_revision() -> None:
    svc = serve_v1(spec())
    svc, _ = run(replace(svc, spec=spec("2")), InferenceObserved(model_uri=V2), T0)
    svc, _ = run(svc, InferenceObserved(model_uri=V2, crashlooping={2: "boom"}), T0)
    assert rollback_target(svc.status, None).revision == 1


def test_rolling_back_to_a_once_stable_revision_skips_the_gate() -> None:
    rollout = {"gate": {"evaluation": "e"}}
    passed, waiting = GateState("Passed", ""), GateState("Waiting", "")
    svc, plan = run(service(spec(rollout=rollout)), InferenceObserved(V1, gate=passed), T0)
    svc, _ = run(
        svc, InferenceObserved(V1, stable=rolled_out(children(plan)["Deployment/svc"])), T0
    )
    svc, plan = run(
        replace(svc, spec=spec("2", rollout=rollout)), InferenceObserved(V2, gate=passed), T0
    )
    svc, _ = run(
        svc, InferenceObserved(V2, stable=rolled_out(children(plan)["Deployment/svc"])), T0
    )
    # Back to V1: its gate evaluated another version, but revision 1 was stable once.
    svc, plan = run(
        replace(svc, spec=spec("1", rollout=rollout)), InferenceObserved(V1, gate=waiting), T0
    )
    assert revision_of(children(plan)["Deployment/svc"]) == 3
    assert condition(svc.status, "Progressing")["reason"] == "RollingUpdate"


# ---------------------------------------------------------------- observation helpers


def test_deployment_state_and_roles_from_api_objects() -> None:
    from infinitecontext.operator.inference.planner import deployments_by_role

    obj = {
        "metadata": {"generation": 3, "labels": {"infinitecontext.dev/role": "canary"}},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {LABEL_REVISION: "4"}}}},
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "updatedReplicas": 2,
        },
    }
    state = deployments_by_role([obj])["canary"]
    assert state.revision == 4 and state.rolled_out
    older = {**obj, "status": {**obj["status"], "observedGeneration": 2}}
    assert not deployments_by_role([older])["canary"].rolled_out


def test_crash_looping_revisions_from_pods() -> None:
    from infinitecontext.operator.inference.planner import crashlooping_revisions

    def pod(revision: str, reason: str | None, restarts: int) -> dict[str, Any]:
        state = {"waiting": {"reason": reason}} if reason else {"running": {}}
        status = {
            "containerStatuses": [{"name": "server", "state": state, "restartCount": restarts}]
        }
        return {
            "metadata": {"name": f"p{revision}", "labels": {LABEL_REVISION: revision}},
            "status": status,
        }

    pods = [
        pod("1", None, 0),
        pod("2", "CrashLoopBackOff", 1),
        pod("3", None, 3),
        pod("x", None, 9),
    ]
    found = crashlooping_revisions(pods)
    assert set(found) == {2, 3}
    assert "CrashLoopBackOff" in found[2] and "restarted 3 times" in found[3]


# ---------------------------------------------------------------- Gateway API


def test_canary_traffic_is_weighted_by_an_httproute_when_the_gateway_api_is_installed() -> None:
    rollout = {"strategy": "Canary", "canaryPercent": 20, "gateway": "infra/public"}
    svc = serve_v1(spec(replicas=5, rollout=rollout))
    svc = replace(svc, spec=spec("2", replicas=5, rollout=rollout))
    _, plan = run(svc, InferenceObserved(model_uri=V2, gateway_api=True), T0)
    kids = children(plan)
    route = kids["HTTPRoute/svc"]["spec"]
    assert route["parentRefs"] == [{"name": "public", "namespace": "infra"}]
    weights = {b["name"]: b["weight"] for b in route["rules"][0]["backendRefs"]}
    assert weights == {"svc-stable": 80, "svc-canary": 20}
    canary_service = kids["Service/svc-canary"]["spec"]["selector"]
    assert canary_service == {
        "infinitecontext.dev/inferenceservice": "svc",
        "infinitecontext.dev/role": "canary",
    }
    # Without the Gateway API, the split is by replicas only.
    _, plan = run(svc, InferenceObserved(model_uri=V2), T0)
    assert "HTTPRoute/svc" not in children(plan)


def test_httproute_sends_everything_to_stable_outside_a_canary() -> None:
    rollout = {"gateway": "public"}
    _, plan = run(service(spec(rollout=rollout)), InferenceObserved(V1, gateway_api=True), T0)
    route = children(plan)["HTTPRoute/svc"]["spec"]
    assert route["rules"][0]["backendRefs"] == [{"name": "svc-stable", "port": 8000, "weight": 100}]
    _, plan = run(service(spec()), InferenceObserved(V1, gateway_api=True), T0)
    assert "HTTPRoute/svc" in deleted(plan)
