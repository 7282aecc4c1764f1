"""InferenceService on SLURM: replicas are long-running jobs running `icx serve`.

Replica `slot` of revision `rev` is the SLURM job whose idempotency key is
`<uid>.v<rev>.r<slot>.a<attempt>`; the operator finds its replicas by listing jobs
with that prefix, so no job id has to be remembered and a restarted operator adopts
what runs. Each replica listens on `server.port + slot` (two replicas may share a
node). A finished replica job is replaced with the next attempt; scaling submits or
cancels slots; deleting the InferenceService cancels them all (a finalizer).

A new revision (model version or options) starts a full set of new replica jobs beside
the old ones and cancels the old ones once every new replica answers `/ready`; one that
is not ready within `progressDeadlineSeconds`, or whose jobs keep dying, is cancelled
and the old revision keeps serving (rolled back). Canary steps are Kubernetes-only.

Kubernetes clients reach the replicas through the selector-less Service `<name>` and
one EndpointSlice per replica, published when the replica's node resolves to a
routable (non-loopback) address; `status.url` is that Service's URL then, else the
first ready replica's own `http://node:port`.

Pure: `observe.py` lists the jobs and probes the replicas, `apply.py` submits and
cancels what `plan_slurm_service` decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from infinitecontext.crds.models import InferenceServiceSpec, Phase, SlurmOptions
from infinitecontext.operator import conditions as cond
from infinitecontext.operator.inference.children import (
    LABEL_INFERENCE_SERVICE,
    ChildRef,
    autoscaler_children,
    owner_reference,
    selector,
    service_name,
    service_url,
)
from infinitecontext.operator.inference.planner import (
    AVAILABLE,
    DEGRADED,
    PROGRESSING,
    ROLLED_BACK,
    InferencePlan,
    RolloutState,
    parse_status,
    served_template,
)
from infinitecontext.operator.inference.serve import serve_argv
from infinitecontext.operator.names import label_value
from infinitecontext.operator.resource import Event, Resource
from infinitecontext.operator.workloads.slurm import cpus, memory_mb
from infinitecontext.slurm_bridge.models import JobRequest, JobStatus
from infinitecontext.slurm_bridge.states import Phase as SlurmPhase

_KEY = re.compile(r"^(?P<uid>.+)\.v(?P<rev>\d+)\.r(?P<slot>\d+)\.a(?P<attempt>\d+)$")
MAX_ATTEMPTS = 5
"""A slot whose jobs died this often in one revision fails the revision."""


@dataclass(frozen=True)
class Replica:
    revision: int
    slot: int
    attempt: int
    job_id: int
    phase: SlurmPhase
    node: str
    port: int
    ready: bool = False
    address: str | None = None
    """The node's routable address (None: loopback or unresolvable)."""

    @property
    def alive(self) -> bool:
        return self.phase in (SlurmPhase.PENDING, SlurmPhase.RUNNING, SlurmPhase.UNKNOWN)

    @property
    def url(self) -> str:
        return f"http://{self.node}:{self.port}"


def replica_key(uid: str, revision: int, slot: int, attempt: int) -> str:
    return f"{uid}.v{revision}.r{slot}.a{attempt}"


def replicas_of(uid: str, jobs: list[JobStatus], base_port: int) -> list[Replica]:
    """The newest attempt of every (revision, slot) of this service."""
    newest: dict[tuple[int, int], Replica] = {}
    for job in jobs:
        match = _KEY.match(job.key or "")
        if not match or match.group("uid") != uid:
            continue
        rev, slot, attempt = (int(match.group(k)) for k in ("rev", "slot", "attempt"))
        node = job.nodes.split(",")[0] if job.nodes and job.nodes != "(null)" else ""
        replica = Replica(rev, slot, attempt, job.job_id, job.phase, node, base_port + slot)
        seen = newest.get((rev, slot))
        if seen is None or (replica.attempt, replica.job_id) > (seen.attempt, seen.job_id):
            newest[(rev, slot)] = replica
    return sorted(newest.values(), key=lambda replica: (replica.revision, replica.slot))


def replica_request(
    isvc: Resource,
    spec: InferenceServiceSpec,
    model_uri: str,
    key: str,
    port: int,
    tracking_uri: str,
) -> JobRequest:
    options = spec.slurm or SlurmOptions()
    cache = f"{options.working_directory}/icx-models"
    gpus = spec.resources.gpus_per_node
    argv = serve_argv(model_uri, isvc.name, spec.server, gpus, port, cache)
    environment = {"ICX_OWNER": f"InferenceService/{isvc.namespace}/{isvc.name}"}
    if tracking_uri:
        environment["MLFLOW_TRACKING_URI"] = tracking_uri
    return JobRequest(
        name=f"icx-serve-{isvc.namespace}-{isvc.name}"[:200],
        command=argv,
        key=key,
        nodes=1,
        gpus_per_node=spec.resources.gpus_per_node,
        cpus_per_node=cpus(spec.resources.cpu),
        memory_mb=memory_mb(spec.resources.memory),
        time_limit_minutes=options.time_limit_minutes,
        partition=options.partition,
        account=options.account,
        qos=options.qos,
        environment=environment,
        working_directory=options.working_directory,
        container_image=options.container_image,
    )


