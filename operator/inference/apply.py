"""Carry out an InferenceService plan through the operator's context: apply and delete
children, submit and cancel SLURM replica jobs."""

from __future__ import annotations

from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.finalizers import cancel_live
from infinitecontext.operator.inference.planner import InferencePlan
from infinitecontext.operator.inference.slurm import SlurmPlan, replicas_of
from infinitecontext.operator.resource import Resource
from infinitecontext.slurm_bridge.client import SlurmClient


def apply_children(
    ctx: OperatorContext, isvc: Resource, plan: InferencePlan, canary_exists: bool = True
) -> None:
    for obj in plan.apply:
        ctx.dynamic.apply(obj)
    for ref in plan.delete:
        if ref.kind == "Deployment" and not canary_exists:
            continue  # nothing to delete: skip the call
        ctx.dynamic.delete(ref.api_version, ref.kind, ref.name, isvc.namespace)


def apply_slurm(ctx: OperatorContext, isvc: Resource, plan: SlurmPlan) -> None:
    slurm = ctx.slurm()
    for request in plan.submit:
        slurm.submit(request)
    for job_id in plan.cancel:
        slurm.cancel(job_id)
    apply_children(ctx, isvc, plan.plan)


def cancel_replicas(slurm: SlurmClient, uid: str) -> list[int]:
    """Cancel every live replica job of the InferenceService `uid`; their ids."""
    return cancel_live(slurm, [r.job_id for r in replicas_of(uid, slurm.list(), 0) if r.alive])
