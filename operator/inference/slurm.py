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
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from infinitecontext.crds.models import (
    INFERENCE_SERVICE,
    InferenceServiceSpec,
    Phase,
    SlurmOptions,
)
from infinitecontext.operator import conditions as cond
from infinitecontext.operator.inference.children import (
    LABEL_SERVICE,
    ChildRef,
    Service,
    autoscaler_children,
    owner_reference,
    service_url,
)
from infinitecontext.operator.inference.planner import (
    AVAILABLE,
    DEFAULT_PROMETHEUS,
    DEGRADED,
    PROGRESSING,
    ROLLED_BACK,
    InferencePlan,
    RolloutState,
    served_template,
)
from infinitecontext.operator.workloads import handlers
from infinitecontext.operator.workloads.planner import Event
from infinitecontext.operator.workloads.slurm import cpus, memory_mb
from infinitecontext.slurm_bridge.models import JobRequest, JobStatus
from infinitecontext.slurm_bridge.states import Phase as JobPhase

_KEY = re.compile(r"^(?P<uid>.+)\.v(?P<rev>\d+)\.r(?P<slot>\d+)\.a(?P<attempt>\d+)$")
MAX_ATTEMPTS = 5
"""A slot whose jobs died this often in one revision fails the revision."""


@dataclass(frozen=True)
class Replica:
    revision: int
    slot: int
    attempt: int
    job_id: int
    phase: JobPhase
    node: str
    port: int
    ready: bool = False
    address: str | None = None
    """The node's routable address (None: loopback or unresolvable)."""

    @property
    def alive(self) -> bool:
        return self.phase in (JobPhase.PENDING, JobPhase.RUNNING, JobPhase.UNKNOWN)

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
    return sorted(newest.values(), key=lambda r: (r.revision, r.slot))


