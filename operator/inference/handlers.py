"""kopf handlers of InferenceService: parse, observe, plan, act.

Every trigger (create, spec update — `kubectl scale` and the HPA included — resume and
a timer) runs the same level-based pass (`passes.reconcile_pass`: the body kopf hands
in, or the status this operator wrote last where that body predates it, under the
object's lock). Kubernetes-backed services are planned by `planner.plan_inference`,
SLURM-backed ones by `slurm.plan_slurm_service`. `register(ctx, registry)` is called
by the operator at start; nothing registers at import.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import kopf

from infinitecontext.crds.models import (
    GROUP,
    INFERENCE_SERVICE,
    VERSION,
    Backend,
    InferenceServiceSpec,
)
from infinitecontext.operator import metrics
from infinitecontext.operator.conditions import refused_at
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.failures import refusal
from infinitecontext.operator.finalizers import finalize_remote_jobs
from infinitecontext.operator.inference.apply import apply_children, apply_slurm, cancel_replicas
from infinitecontext.operator.inference.observe import observe_kubernetes, observe_slurm
from infinitecontext.operator.inference.planner import (
    InferencePlan,
    InvalidSpec,
    invalid_plan,
    parse,
    plan_inference,
    status_conditions,
)
from infinitecontext.operator.inference.slurm import plan_slurm_service, unavailable_plan
from infinitecontext.operator.passes import reconcile_pass
from infinitecontext.operator.resource import Resource
from infinitecontext.slurm_bridge.errors import SlurmUnavailable


def reconcile_inference(ctx: OperatorContext, body: Any) -> None:
    """One pass over one InferenceService."""
    if body["metadata"].get("deletionTimestamp"):
        return  # the finalizers run; nothing more to roll out
    with reconcile_pass(ctx, INFERENCE_SERVICE, body) as current:
        plan = _one_pass(ctx, current.resource, datetime.now(UTC))
        current.advance(plan.status, plan.events)


def _one_pass(ctx: OperatorContext, isvc: Resource, now: datetime) -> InferencePlan:
    spec = parse(isvc, ctx.policy)
    if isinstance(spec, InvalidSpec):
        return invalid_plan(isvc, spec, now)
    if refused_at(status_conditions(isvc), isvc.generation):
        return InferencePlan(dict(isvc.status))  # not tried again until the spec changes
    try:
        return _roll_out(ctx, isvc, spec, now)
    except Exception as error:
        refused = refusal(error)
        if refused is None:
            raise
        return invalid_plan(isvc, InvalidSpec(refused.message, refused.reason), now)


def _roll_out(
    ctx: OperatorContext, isvc: Resource, spec: InferenceServiceSpec, now: datetime
) -> InferencePlan:
    if spec.backend == Backend.SLURM:
        try:
            observed_jobs = observe_slurm(ctx, isvc, spec)
        except SlurmUnavailable as error:
            outage = ctx.backoff.failed(isvc.uid, time.monotonic())
            return unavailable_plan(isvc, outage.describe(str(error)), now)
        ctx.backoff.recovered(isvc.uid)
        slurm_plan = plan_slurm_service(isvc, spec, observed_jobs, now)
        apply_slurm(ctx, isvc, slurm_plan)
        return slurm_plan.plan
    observed = observe_kubernetes(ctx, isvc, spec)
    plan = plan_inference(isvc, spec, observed, now)
    apply_children(ctx, isvc, plan, canary_exists=observed.canary is not None)
    return plan


def poll_inference(ctx: OperatorContext, body: Any) -> None:
    """The timer's pass, on the backoff's schedule while SLURM is unreachable."""
    ctx.backoff.poll(body["metadata"]["uid"], lambda: reconcile_inference(ctx, body))


def register(ctx: OperatorContext, target: kopf.OperatorRegistry) -> None:
    """Register the InferenceService handlers into `target`; the timer polls every
    `ctx.inference_poll_seconds`."""

    def handle(**kwargs: Any) -> None:
        reconcile_inference(ctx, kwargs["body"])

    def timer(**kwargs: Any) -> None:
        poll_inference(ctx, kwargs["body"])

    def cancel(**kwargs: Any) -> None:
        body = kwargs["body"]
        uid = body["metadata"]["uid"]
        finalize_remote_jobs(
            ctx,
            INFERENCE_SERVICE,
            body,
            kwargs["retry"],
            lambda slurm: cancel_replicas(slurm, uid),
            kwargs["logger"],
        )

    def forget(**kwargs: Any) -> None:
        uid = kwargs["body"]["metadata"]["uid"]
        metrics.record_object(uid, "", "", "", None)
        ctx.forget(uid)

    args = (GROUP, VERSION, INFERENCE_SERVICE.plural)
    poll = ctx.inference_poll_seconds
    kopf.on.create(*args, id="isvc-create", registry=target)(handle)
    kopf.on.update(*args, id="isvc-update", field="spec", registry=target)(handle)
    kopf.on.resume(*args, id="isvc-resume", registry=target)(handle)
    kopf.timer(*args, id="isvc-poll", interval=poll, idle=None, registry=target)(timer)
    kopf.on.delete(
        *args, id="isvc-cancel-slurm", field="spec.backend", value="slurm", registry=target
    )(cancel)
    kopf.on.delete(*args, id="isvc-forget", optional=True, registry=target)(forget)
