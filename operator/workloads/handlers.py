"""kopf handlers: observe, call the pure reconciler, act, write status. Nothing more.

Every trigger (create, update, resume, and a timer while work is in flight) runs the
same level-based `reconcile_object`, serialised per object by a lock, so a timer that
fires during an update handler cannot submit twice. Status is written by a merge
patch of what changed; an unchanged pass writes nothing.
"""

from __future__ import annotations

import getpass
import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

from infinitecontext.crds.models import (
    ALIGNMENT,
    EVALUATION,
    GROUP,
    INFERENCE_SERVICE,
    KINDS_BY_NAME,
    TRAINING_RUN,
    VERSION,
    AlignmentSpec,
    EvaluationSpec,
    Kind,
    ModelRef,
    Phase,
    WorkloadSpec,
)
from infinitecontext.operator import metrics, registry
from infinitecontext.operator.kube import Kube, status_patch
from infinitecontext.operator.workloads.jobs import JobObservation, observe_job
from infinitecontext.operator.workloads.planner import (
    ApplyChildren,
    CancelSlurm,
    InputModel,
    JudgeInput,
    Observed,
    Plan,
    RegisterModel,
    Resource,
    SubmitSlurm,
    TagModelVersion,
    input_from_object,
    judge_from_object,
    reconcile,
    registered_model_name,
)
from infinitecontext.operator.workloads.recipe import run_experiments, run_name
from infinitecontext.operator.workloads.slurm import observe_slurm, slurm_key
from infinitecontext.slurm_bridge.client import SlurmClient, find_by_key
from infinitecontext.slurm_bridge.errors import JobNotFound, SlurmUnavailable

log = logging.getLogger(__name__)
TIMER_SECONDS = float(os.environ.get("ICX_OPERATOR_POLL_SECONDS", "10"))
WORK_KINDS = (TRAINING_RUN, ALIGNMENT, EVALUATION)
FINAL_PHASES = {Phase.SUCCEEDED, Phase.FAILED}


class Unavailable(Exception):
    """SLURM or MLflow did not answer."""


