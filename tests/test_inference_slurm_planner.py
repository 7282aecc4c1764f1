"""The SLURM backend's pure planner: replica jobs, replacement, scaling, revisions,
EndpointSlices (operator/inference/slurm.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from infinitecontext.crds.models import InferenceServiceSpec
from infinitecontext.operator.inference.slurm import (
    Replica,
    SlurmObserved,
    SlurmPlan,
    plan_slurm_service,
    replica_key,
    replicas_of,
)
from infinitecontext.operator.resource import Resource
from infinitecontext.slurm_bridge.models import JobStatus
from infinitecontext.slurm_bridge.states import Phase as SlurmPhase

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UID = "0f0e-uid"


def spec(version: str = "1", replicas: int = 2, deadline: int = 600) -> dict[str, Any]:
    return {
        "backend": "slurm",
        "model": {"mlflow": {"name": "tiny", "version": version}},
        "replicas": replicas,
        "resources": {"cpu": "2", "memory": "4Gi"},
        "slurm": {"workingDirectory": "/srv/icx"},
        "rollout": {"progressDeadlineSeconds": deadline},
    }


def plan(svc: Resource, observed: SlurmObserved, now: datetime = T0) -> tuple[Resource, SlurmPlan]:
    parsed = InferenceServiceSpec.model_validate(svc.spec)
    result = plan_slurm_service(svc, parsed, observed, now)
    return replace(svc, status=result.plan.status), result


def running(
    revision: int, slot: int, attempt: int = 0, ready: bool = True, address: str | None = None
) -> Replica:
    job_id = 100 * revision + 10 * slot + attempt
    return Replica(
        revision, slot, attempt, job_id, SlurmPhase.RUNNING, "vm", 8000 + slot, ready, address
    )


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def serving_v1(replicas: int = 2) -> tuple[Resource, list[Replica]]:
    svc = Resource("InferenceService", "svc", "ns", UID, 1, spec(replicas=replicas), {})
    svc, _ = plan(svc, SlurmObserved("models:/tiny/1"))
    live = [running(1, slot) for slot in range(replicas)]
    svc, _ = plan(svc, SlurmObserved("models:/tiny/1", replicas=live))
    return svc, live


def test_create_submits_one_serving_job_per_replica() -> None:
    svc = Resource("InferenceService", "svc", "ns", UID, 1, spec(), {})
    svc, result = plan(svc, SlurmObserved("models:/tiny/1"))
    assert [r.key for r in result.submit] == [replica_key(UID, 1, 0, 0), replica_key(UID, 1, 1, 0)]
    first = result.submit[0]
    argv = list(first.command)
    assert argv[:3] == ["icx", "serve", "models:/tiny/1"]
    assert argv[argv.index("--port") + 1] == "8000"
    assert list(result.submit[1].command)[argv.index("--port") + 1] == "8001"
    assert first.cpus_per_node == 2 and first.memory_mb == 4096
    assert first.working_directory == "/srv/icx"
    assert svc.status["phase"] == "Progressing"
    assert condition(svc.status, "Ready")["status"] == "False"


def test_replica_jobs_run_the_same_serve_command_as_pods() -> None:
    """One `icx serve` argv on both backends: tensor parallelism and the drain included."""
    from infinitecontext.operator.inference.children import server_command
    from infinitecontext.operator.inference.planner import served_template

    two_gpus = spec() | {"resources": {"cpu": "2", "memory": "4Gi", "gpusPerNode": 2}}
    svc = Resource("InferenceService", "svc", "ns", UID, 1, two_gpus, {})
    _, result = plan(svc, SlurmObserved("models:/tiny/1"))
    argv = list(result.submit[0].command)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    parsed = InferenceServiceSpec.model_validate(two_gpus)
    pod_argv = server_command("svc", served_template(parsed, "models:/tiny/1"))
    for flag in ("--shutdown-timeout", "--tensor-parallel-size", "--served-model-name"):
        assert argv[argv.index(flag) + 1] == pod_argv[pod_argv.index(flag) + 1]


def test_ready_replicas_make_the_revision_stable_with_a_direct_url() -> None:
    svc, _ = serving_v1()
    status = svc.status
    assert status["stableRevision"] == 1 and status["phase"] == "Available"
    assert status["url"] == "http://vm:8000"  # loopback node: no EndpointSlice
    assert status["readyReplicas"] == 2 and status["replicas"] == 2
    assert "vm:8000, vm:8001" in condition(status, "Ready")["message"]


def test_routable_replicas_are_published_behind_a_selectorless_service() -> None:
    svc, _ = serving_v1()
    live = [running(1, 0, address="10.0.0.5"), running(1, 1, address="10.0.0.6")]
    svc, result = plan(svc, SlurmObserved("models:/tiny/1", replicas=live))
    kinds = {(o["kind"], o["metadata"]["name"]): o for o in result.plan.apply}
    assert "selector" not in kinds[("Service", "svc")]["spec"]
    endpoint = kinds[("EndpointSlice", "svc-r1")]
    assert endpoint["metadata"]["labels"]["kubernetes.io/service-name"] == "svc"
    assert endpoint["endpoints"][0]["addresses"] == ["10.0.0.6"]
    assert endpoint["ports"] == [{"name": "http", "port": 8001, "protocol": "TCP"}]
    assert svc.status["url"] == "http://svc.ns.svc.cluster.local:8000"


def test_a_dead_replica_job_is_replaced() -> None:
    svc, live = serving_v1()
    dead = replace(live[1], phase=SlurmPhase.FAILED, ready=False)
    svc, result = plan(svc, SlurmObserved("models:/tiny/1", replicas=[live[0], dead]))
    assert [r.key for r in result.submit] == [replica_key(UID, 1, 1, 1)]
    assert "ReplicaReplaced" in [e.reason for e in result.plan.events]
    assert result.cancel == []


def test_scaling_adds_and_cancels_jobs() -> None:
    svc, live = serving_v1()
    _, result = plan(
        replace(svc, spec=spec(replicas=3)), SlurmObserved("models:/tiny/1", replicas=live)
    )
    assert [r.key for r in result.submit] == [replica_key(UID, 1, 2, 0)]
    _, result = plan(
        replace(svc, spec=spec(replicas=1)), SlurmObserved("models:/tiny/1", replicas=live)
    )
    assert result.cancel == [live[1].job_id] and result.submit == []


def test_new_model_version_starts_new_jobs_then_cancels_the_old_ones() -> None:
    svc, live = serving_v1()
    svc = replace(svc, spec=spec("2"))
    svc, result = plan(svc, SlurmObserved("models:/tiny/2", replicas=live))
    assert [r.key for r in result.submit] == [replica_key(UID, 2, 0, 0), replica_key(UID, 2, 1, 0)]
    assert result.cancel == []  # revision 1 serves until revision 2 is ready
    assert svc.status["url"] == "http://vm:8000"
    new = [running(2, 0), running(2, 1)]
    svc, result = plan(svc, SlurmObserved("models:/tiny/2", replicas=live + new))
    assert svc.status["stableRevision"] == 2
    assert sorted(result.cancel) == sorted(r.job_id for r in live)
    assert svc.status["latestRolledOutModel"] == "models:/tiny/2"


def test_new_revision_not_ready_in_time_is_rolled_back() -> None:
    svc, live = serving_v1()
    svc = replace(svc, spec=spec("2", deadline=60))
    svc, _ = plan(svc, SlurmObserved("models:/tiny/2", replicas=live))
    starting = [running(2, 0, ready=False), running(2, 1, ready=False)]
    observed = SlurmObserved("models:/tiny/2", replicas=live + starting)
    svc, result = plan(svc, observed, T0 + timedelta(seconds=61))
    assert condition(svc.status, "RolledBack")["reason"] == "ProgressDeadlineExceeded"
    assert sorted(result.cancel) == sorted(r.job_id for r in starting)
    assert svc.status["stableRevision"] == 1 and svc.status["phase"] == "Degraded"
    progressing = condition(svc.status, "Progressing")  # ended, but not "RolloutComplete"
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_replicas_are_found_by_their_key() -> None:
    def job(job_id: int, key: str, phase: SlurmPhase) -> JobStatus:
        return JobStatus(job_id, "n", "RUNNING", phase, "", None, None, key, "vm", "/", "", "")

    jobs = [
        job(1, replica_key(UID, 1, 0, 0), SlurmPhase.FAILED),
        job(2, replica_key(UID, 1, 0, 1), SlurmPhase.RUNNING),
        job(3, replica_key("other", 1, 0, 0), SlurmPhase.RUNNING),
        job(4, "unrelated", SlurmPhase.RUNNING),
    ]
    found = replicas_of(UID, jobs, 9000)
    assert [(r.job_id, r.attempt, r.port) for r in found] == [(2, 1, 9000)]


def test_autoscaling_targets_the_scale_subresource_on_slurm_too() -> None:
    svc, live = serving_v1()
    scaled = spec() | {"autoscaling": {"enabled": True, "maxReplicas": 3}}
    _, result = plan(replace(svc, spec=scaled), SlurmObserved("models:/tiny/1", replicas=live))
    hpa = next(o for o in result.plan.apply if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "InferenceService"
    assert hpa["spec"]["maxReplicas"] == 3
