"""Carry out a workload plan's actions through the operator's context."""

from __future__ import annotations

import logging
from typing import Any

from infinitecontext.operator import registry
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.workloads.planner import (
    ApplyChildren,
    CancelSlurm,
    LogRunMetrics,
    Plan,
    RegisterModel,
    SetModelAlias,
    SubmitSlurm,
    TagModelVersion,
)

log = logging.getLogger(__name__)


def execute(ctx: OperatorContext, plan: Plan, tracking_uri: str) -> dict[str, Any]:
    """Carry out the plan's actions; the status, updated with what they returned."""
    status = dict(plan.status)
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
            mlflow = registry.client(tracking_uri)
            registry.register(mlflow, action.name, action.source, action.run_id, action.tags)
        elif isinstance(action, TagModelVersion):
            mlflow = registry.client(tracking_uri)
            registry.tag_version(mlflow, action.name, action.version, action.tags)
        elif isinstance(action, LogRunMetrics):
            mlflow = registry.client(tracking_uri)
            registry.log_metrics(
                mlflow, action.run_id, action.metrics, action.step, action.timestamp_ms
            )
        elif isinstance(action, SetModelAlias):
            mlflow = registry.client(tracking_uri)
            registry.set_alias(mlflow, action.name, action.version, action.alias)
    return status
