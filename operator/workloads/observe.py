"""What a workload pass observes, through the operator's context: the Job or SLURM job,
the MLflow run and registered version, the input model and an Evaluation's judge."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from infinitecontext.crds.models import (
    ALIGNMENT,
    EVALUATION,
    INFERENCE_SERVICE,
    TRAINING_RUN,
    AlignmentSpec,
    EvaluationSpec,
    ModelRef,
    Phase,
    WorkloadSpec,
)
from infinitecontext.operator import registry
from infinitecontext.operator.conditions import REJECTED, Refusal
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.jobs import JobObservation, observe_job
from infinitecontext.operator.workloads.planner import (
    InputModel,
    InvalidSpec,
    JudgeInput,
    Observed,
    input_from_object,
    judge_from_object,
    registered_model_name,
)
from infinitecontext.operator.workloads.recipe import run_experiments, run_name
from infinitecontext.operator.workloads.slurm import observe_slurm, slurm_key
from infinitecontext.slurm_bridge.client import find_by_key, read_logs
from infinitecontext.slurm_bridge.errors import JobNotFound, SlurmUnavailable
from infinitecontext.slurm_bridge.models import JobStatus
from infinitecontext.slurm_bridge.states import Phase as SlurmPhase

FINAL_PHASES = {Phase.SUCCEEDED, Phase.FAILED}
ERROR_TAIL_LINES = 5
ERROR_TAIL_CHARS = 600


def tracking_uri(ctx: OperatorContext, spec: WorkloadSpec | InvalidSpec) -> str:
    own = spec.mlflow.tracking_uri if isinstance(spec, WorkloadSpec) else None
    return own or ctx.tracking_uri


def observe(ctx: OperatorContext, resource: Resource, spec: WorkloadSpec | InvalidSpec) -> Observed:
    uri = tracking_uri(ctx, spec)
    base = Observed(tracking_uri=uri, slurm_job_path=ctx.slurm_job_path)
    if isinstance(spec, InvalidSpec) or resource.status.get("phase") in FINAL_PHASES:
        return base
    try:
        input_model = _input(ctx, resource, spec, uri)
        judge = _judge(ctx, resource, spec)
        job = job_of(ctx, resource)
        run, registered = _run(resource, spec, job, uri)
    except (SlurmUnavailable, registry.RegistryUnavailable) as error:
        return replace(base, unavailable=str(error))
    except registry.RegistryRejected as error:
        return replace(base, refused=Refusal(REJECTED, str(error)))
    return replace(base, job=job, run=run, registered=registered, input=input_model, judge=judge)


def _judge(ctx: OperatorContext, resource: Resource, spec: WorkloadSpec) -> JudgeInput | None:
    """The judge InferenceService, read only until the job is submitted (it carries the URL)."""
    if not isinstance(spec, EvaluationSpec) or spec.judge is None:
        return None
    name = spec.judge.inference_service
    if not name or (resource.status.get("job") and resource.status.get("judge")):
        return None
    return judge_from_object(
        name, ctx.kube.read_custom(INFERENCE_SERVICE, name, resource.namespace)
    )


def _input(
    ctx: OperatorContext, resource: Resource, spec: WorkloadSpec, uri: str
) -> InputModel | None:
    if isinstance(spec, AlignmentSpec):
        ref: ModelRef = spec.base_model
    elif isinstance(spec, EvaluationSpec):
        ref = spec.model
    else:
        return None
    if resource.status.get("job") and resource.status.get("inputModel"):
        return None  # the submitted job carries its input: not read again
    if ref.mlflow is not None:
        return registry.resolve(registry.client(uri), ref.mlflow)
    referenced = TRAINING_RUN if ref.training_run else ALIGNMENT
    name = ref.training_run or ref.alignment or ""
    obj = ctx.kube.read_custom(referenced, name, resource.namespace)
    return input_from_object(referenced.kind, name, obj)


def job_of(ctx: OperatorContext, resource: Resource) -> JobObservation | None:
    """The submitted job as its backend reports it; None: not submitted (or, on
    Kubernetes, deleted). A SLURM job SLURM has forgotten is `Lost`."""
    job = resource.status.get("job") or {}
    if not job:
        return None
    if job.get("backend") == "kubernetes":
        found = ctx.kube.read_job(job.get("name", ""), resource.namespace)
        return observe_job(found) if found else None
    slurm = ctx.slurm()
    status: JobStatus | None
    if job.get("slurmJobId"):
        job_id = int(job["slurmJobId"])
        try:  # the CLI backend falls back to accounting (sacct) for a purged job
            status = slurm.get(job_id)
        except JobNotFound:
            message = f"SLURM no longer knows job {job_id} (purged after MinJobAge, no accounting)"
            return JobObservation("Lost", "JobLost", message, slurm_job_id=job_id)
    else:  # submitted, but the id was never recorded (operator restart): find it by its key
        key = slurm_key(resource.uid, int(job.get("attempt", 0)))
        status = find_by_key(slurm.list(key=key), key)
    if status is None:
        return None
    failed = status.phase == SlurmPhase.FAILED
    return observe_slurm(status, _error_tail(status) if failed else "")


def _error_tail(status: JobStatus) -> str:
    """The last lines of a failed job's error output, where this operator can read it
    (it shares the jobs' filesystem, as a login node does); else nothing."""
    try:
        logs = read_logs(status, ERROR_TAIL_LINES)
    except OSError:
        return ""
    text = " | ".join(line.strip() for line in (logs.stderr or logs.stdout).splitlines())
    return text[-ERROR_TAIL_CHARS:]


def _run(
    resource: Resource, spec: WorkloadSpec, job: JobObservation | None, uri: str
) -> tuple[Any, Any]:
    if job is None or job.phase not in ("Running", "Succeeded", "Lost"):
        return None, None
    ended = job.phase != "Running"  # a lost job's run may say how it ended
    mlflow = registry.client(uri)
    run_id = resource.status.get("runId") or registry.find_run_id(
        mlflow, run_experiments(resource.kind, spec), run_name(resource.uid)
    )
    if run_id is None:
        return None, None
    is_eval = resource.kind == EVALUATION.kind
    run = registry.observe_run(mlflow, run_id, want_model=not is_eval and ended)
    registered = None
    if not is_eval and ended:
        registered = registry.find_version(mlflow, registered_model_name(resource, spec), run_id)
    return run, registered
