"""kopf handlers of TrainingRun, Alignment and Evaluation: parse, observe, plan, act.

Every trigger (create, update, resume, and a timer while work is in flight) runs the
same level-based pass (`passes.reconcile_pass`: the object's lock, the status written
as a merge patch of what changed). `register(ctx, registry)` is called by the operator
at start; nothing registers at import.
"""

from __future__ import annotations

import time
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
    Phase,
    WorkloadSpec,
)
from infinitecontext.operator import metrics, registry
from infinitecontext.operator.backoff import FIRST_DELAY_SECONDS
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.failures import refusal
from infinitecontext.operator.finalizers import CancelJobs, cancel_live, finalize_remote_jobs
from infinitecontext.operator.passes import Pass, reconcile_pass
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.apply import execute
from infinitecontext.operator.workloads.observe import FINAL_PHASES, observe, tracking_uri
from infinitecontext.operator.workloads.planner import InvalidSpec, Plan, parse, reconcile
from infinitecontext.operator.workloads.slurm import slurm_key
from infinitecontext.slurm_bridge.client import SlurmClient
from infinitecontext.slurm_bridge.errors import SlurmUnavailable

WORK_KINDS = (TRAINING_RUN, ALIGNMENT, EVALUATION)
MAX_PASSES = 4
"""Passes in one go while an action unlocks immediate progress (a registered model)."""


def reconcile_object(ctx: OperatorContext, kind: Kind, body: Any) -> None:
    if body["metadata"].get("deletionTimestamp"):
        return  # the finalizers run: nothing new may be submitted
    with reconcile_pass(ctx, kind, body) as current:
        spec = parse(current.resource, ctx.policy)
        for _ in range(MAX_PASSES):
            plan = _one_pass(ctx, current, spec)
            if not plan.needs_another_pass:
                break


def poll_object(ctx: OperatorContext, kind: Kind, body: Any) -> None:
    """The timer's pass, on the backoff's schedule while a backend is unreachable."""
    ctx.backoff.poll(body["metadata"]["uid"], lambda: reconcile_object(ctx, kind, body))


def _one_pass(ctx: OperatorContext, current: Pass, spec: WorkloadSpec | InvalidSpec) -> Plan:
    resource: Resource = current.resource
    now = datetime.now(UTC)
    observed = observe(ctx, resource, spec)
    if observed.unavailable:
        observed = replace(observed, unavailable=_retrying(ctx, resource, observed.unavailable))
    plan = reconcile(resource, spec, observed, now)
    try:
        status = execute(ctx, plan, tracking_uri(ctx, spec))
        if not observed.unavailable:
            ctx.backoff.recovered(resource.uid)
    except (SlurmUnavailable, registry.RegistryUnavailable) as error:
        # Said in status (Ready=Unknown); the timer tries again after the backoff.
        down = replace(observed, unavailable=_retrying(ctx, resource, str(error)))
        plan = reconcile(resource, spec, down, now)
        status = plan.status
    except Exception as error:
        refused = refusal(error)
        if refused is None:
            raise
        # Said in status (Ready=False, Invalid); not tried again until the spec changes.
        plan = reconcile(resource, spec, replace(observed, refused=refused), now)
        status = plan.status
    current.advance(status, plan.events)
    return plan


def _retrying(ctx: OperatorContext, resource: Resource, error: str) -> str:
    """The outage's condition message: the error, the attempt and the next retry."""
    return ctx.backoff.failed(resource.uid, time.monotonic()).describe(error)


def _in_flight(**kwargs: Any) -> bool:
    """The timer only polls objects whose work is not finished or refused (or whose spec
    moved): an Invalid spec is not tried again until it changes."""
    body = kwargs["body"]
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    settled = status.get("phase") in {*FINAL_PHASES, Phase.INVALID}
    return not settled or status.get("observedGeneration") != generation


def slurm_jobs_of(body: Any) -> CancelJobs:
    """The finalizer's cancel of a workload: its recorded job, and any job of its
    current attempt's key (submitted, but the id never recorded)."""
    job = (body.get("status") or {}).get("job") or {}
    key = slurm_key(body["metadata"]["uid"], int(job.get("attempt", 0)))

    def cancel(slurm: SlurmClient) -> list[int]:
        recorded = [int(job["slurmJobId"])] if job.get("slurmJobId") else []
        return cancel_live(slurm, recorded + [j.job_id for j in slurm.list(key=key)])

    return cancel


def register(ctx: OperatorContext, target: kopf.OperatorRegistry) -> None:
    """Register the handlers of the three workload kinds into `target`."""
    for kind in WORK_KINDS:
        _register_kind(ctx, kind, target)


def _register_kind(ctx: OperatorContext, kind: Kind, target: kopf.OperatorRegistry) -> None:
    def handle(**kwargs: Any) -> None:
        reconcile_object(ctx, kind, kwargs["body"])

    def timer(**kwargs: Any) -> None:
        poll_object(ctx, kind, kwargs["body"])

    def cancel(**kwargs: Any) -> None:
        body = kwargs["body"]
        metrics.record_object(body["metadata"]["uid"], "", "", "", None)
        finalize_remote_jobs(
            ctx, kind, body, kwargs["retry"], slurm_jobs_of(body), kwargs["logger"]
        )

    def forget(**kwargs: Any) -> None:
        uid = kwargs["body"]["metadata"]["uid"]
        metrics.record_object(uid, "", "", "", None)
        ctx.forget(uid)

    handle.__name__ = f"reconcile_{kind.singular}"
    timer.__name__ = f"poll_{kind.singular}"
    args = (GROUP, VERSION, kind.plural)
    poll = ctx.workload_poll_seconds
    kopf.on.create(*args, id="reconcile-create", registry=target)(handle)
    kopf.on.update(*args, id="reconcile-update", field="spec", registry=target)(handle)
    kopf.on.resume(*args, id="reconcile-resume", registry=target)(handle)
    # The first poll is due when a first retry would be (the create pass may have failed).
    first = min(poll, FIRST_DELAY_SECONDS)
    kopf.timer(
        *args, id="poll", interval=poll, initial_delay=first, when=_in_flight, registry=target
    )(timer)
    kopf.on.delete(*args, id="cancel-slurm", field="spec.backend", value="slurm", registry=target)(
        cancel
    )
    kopf.on.delete(*args, id="forget", optional=True, registry=target)(forget)
