"""kopf handlers of InferenceService: parse, observe, plan, act.

Every trigger (create, spec update — `kubectl scale` and the HPA included — resume and
a timer) runs the same level-based pass (`passes.reconcile_pass`: the body kopf hands
in, or the status this operator wrote last where that body predates it, under the
object's lock). Kubernetes-backed services are planned by `planner.plan_inference`,
SLURM-backed ones by `slurm.plan_slurm_service`. `register(ctx, registry)` is called
by the operator at start; nothing registers at import.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from infinitecontext.crds.models import GROUP, INFERENCE_SERVICE, VERSION, Backend
from infinitecontext.operator import metrics
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.inference.apply import apply_children, apply_slurm, cancel_replicas
from infinitecontext.operator.inference.observe import observe_kubernetes, observe_slurm
from infinitecontext.operator.inference.planner import (
    InferencePlan,
    InvalidSpec,
    invalid_plan,
    parse,
    plan_inference,
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
    if spec.backend == Backend.SLURM:
        try:
            observed_jobs = observe_slurm(ctx, isvc, spec)
        except SlurmUnavailable as error:
            return unavailable_plan(isvc, str(error))
        slurm_plan = plan_slurm_service(isvc, spec, observed_jobs, now)
        apply_slurm(ctx, isvc, slurm_plan)
        return slurm_plan.plan
    observed = observe_kubernetes(ctx, isvc, spec)
    plan = plan_inference(isvc, spec, observed, now)
    apply_children(ctx, isvc, plan, canary_exists=observed.canary is not None)
    return plan


def cancel_slurm_replicas(ctx: OperatorContext, body: Any, logger: Any) -> None:
    """Finalizer of SLURM-backed services: cancel every replica job."""
    try:
        for job_id in cancel_replicas(ctx, body["metadata"]["uid"]):
            logger.info("cancelled replica job %s", job_id)
    except SlurmUnavailable as error:
        raise kopf.TemporaryError(f"SLURM unavailable, retrying: {error}", delay=15) from error


def register(ctx: OperatorContext, target: kopf.OperatorRegistry) -> None:
    """Register the InferenceService handlers into `target`; the timer polls every
    `ctx.inference_poll_seconds`."""

    def handle(**kwargs: Any) -> None:
        reconcile_inference(ctx, kwargs["body"])

    def cancel(**kwargs: Any) -> None:
        cancel_slurm_replicas(ctx, kwargs["body"], kwargs["logger"])

    def forget(**kwargs: Any) -> None:
        uid = kwargs["body"]["metadata"]["uid"]
        metrics.record_object(uid, "", "", "", None)
        ctx.forget(uid)

    args = (GROUP, VERSION, INFERENCE_SERVICE.plural)
    poll = ctx.inference_poll_seconds
    kopf.on.create(*args, id="isvc-create", registry=target)(handle)
    kopf.on.update(*args, id="isvc-update", field="spec", registry=target)(handle)
    kopf.on.resume(*args, id="isvc-resume", registry=target)(handle)
    kopf.timer(*args, id="isvc-poll", interval=poll, idle=None, registry=target)(handle)
    kopf.on.delete(
        *args, id="isvc-cancel-slurm", field="spec.backend", value="slurm", registry=target
    )(cancel)
    kopf.on.delete(*args, id="isvc-forget", optional=True, registry=target)(forget)