def replica_request(
    svc: Service,
    spec: InferenceServiceSpec,
    model_uri: str,
    key: str,
    port: int,
    server_command: list[str],
    tracking_uri: str,
) -> JobRequest:
    options = spec.slurm or SlurmOptions()
    argv = [*server_command, "serve", model_uri, "--served-model-name", svc.name]
    argv += ["--host", "0.0.0.0", "--port", str(port)]
    argv += ["--cache-dir", f"{options.working_directory}/icx-models"]
    if spec.server.max_model_len is not None:
        argv += ["--max-model-len", str(spec.server.max_model_len)]
    argv += [f"--vllm-arg={extra}" for extra in spec.server.extra_args]
    environment = {"ICX_OWNER": f"InferenceService/{svc.namespace}/{svc.name}"}
    if tracking_uri:
        environment["MLFLOW_TRACKING_URI"] = tracking_uri
    return JobRequest(
        name=f"icx-serve-{svc.namespace}-{svc.name}"[:200],
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
    server_command: list[str] = field(default_factory=lambda: ["icx"])
    tracking_uri: str = ""
    job_path: str = ""
    keda: bool = False
    prometheus_url: str = DEFAULT_PROMETHEUS
    """PATH of the replica jobs (the operator's --slurm-job-path), where `icx` is found."""


@dataclass(frozen=True)
class SlurmPlan:
    plan: InferencePlan
    submit: list[JobRequest] = field(default_factory=list)
    cancel: list[int] = field(default_factory=list)


def plan_slurm_service(
    svc: Service, spec: InferenceServiceSpec, observed: SlurmObserved, now: datetime
) -> SlurmPlan:
    r = RolloutState(svc, spec, now)
    if observed.model_uri is not None:
        r.track(served_template(spec, observed.model_uri))
    by_rev: dict[int, list[Replica]] = {}
    for replica in observed.replicas:
        by_rev.setdefault(replica.revision, []).append(replica)
    _advance(r, by_rev)
    wanted = {x.revision for x in (r.stable, r.progressing) if x is not None}
    submit, cancel = [], []
    for revision in wanted:
        model = next(x.model_version for x in r.status.revisions if x.revision == revision)
        subs, cans = _replica_actions(
            svc, spec, observed, revision, model, by_rev.get(revision, [])
        )
        submit += subs
        cancel += cans
    cancel += [x.job_id for x in observed.replicas if x.revision not in wanted and x.alive]
    serving = by_rev.get(r.status.stable_revision or -1, [])
    apply, delete = _endpoints(svc, spec, serving, observed.replicas)
    # The same autoscaler as on Kubernetes: it scales the scale subresource, i.e. jobs.
    scalers, unused = autoscaler_children(
        svc, spec.autoscaling, observed.keda, observed.prometheus_url
    )
    apply, delete = apply + scalers, delete + unused
    _slurm_status(r, spec, observed, serving, bool(apply))
    status = r.status.model_dump(by_alias=True, mode="json", exclude_none=True)
    events = list(r.events)
    if any(not s.key.endswith(".a0") for s in submit):
        events.append(Event("Warning", "ReplicaReplaced", "a replica job ended; resubmitted"))
    return SlurmPlan(InferencePlan(status, apply, delete, events), submit, cancel)


def _advance(r: RolloutState, by_rev: dict[int, list[Replica]]) -> None:
    """Promote the new revision when all its replicas are ready; roll it back on the
    deadline or when its jobs keep dying."""
    revision = r.progressing
    if revision is None:
        return
    replicas = [x for x in by_rev.get(revision.revision, []) if x.slot < r.spec.replicas]
    if any(x.attempt >= MAX_ATTEMPTS for x in replicas):
        r.roll_back(revision, "ReplicaJobsFailing", f"jobs died {MAX_ATTEMPTS} times")
        return
    r.start_step()
    if len([x for x in replicas if x.ready]) >= r.spec.replicas:
        r.promote(revision)
    elif r.past_deadline():
        seconds = r.spec.rollout.progress_deadline_seconds
        r.roll_back(revision, "ProgressDeadlineExceeded", f"not ready within {seconds} s")


def _replica_actions(
    svc: Service,
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
        key = replica_key(svc.uid, revision, slot, attempt)
        port = spec.server.port + slot
        request = replica_request(
            svc, spec, model_uri, key, port, observed.server_command, observed.tracking_uri
        )
        if observed.job_path:
            request = replace(
                request, environment={**request.environment, "PATH": observed.job_path}
            )
        submit.append(request)
    cancel = [x.job_id for x in replicas if x.slot >= spec.replicas and x.alive]
    return submit, cancel


def _endpoints(
    svc: Service, spec: InferenceServiceSpec, serving: list[Replica], every: list[Replica]
) -> tuple[list[dict[str, Any]], list[ChildRef]]:
    routable = [x for x in serving if x.ready and x.address and x.slot < spec.replicas]
    apply: list[dict[str, Any]] = []
    if routable:
        apply.append(selectorless_service(svc, spec.server.port))
        apply += [endpoint_slice(svc, x) for x in routable]
    published = {f"{svc.name}-r{x.slot}" for x in routable}
    slots = {f"{svc.name}-r{x.slot}" for x in every}
    delete = [
        ChildRef("discovery.k8s.io/v1", "EndpointSlice", n) for n in sorted(slots - published)
    ]
    return apply, delete


def selectorless_service(svc: Service, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(svc, svc.name),
        "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }


def endpoint_slice(svc: Service, replica: Replica) -> dict[str, Any]:
    meta = _meta(svc, f"{svc.name}-r{replica.slot}")
    meta["labels"]["kubernetes.io/service-name"] = svc.name
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


def _meta(svc: Service, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": svc.namespace,
        "labels": {LABEL_SERVICE: svc.name},
        "ownerReferences": [owner_reference(svc)],
    }


def _slurm_status(
    r: RolloutState,
    spec: InferenceServiceSpec,
    observed: SlurmObserved,
    serving: list[Replica],
    published: bool,
) -> None:
    status = r.status
    live = [x for x in observed.replicas if x.alive]
    ready = [x for x in serving if x.ready and x.slot < spec.replicas]
    status.replicas = len([x for x in live if x.revision == status.stable_revision]) or len(live)
    status.ready_replicas = len(ready)
    status.selector = f"{LABEL_SERVICE}={r.svc.name}"
    if published:
        status.url = service_url(r.svc.name, r.svc.namespace, spec.server.port)
    else:
        status.url = ready[0].url if ready else None

    def set_(type_: str, value: cond.Status, reason: str, message: str = "") -> None:
        status.conditions = cond.set_condition(
            status.conditions, type_, value, reason, message, r.now, r.svc.generation
        )

    nodes = ", ".join(f"{x.node}:{x.port}" for x in ready)
    if ready:
        set_(AVAILABLE, "True", "MinimumReplicasAvailable", f"ready on {nodes}")
        set_(cond.READY, "True", "Serving", f"{len(ready)}/{spec.replicas} replicas on {nodes}")
    else:
        set_(AVAILABLE, "False", "NoReplicaReady", "no replica job answers /ready yet")
        set_(cond.READY, "False", "NotServing", "no replica job answers /ready yet")
    progressing = r.progressing
    if progressing is not None:
        message = f"revision {progressing.revision} ({progressing.model_version}) is starting"
        set_(PROGRESSING, "True", "NewRevision", message)
    elif observed.model_uri is None:
        set_(PROGRESSING, "True", "WaitingForModel", observed.model_message)
    else:
        set_(PROGRESSING, "False", "RolloutComplete", "")
    latest = max(status.revisions, key=lambda x: x.revision, default=None)
    failed = latest is not None and latest.outcome == "RolledBack"
    message = f"revision {latest.revision}: {latest.message}" if failed and latest else ""
    reason = (latest.reason if failed and latest else None) or "NoRollback"
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


# ---------------------------------------------------------------- I/O


def routable_address(node: str) -> str | None:
    """The node's address if Kubernetes clients can route to it (not loopback)."""
    try:
        address = socket.gethostbyname(node)
    except OSError:
        return None
    ip = ipaddress.ip_address(address)
    return None if ip.is_loopback or ip.is_link_local or ip.is_unspecified else address


def probe_ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/ready", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def observe_replicas(ctx: handlers.Context, svc: Service, port: int) -> list[Replica]:
    jobs = ctx.slurm().list()
    found = []
    for replica in replicas_of(svc.uid, jobs, port):
        running = replica.phase == JobPhase.RUNNING and bool(replica.node)
        ready = running and probe_ready(replica.url)
        address = routable_address(replica.node) if ready else None
        found.append(_with(replica, ready, address))
    return found


def _with(replica: Replica, ready: bool, address: str | None) -> Replica:
    return replace(replica, ready=ready, address=address)


def reconcile_slurm_service(
    ctx: handlers.Context, svc: Service, spec: InferenceServiceSpec, now: datetime
) -> InferencePlan:
    """One pass of a SLURM-backed InferenceService (called by inference_handlers)."""
    from infinitecontext.operator.inference.handlers import inference_kube, resolve_model
    from infinitecontext.slurm_bridge.errors import SlurmUnavailable

    model = resolve_model(ctx, svc, spec)
    try:
        replicas = observe_replicas(ctx, svc, spec.server.port)
    except SlurmUnavailable as error:
        return _unavailable(svc, str(error))
    observed = SlurmObserved(
        model.uri,
        model.message,
        replicas,
        tracking_uri=spec.mlflow.tracking_uri or ctx.tracking_uri,
        job_path=ctx.slurm_job_path,
        keda=spec.autoscaling.enabled and inference_kube(ctx).keda_installed(),
        prometheus_url=os.environ.get("ICX_PROMETHEUS_URL", DEFAULT_PROMETHEUS),
    )
    result = plan_slurm_service(svc, spec, observed, now)
    slurm = ctx.slurm()
    for request in result.submit:
        slurm.submit(request)
    for job_id in result.cancel:
        slurm.cancel(job_id)
    kube = inference_kube(ctx)
    for obj in result.plan.apply:
        kube.apply(obj)
    for ref in result.plan.delete:
        kube.delete(ref, svc.namespace)
    return result.plan


def _unavailable(svc: Service, message: str) -> InferencePlan:
    """SLURM did not answer: keep the status, say so, try again on the next timer."""
    return InferencePlan(
        dict(svc.status), events=[Event("Warning", "SlurmUnavailable", message[:500])]
    )


def cancel_all(ctx: handlers.Context, body: Any, logger: logging.Logger) -> None:
    """Cancel every replica job of the service (its finalizer)."""
    import kopf

    from infinitecontext.slurm_bridge.errors import SlurmUnavailable

    uid = body["metadata"]["uid"]
    try:
        slurm = ctx.slurm()
        for replica in replicas_of(uid, slurm.list(), 0):
            if replica.alive:
                slurm.cancel(replica.job_id)
                logger.info("cancelled replica job %s", replica.job_id)
    except SlurmUnavailable as error:
        raise kopf.TemporaryError(f"SLURM unavailable, retrying: {error}", delay=15) from error


__all__ = [
    "INFERENCE_SERVICE",
    "Replica",
    "SlurmObserved",
    "cancel_all",
    "plan_slurm_service",
    "reconcile_slurm_service",
    "replica_key",
    "replicas_of",
]
