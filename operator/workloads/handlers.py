"""kopf handlers of TrainingRun, Alignment and Evaluation: parse, observe, plan, act.

Every trigger (create, update, resume, and a timer while work is in flight) runs the
same level-based pass (`passes.reconcile_pass`: the object's lock, the status written
as a merge patch of what changed). `register(ctx, registry)` is called by the operator
at start; nothing registers at import.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf

from infinitecontext.crds.models import (
    ALIGNMENT,
    EVALUATION,
    GROUP,
    TRAINING_RUN,
    VERSION,
    Kind,
    WorkloadSpec,
)
from infinitecontext.operator import metrics, registry
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.passes import Pass, reconcile_pass
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.apply import execute
from infinitecontext.operator.workloads.observe import FINAL_PHASES, observe, tracking_uri
from infinitecontext.operator.workloads.planner import InvalidSpec, Plan, parse, reconcile
from infinitecontext.operator.workloads.slurm import slurm_key
from infinitecontext.slurm_bridge.errors import SlurmUnavailable

WORK_KINDS = (TRAINING_RUN, ALIGNMENT, EVALUATION)
MAX_PASSES = 4
"""Passes in one go while an action unlocks immediate progress (a registered model)."""


def reconcile_object(ctx: OperatorContext, kind: Kind, body: Any) -> None:
    with reconcile_pass(ctx, kind, body) as current:
        spec = parse(current.resource, ctx.policy)
        for _ in range(MAX_PASSES):
            plan = _one_pass(ctx, current, spec)
            if not plan.needs_another_pass:
                break


def _one_pass(ctx: OperatorContext, current: Pass, spec: WorkloadSpec | InvalidSpec) -> Plan:
    resource: Resource = current.resource
    now = datetime.now(UTC)
    observed = observe(ctx, resource, spec)
    plan = reconcile(resource, spec, observed, now)
    try:
        status = execute(ctx, plan, tracking_uri(ctx, spec))
    except (SlurmUnavailable, registry.RegistryUnavailable) as error:
        # Said in status (Ready=Unknown); the timer's next pass tries again.
        down = replace(observed, unavailable=str(error))
        plan = reconcile(resource, spec, down, now)
        status = plan.status
    current.advance(status, plan.events)
    return plan


def _in_flight(**kwargs: Any) -> bool:
    """The timer only polls objects whose work is not finished (or whose spec moved)."""
    body = kwargs["body"]
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    return status.get("phase") not in FINAL_PHASES or status.get("observedGeneration") != generation


def cancel_slurm_job(ctx: OperatorContext, body: Any, logger: Any) -> None:
    """Finalizer of SLURM-backed work: cancel the job before the object goes."""
    job = (body.get("status") or {}).get("job") or {}
    uid = body["metadata"]["uid"]
    metrics.record_object(uid, "", "", "", None)
    try:
        slurm = ctx.slurm()
        ids = [int(job["slurmJobId"])] if job.get("slurmJobId") else []
        key = slurm_key(uid, int(job.get("attempt", 0)))
        ids += [j.job_id for j in slurm.list(key=key) if j.job_id not in ids and not j.finished]
        for job_id in ids:
            slurm.cancel(job_id)
            logger.info("cancelled SLURM job %s", job_id)
    except SlurmUnavailable as error:
        raise kopf.TemporaryError(f"SLURM unavailable, retrying: {error}", delay=15) from error


def register(ctx: OperatorContext, target: kopf.OperatorRegistry) -> None:
    """Register the handlers of the three workload kinds into `target`."""
    for kind in WORK_KINDS:
        _register_kind(ctx, kind, target)


def _register_kind(ctx: OperatorContext, kind: Kind, target: kopf.OperatorRegistry) -> None:
    def handle(**kwargs: Any) -> None:
        reconcile_object(ctx, kind, kwargs["body"])

    def cancel(**kwargs: Any) -> None:
        cancel_slurm_job(ctx, kwargs["body"], kwargs["logger"])

    def forget(**kwargs: Any) -> None:
        uid = kwargs["body"]["metadata"]["uid"]
        metrics.record_object(uid, "", "", "", None)
        ctx.forget(uid)

    handle.__name__ = f"reconcile_{kind.singular}"
    args = (GROUP, VERSION, kind.plural)
    poll = ctx.workload_poll_seconds
    kopf.on.create(*args, id="reconcile-create", registry=target)(handle)
    kopf.on.update(*args, id="reconcile-update", field="spec", registry=target)(handle)
    kopf.on.resume(*args, id="reconcile-resume", registry=target)(handle)
    kopf.timer(
        *args, id="poll", interval=poll, initial_delay=poll, when=_in_flight, registry=target
    )(handle)
    kopf.on.delete(*args, id="cancel-slurm", field="spec.backend", value="slurm", registry=target)(
        cancel
    )
    kopf.on.delete(*args, id="forget", optional=True, registry=target)(forget)