@dataclass
class Context:
    """What the handlers reach the world through (set up once, at operator start)."""

    kube: Kube
    tracking_uri: str
    slurm_url: str
    slurm_job_path: str = ""
    _slurm: SlurmClient | None = None
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    locks: dict[str, threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    written: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """uid -> (resourceVersion we reconciled, the status we wrote for it)."""

    def slurm(self) -> SlurmClient:
        if self._slurm is None:
            from infinitecontext.slurm_bridge.auth import ScontrolToken, TokenFile, TokenProvider
            from infinitecontext.slurm_bridge.client import connect

            token_file = os.environ.get("ICX_SLURM_TOKEN_FILE")
            user = os.environ.get("ICX_SLURM_USER", getpass.getuser())
            token: TokenProvider = (
                TokenFile(user, Path(token_file)) if token_file else ScontrolToken(user)
            )
            self._slurm = connect(self.slurm_url, token)
        return self._slurm


_context: Context | None = None


def context() -> Context:
    if _context is None:
        raise RuntimeError("the operator context is not set up (on.startup did not run)")
    return _context


def set_context(value: Context | None) -> None:
    global _context
    _context = value


# ---------------------------------------------------------------- observe


def resource_of(kind: Kind, body: Any) -> Resource:
    meta = body["metadata"]
    return Resource(
        kind=kind.kind,
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
        spec=dict(body.get("spec") or {}),
        status={k: v for k, v in dict(body.get("status") or {}).items() if k != "kopf"},
    )


def _parse(kind: Kind, resource: Resource) -> WorkloadSpec | None:
    try:
        spec = kind.spec.model_validate(resource.spec)
    except ValueError:
        return None
    return spec if isinstance(spec, WorkloadSpec) else None


def tracking_uri(ctx: Context, spec: WorkloadSpec | None) -> str:
    return (spec.mlflow.tracking_uri if spec else None) or ctx.tracking_uri


def observe(ctx: Context, kind: Kind, resource: Resource) -> Observed:
    spec = _parse(kind, resource)
    uri = tracking_uri(ctx, spec)
    base = Observed(tracking_uri=uri, slurm_job_path=ctx.slurm_job_path)
    if spec is None or resource.status.get("phase") in FINAL_PHASES:
        return base
    try:
        input_model = _observe_input(ctx, resource, spec, uri)
        judge = _observe_judge(ctx, resource, spec)
        job = _observe_job(ctx, resource, spec)
        run, registered = _observe_run(ctx, kind, resource, spec, job, uri)
    except (SlurmUnavailable, registry.RegistryUnavailable) as error:
        failures = ctx.failures[resource.uid]
        return replace(base, unavailable=str(error), failures=failures)
    return replace(base, job=job, run=run, registered=registered, input=input_model, judge=judge)


def _observe_judge(ctx: Context, resource: Resource, spec: WorkloadSpec) -> JudgeInput | None:
    """The judge InferenceService, read only until the job is submitted (it carries the URL)."""
    if not isinstance(spec, EvaluationSpec) or spec.judge is None:
        return None
    name = spec.judge.inference_service
    if not name or (resource.status.get("job") and resource.status.get("judge")):
        return None
    return judge_from_object(
        name, ctx.kube.read_custom(INFERENCE_SERVICE, name, resource.namespace)
    )


def _observe_input(
    ctx: Context, resource: Resource, spec: WorkloadSpec, uri: str
) -> InputModel | None:
    if isinstance(spec, AlignmentSpec):
        ref: ModelRef = spec.base_model
    elif isinstance(spec, EvaluationSpec):
        ref = spec.model
    else:
        return None
    if ref.mlflow is not None:
        return registry.resolve(registry.client(uri), ref.mlflow)
    referenced = TRAINING_RUN if ref.training_run else ALIGNMENT
    name = ref.training_run or ref.alignment or ""
    obj = ctx.kube.read_custom(referenced, name, resource.namespace)
    return input_from_object(referenced.kind, name, obj)


def _observe_job(ctx: Context, resource: Resource, spec: WorkloadSpec) -> JobObservation | None:
    job = resource.status.get("job") or {}
    if not job:
        return None
    if job.get("backend") == "kubernetes":
        found = ctx.kube.read_job(job.get("name", ""), resource.namespace)
        return observe_job(found) if found else None
    slurm = ctx.slurm()
    if job.get("slurmJobId"):
        try:
            return observe_slurm(slurm.get(int(job["slurmJobId"])))
        except JobNotFound:
            return None
    # Submitted, but the id was never recorded (operator restart): find it by its key.
    status = find_by_key(
        slurm.list(key=slurm_key(resource.uid, int(job.get("attempt", 0)))),
        slurm_key(resource.uid, int(job.get("attempt", 0))),
    )
    return observe_slurm(status) if status else None


def _observe_run(
    ctx: Context,
    kind: Kind,
    resource: Resource,
    spec: WorkloadSpec,
    job: JobObservation | None,
    uri: str,
) -> tuple[Any, Any]:
    if spec is None or job is None or job.phase not in ("Running", "Succeeded"):
        return None, None
    mlflow = registry.client(uri)
    run_id = resource.status.get("runId") or registry.find_run_id(
        mlflow, run_experiments(kind.kind, spec), run_name(resource.uid)
    )
    if run_id is None:
        return None, None
    is_eval = kind is EVALUATION
    run = registry.observe_run(mlflow, run_id, want_model=not is_eval and job.phase == "Succeeded")
    registered = None
    if not is_eval and job.phase == "Succeeded":
        registered = registry.find_version(mlflow, registered_model_name(resource, spec), run_id)
    return run, registered


# ---------------------------------------------------------------- act


def execute(ctx: Context, kind: Kind, resource: Resource, plan: Plan) -> dict[str, Any]:
    """Carry out the plan's actions; the status, updated with what they returned."""
    status = dict(plan.status)
    spec = _parse(kind, resource)
    uri = tracking_uri(ctx, spec)
    for action in plan.actions:
        if isinstance(action, ApplyChildren):
            for obj in action.objects:
                ctx.kube.apply(obj)
        elif isinstance(action, SubmitSlurm):
            ref = ctx.slurm().submit(action.request)
            log.info(
                "SLURM job %s for %s (created: %s, PATH=%s)",
                ref.job_id,
                action.request.key,
                ref.created,
                action.request.environment.get("PATH", "<node default>"),
            )
            status["job"] = {**status.get("job", {}), "slurmJobId": ref.job_id}
        elif isinstance(action, CancelSlurm):
            ctx.slurm().cancel(action.job_id)
        elif isinstance(action, RegisterModel):
            registry.register(
                registry.client(uri), action.name, action.source, action.run_id, action.tags
            )
        elif isinstance(action, TagModelVersion):
            registry.tag_version(registry.client(uri), action.name, action.version, action.tags)
    return status


def reconcile_object(kind: Kind, body: Any, logger: logging.Logger) -> None:
    """One level-based pass (a few, while actions unlock immediate progress)."""
    ctx = context()
    resource = resource_of(kind, body)
    started = time.monotonic()
    result = "ok"
    with ctx.locks[resource.uid]:
        previous = ctx.written.get(resource.uid)
        if previous is not None and _older(body, previous[0]):
            # A trigger that queued behind our last write carries a body from before
            # it: continue from the status we wrote, not from the stale one.
            resource = replace(resource, status=previous[1])
        original = resource.status
        try:
            for _ in range(4):
                resource, plan = _one_pass(ctx, kind, resource, body)
                if not plan.needs_another_pass:
                    break
        except Exception:
            metrics.ERRORS.labels(kind.kind).inc()
            result = "error"
            raise
        finally:
            patch = status_patch(original, resource.status)
            if patch:
                version = ctx.kube.patch_status(kind, resource.name, resource.namespace, patch)
                ctx.written[resource.uid] = (version, resource.status)
            metrics.record_object(
                resource.uid, kind.kind, resource.namespace, resource.name, resource.status
            )
            metrics.RECONCILES.labels(kind.kind, result).inc()
            metrics.DURATION.labels(kind.kind).observe(time.monotonic() - started)


def _older(body: Any, written_version: str) -> bool:
    """Whether `body` predates our status write (etcd revisions grow; the API calls
    them opaque, so anything that is not a number counts as not older)."""
    seen = str(body["metadata"].get("resourceVersion", ""))
    return seen.isdigit() and written_version.isdigit() and int(seen) < int(written_version)


def _one_pass(ctx: Context, kind: Kind, resource: Resource, body: Any) -> tuple[Resource, Plan]:
    now = datetime.now(UTC)
    observed = observe(ctx, kind, resource)
    plan = reconcile(resource, observed, now)
    try:
        status = execute(ctx, kind, resource, plan)
        ctx.failures.pop(resource.uid, None)
    except (SlurmUnavailable, registry.RegistryUnavailable) as error:
        ctx.failures[resource.uid] += 1
        down = replace(observed, unavailable=str(error), failures=ctx.failures[resource.uid])
        plan = reconcile(resource, down, now)
        status = plan.status
    for event in plan.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1000])
    return replace(resource, status=status), plan