# ---------------------------------------------------------------- the pure planner


@dataclass(frozen=True)
class SlurmObserved:
    model_uri: str | None
    model_message: str = ""
    replicas: list[Replica] = field(default_factory=list)
    tracking_uri: str = ""
    job_path: str = ""
    """PATH of the replica jobs (the operator's --slurm-job-path), where `icx` is found."""
    keda: bool = False
    prometheus_url: str = ""


@dataclass(frozen=True)
class SlurmPlan:
    plan: InferencePlan
    submit: list[JobRequest] = field(default_factory=list)
    cancel: list[int] = field(default_factory=list)


def plan_slurm_service(
    isvc: Resource, spec: InferenceServiceSpec, observed: SlurmObserved, now: datetime
) -> SlurmPlan:
    rollout = RolloutState(isvc, spec, now)
    if observed.model_uri is not None:
        rollout.track(served_template(spec, observed.model_uri))
    by_rev: dict[int, list[Replica]] = {}
    for replica in observed.replicas:
        by_rev.setdefault(replica.revision, []).append(replica)
    _advance(rollout, by_rev)
    wanted = {x.revision for x in (rollout.stable, rollout.progressing) if x is not None}
    submit, cancel = [], []
    for revision in wanted:
        model = next(x.model_version for x in rollout.status.revisions if x.revision == revision)
        subs, cans = _replica_actions(
            isvc, spec, observed, revision, model, by_rev.get(revision, [])
        )
        submit += subs
        cancel += cans
    cancel += [x.job_id for x in observed.replicas if x.revision not in wanted and x.alive]
    serving = by_rev.get(rollout.status.stable_revision or -1, [])
    apply, delete = _endpoints(isvc, spec, serving, observed.replicas)
    # The same autoscaler as on Kubernetes: it scales the scale subresource, i.e. jobs.
    scalers, unused = autoscaler_children(
        isvc, spec.autoscaling, observed.keda, observed.prometheus_url
    )
    apply, delete = apply + scalers, delete + unused
    _slurm_status(rollout, spec, observed, serving, bool(apply))
    status = rollout.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    events = list(rollout.events)
    if any(not s.key.endswith(".a0") for s in submit):
        events.append(Event("Warning", "ReplicaReplaced", "a replica job ended; resubmitted"))
    return SlurmPlan(InferencePlan(status, apply, delete, events), submit, cancel)


def _advance(rollout: RolloutState, by_rev: dict[int, list[Replica]]) -> None:
    """Promote the new revision when all its replicas are ready; roll it back on the
    deadline or when its jobs keep dying."""
    revision = rollout.progressing
    if revision is None:
        return
    replicas = [x for x in by_rev.get(revision.revision, []) if x.slot < rollout.spec.replicas]
    if any(x.attempt >= MAX_ATTEMPTS for x in replicas):
        rollout.roll_back(revision, "ReplicaJobsFailing", f"jobs died {MAX_ATTEMPTS} times")
        return
    rollout.start_step()
    if len([x for x in replicas if x.ready]) >= rollout.spec.replicas:
        rollout.promote(revision)
    elif rollout.past_deadline():
        seconds = rollout.spec.rollout.progress_deadline_seconds
        rollout.roll_back(revision, "ProgressDeadlineExceeded", f"not ready within {seconds} s")


def _replica_actions(
    isvc: Resource,
    spec: InferenceServiceSpec,
    observed: SlurmObserved,
    revision: int,
    model_uri: str,
    replicas: list[Replica],
) -> tuple[list[JobRequest], list[int]]:
    by_slot = {x.slot: x for x in replicas}
    submit = []
    for slot in range(spec.replicas):
        current = by_slot.get(slot)
        if current is not None and current.alive:
            continue
        attempt = 0 if current is None else current.attempt + 1
        key = replica_key(isvc.uid, revision, slot, attempt)
        port = spec.server.port + slot
        request = replica_request(isvc, spec, model_uri, key, port, observed.tracking_uri)
        if observed.job_path:
            request = replace(
                request, environment={**request.environment, "PATH": observed.job_path}
            )
        submit.append(request)
    cancel = [x.job_id for x in replicas if x.slot >= spec.replicas and x.alive]
    return submit, cancel


def _endpoints(
    isvc: Resource, spec: InferenceServiceSpec, serving: list[Replica], every: list[Replica]
) -> tuple[list[dict[str, Any]], list[ChildRef]]:
    routable = [x for x in serving if x.ready and x.address and x.slot < spec.replicas]
    apply: list[dict[str, Any]] = []
    if routable:
        apply.append(selectorless_service(isvc, spec.server.port))
        apply += [endpoint_slice(isvc, x) for x in routable]
    published = {service_name(isvc.name, f"r{x.slot}") for x in routable}
    slots = {service_name(isvc.name, f"r{x.slot}") for x in every}
    delete = [
        ChildRef("discovery.k8s.io/v1", "EndpointSlice", n) for n in sorted(slots - published)
    ]
    return apply, delete


def selectorless_service(isvc: Resource, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(isvc, service_name(isvc.name)),
        "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }


def endpoint_slice(isvc: Resource, replica: Replica) -> dict[str, Any]:
    meta = _meta(isvc, service_name(isvc.name, f"r{replica.slot}"))
    meta["labels"]["kubernetes.io/service-name"] = service_name(isvc.name)
    meta["labels"]["endpointslice.kubernetes.io/managed-by"] = "infinitecontext.dev"
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv6" if ":" in (replica.address or "") else "IPv4",
        "ports": [{"name": "http", "port": replica.port, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [replica.address],
                "conditions": {"ready": True},
                "hostname": f"r{replica.slot}",
            }
        ],
    }


def _meta(isvc: Resource, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": isvc.namespace,
        "labels": {LABEL_INFERENCE_SERVICE: label_value(isvc.name)},
        "ownerReferences": [owner_reference(isvc)],
    }


def _slurm_status(
    rollout: RolloutState,
    spec: InferenceServiceSpec,
    observed: SlurmObserved,
    serving: list[Replica],
    published: bool,
) -> None:
    status = rollout.status
    live = [x for x in observed.replicas if x.alive]
    ready = [x for x in serving if x.ready and x.slot < spec.replicas]
    status.replicas = len([x for x in live if x.revision == status.stable_revision]) or len(live)
    status.ready_replicas = len(ready)
    status.selector = selector(rollout.isvc.name)
    if published:
        name = service_name(rollout.isvc.name)
        status.url = service_url(name, rollout.isvc.namespace, spec.server.port)
    else:
        status.url = ready[0].url if ready else None

    def set_(type_: str, value: cond.Status, reason: str, message: str = "") -> None:
        status.conditions = cond.set_condition(
            status.conditions, type_, value, reason, message, rollout.now, rollout.isvc.generation
        )

    nodes = ", ".join(f"{x.node}:{x.port}" for x in ready)
    if ready:
        set_(AVAILABLE, "True", "MinimumReplicasAvailable", f"ready on {nodes}")
        set_(cond.READY, "True", "Serving", f"{len(ready)}/{spec.replicas} replicas on {nodes}")
    else:
        set_(AVAILABLE, "False", "NoReplicaReady", "no replica job answers /ready yet")
        set_(cond.READY, "False", "NotServing", "no replica job answers /ready yet")
    progressing = rollout.progressing
    latest = max(status.revisions, key=lambda x: x.revision, default=None)
    failed = latest is not None and latest.outcome == "RolledBack"
    message = f"revision {latest.revision}: {latest.message}" if failed and latest else ""
    reason = (latest.reason if failed and latest else None) or "NoRollback"
    if progressing is not None:
        starting = f"revision {progressing.revision} ({progressing.model_version}) is starting"
        set_(PROGRESSING, "True", "NewRevision", starting)
    elif observed.model_uri is None:
        set_(PROGRESSING, "True", "WaitingForModel", observed.model_message)
    elif failed:  # the rollout ended, but not complete: say how
        set_(PROGRESSING, "False", reason, message)
    else:
        set_(PROGRESSING, "False", "RolloutComplete", "")
    set_(ROLLED_BACK, "True" if failed else "False", reason, message)
    set_(DEGRADED, "True" if failed else "False", reason if failed else "AsExpected", message)
    status.phase = (
        Phase.DEGRADED
        if failed
        else Phase.PROGRESSING
        if progressing is not None
        else Phase.AVAILABLE
        if ready
        else Phase.PENDING
    )


def unavailable_plan(isvc: Resource, message: str, now: datetime) -> InferencePlan:
    """SLURM did not answer: Ready=Unknown says so (the replicas may still serve, but
    nothing can tell), the rest of the status is kept; retried with backoff."""
    status = parse_status(isvc.status)
    status.conditions = cond.set_condition(
        status.conditions,
        cond.READY,
        "Unknown",
        cond.BACKEND_UNAVAILABLE,
        message[:1000],
        now,
        isvc.generation,
    )
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return InferencePlan(dumped, events=[Event("Warning", "SlurmUnavailable", message[:500])])