# ---------------------------------------------------------------- registration


def _handler(kind: Kind) -> Any:
    def handle(**kwargs: Any) -> None:
        reconcile_object(kind, kwargs["body"], kwargs["logger"])

    handle.__name__ = f"reconcile_{kind.singular}"
    return handle


def _in_flight(**kwargs: Any) -> bool:
    """The timer only polls objects whose work is not finished (or whose spec moved)."""
    body = kwargs["body"]
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    return status.get("phase") not in FINAL_PHASES or status.get("observedGeneration") != generation


def _cancel_slurm_job(**kwargs: Any) -> None:
    """Finalizer of SLURM-backed work: cancel the job before the object goes."""
    body, logger = kwargs["body"], kwargs["logger"]
    job = (body.get("status") or {}).get("job") or {}
    uid = body["metadata"]["uid"]
    metrics.record_object(uid, "", "", "", None)
    try:
        slurm = context().slurm()
        ids = [int(job["slurmJobId"])] if job.get("slurmJobId") else []
        key = slurm_key(uid, int(job.get("attempt", 0)))
        ids += [j.job_id for j in slurm.list(key=key) if j.job_id not in ids and not j.finished]
        for job_id in ids:
            slurm.cancel(job_id)
            logger.info("cancelled SLURM job %s", job_id)
    except SlurmUnavailable as error:
        raise kopf.TemporaryError(f"SLURM unavailable, retrying: {error}", delay=15) from error


def _forget(**kwargs: Any) -> None:
    uid = kwargs["body"]["metadata"]["uid"]
    metrics.record_object(uid, "", "", "", None)
    if _context is not None:
        _context.written.pop(uid, None)
        _context.failures.pop(uid, None)


def register_handlers() -> None:
    for kind in WORK_KINDS:
        handle = _handler(kind)
        args = (GROUP, VERSION, kind.plural)
        kopf.on.create(*args, id="reconcile-create")(handle)
        kopf.on.update(*args, id="reconcile-update", field="spec")(handle)
        kopf.on.resume(*args, id="reconcile-resume")(handle)
        kopf.timer(
            *args, id="poll", interval=TIMER_SECONDS, initial_delay=TIMER_SECONDS, when=_in_flight
        )(handle)
        kopf.on.delete(*args, id="cancel-slurm", field="spec.backend", value="slurm")(
            _cancel_slurm_job
        )
        kopf.on.delete(*args, id="forget", optional=True)(_forget)


register_handlers()

__all__ = ["KINDS_BY_NAME", "Context", "reconcile_object", "set_context"]
