"""Pure reconcilers: spec + observed state + now → a Plan (children, actions, status).

Nothing here talks to Kubernetes, SLURM or MLflow: `handlers.py` parses the spec once
(`parse`), `observe.py` observes the world, `reconcile(...)` plans, `apply.py` executes
the plan's actions and the shared pass writes its status. Every pass rebuilds the
status from what was observed (level-based), so a restarted operator picks up where
the last one stopped.

TrainingRun, Alignment and Evaluation share one state machine:

    Invalid ← spec    Waiting (for the input model) → [run created] → Submitted
    → Running → Succeeded (model registered / results tagged) | Failed
    Suspended ⇄ any non-final phase
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from infinitecontext.crds.models import (
    GROUP,
    KINDS_BY_NAME,
    AlignmentSpec,
    Backend,
    ChildJob,
    EvaluationResults,
    EvaluationSpec,
    EvaluationStatus,
    LengthResult,
    Phase,
    Progress,
    RegisteredModel,
    ResolvedJudge,
    TrainingRunSpec,
    WorkloadSpec,
    WorkloadStatus,
    parse_spec,
)
from infinitecontext.operator import conditions as cond
from infinitecontext.operator.resource import Event, Resource
from infinitecontext.operator.tenancy import FORBIDDEN, ForbiddenSpec, TenancyPolicy, admit
from infinitecontext.operator.workloads.jobs import JobObservation, render_children
from infinitecontext.operator.workloads.recipe import (
    JUDGE_ERRORS_METRIC,
    JUDGE_ITEMS_METRIC,
    JUDGE_METRIC,
    JUDGE_UNPARSABLE_METRIC,
    MODEL_ARTIFACT_PATH,
    Owner,
    Recipe,
    WorkloadCommand,
    accuracy_by_length,
    command,
    judge_endpoint,
    mean_accuracy_metric,
    recipe_for,
    run_name,
    step_count,
)
from infinitecontext.operator.workloads.slurm import slurm_request
from infinitecontext.slurm_bridge.errors import InvalidJobRequest
from infinitecontext.slurm_bridge.models import JobRequest

TAG_PREFIX = "infinitecontext."
RESUBMIT_LOST_JOB = f"{GROUP}/resubmit-lost-job"
"""Annotation: run the work again although its lost SLURM job (this id) may have run."""


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputModel:
    """The resolved input of an Alignment or Evaluation."""

    ready: bool
    model: RegisteredModel | None = None
    reason: str = "WaitingForInput"
    message: str = ""


@dataclass(frozen=True)
class JudgeInput:
    """The resolved judge of an Evaluation whose `spec.judge` names an InferenceService."""

    ready: bool
    endpoint: ResolvedJudge | None = None
    reason: str = "WaitingForInput"
    message: str = ""


@dataclass(frozen=True)
class RunObservation:
    """The MLflow run the job logs into."""

    run_id: str
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    has_model: bool = False


@dataclass(frozen=True)
class Observed:
    job: JobObservation | None = None
    run: RunObservation | None = None
    registered: RegisteredModel | None = None
    """The model version already registered for this resource (idempotency)."""
    input: InputModel | None = None
    judge: JudgeInput | None = None
    """The judge InferenceService of an Evaluation (`spec.judge.inferenceService`)."""
    unavailable: str | None = None
    """SLURM or MLflow could not be reached: why."""
    refused: cond.Refusal | None = None
    """A backend refused what this spec asks for (a SLURM partition, a model name)."""
    tracking_uri: str = ""
    slurm_job_path: str = ""
    """PATH of jobs on SLURM nodes (where `icx` is installed there); operator setting."""


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class ApplyChildren:
    objects: list[dict[str, Any]]


@dataclass(frozen=True)
class SubmitSlurm:
    request: JobRequest
    attempt: int


@dataclass(frozen=True)
class CancelSlurm:
    job_id: int


@dataclass(frozen=True)
class RegisterModel:
    name: str
    source: str
    run_id: str
    tags: dict[str, str]


@dataclass(frozen=True)
class TagModelVersion:
    name: str
    version: str
    tags: dict[str, str]


@dataclass(frozen=True)
class SetModelAlias:
    """Point `alias` of registered model `name` at `version` (an Evaluation that passed)."""

    name: str
    version: str
    alias: str


@dataclass(frozen=True)
class LogRunMetrics:
    """Metrics on an existing run: an Evaluation's results on the evaluated version's run,
    at the Evaluation's generation as the step and its start as the time, so that a
    repeated pass logs nothing new."""

    run_id: str
    metrics: dict[str, float]
    step: int
    timestamp_ms: int


Action = (
    ApplyChildren
    | SubmitSlurm
    | CancelSlurm
    | RegisterModel
    | TagModelVersion
    | SetModelAlias
    | LogRunMetrics
)


@dataclass(frozen=True)
class Plan:
    status: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def needs_another_pass(self) -> bool:
        """After these actions the next pass can make progress at once."""
        return any(isinstance(a, RegisterModel) for a in self.actions)


# ---------------------------------------------------------------- the state machine


class _Builder:
    """Accumulates the next status, actions and events of one pass."""

    def __init__(self, status: WorkloadStatus, now: datetime, generation: int) -> None:
        self.status = status.model_copy(deep=True)
        self.status.observed_generation = generation
        self.previous_phase = status.phase
        self.now = now
        self.generation = generation
        self.actions: list[Action] = []
        self.events: list[Event] = []
        self.recipe: Recipe | None = None
        """The job's recipe, built from the spec once per pass."""

    def condition(self, type_: str, status: cond.Status, reason: str, message: str = "") -> None:
        self.status.conditions = cond.set_condition(
            self.status.conditions, type_, status, reason, message, self.now, self.generation
        )

    def phase(self, phase: Phase, ready: cond.Status, reason: str, message: str = "") -> None:
        self.status.phase = phase
        self.condition(cond.READY, ready, reason, message)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def plan(self) -> Plan:
        if self.status.phase != self.previous_phase:
            ready = cond.find(self.status.conditions, cond.READY)
            message = ready.message if ready and ready.message else str(self.status.phase)
            warning = self.status.phase in (Phase.FAILED, Phase.INVALID)
            self.event(str(self.status.phase), message, warning)
        status = self.status.model_dump(by_alias=True, mode="json", exclude_none=True)
        return Plan(status, self.actions, self.events)


@dataclass(frozen=True)
class InvalidSpec:
    """Why the spec cannot be run (the planner's Invalid phase says so)."""

    message: str
    reason: str = "InvalidSpec"
    """`InvalidSpec`, or `Forbidden` where the admin's policy refuses it."""


def owner_of(resource: Resource) -> Owner:
    return Owner(resource.kind, resource.name, resource.namespace, resource.uid)


def parse(resource: Resource, policy: TenancyPolicy | None = None) -> WorkloadSpec | InvalidSpec:
    """The typed spec, checked as far as our code can and against the admin's policy
    before anything (MLflow included) is reached; parsed once at the top of a pass, and
    handed to the observer, the planner and the applier."""
    try:
        spec: WorkloadSpec = parse_spec(KINDS_BY_NAME[resource.kind], resource.spec)
        check_semantics(spec)
        spec = admit(spec, policy or TenancyPolicy(), resource.namespace)
    except ForbiddenSpec as error:
        return InvalidSpec(str(error), FORBIDDEN)
    except (ValidationError, ValueError) as error:
        return InvalidSpec(_error_text(error))
    return spec


def reconcile(
    resource: Resource, spec: WorkloadSpec | InvalidSpec, observed: Observed, now: datetime
) -> Plan:
    """The next step of a TrainingRun, Alignment or Evaluation."""
    kind = KINDS_BY_NAME[resource.kind]
    status = _status(kind.status, resource.status)
    builder = _Builder(status, now, resource.generation)
    if status.phase in (Phase.SUCCEEDED, Phase.FAILED):
        # Finished work stays finished; only observedGeneration moves. The API server
        # lets a submitted object's spec change only where the result does not depend
        # on it (crds/models.py WORKLOAD_MUTABLE_FIELDS), so the result still holds.
        return builder.plan()
    if isinstance(spec, InvalidSpec):
        builder.phase(Phase.INVALID, "False", spec.reason, spec.message)
        return builder.plan()
    try:  # the recipe is the spec in the trainer's terms; what it refuses is Invalid too
        builder.recipe = recipe_for(owner_of(resource), spec, _judge_of(builder))
    except ValueError as error:
        builder.phase(Phase.INVALID, "False", cond.INVALID_SPEC, _error_text(error))
        return builder.plan()
    if observed.refused is not None:
        return _refused(builder, observed.refused)
    if cond.refused_at(status.conditions, resource.generation):
        return builder.plan()  # refused: the same spec is not tried again
    if observed.unavailable:
        return _unavailable(builder, observed)
    # The input is pinned once a job was submitted with it: a moved alias or a deleted
    # parent must not change which version the results and tags are about.
    if isinstance(spec, AlignmentSpec | EvaluationSpec) and not _input_in_use(builder):
        if observed.input is None or not observed.input.ready:
            return _waiting(builder, observed.input)
        builder.status.input_model = observed.input.model
    if isinstance(spec, EvaluationSpec):
        judge = _judge_of(builder)
        waiting = _resolve_judge(builder, spec, observed)
        if waiting is not None:
            return _waiting(builder, waiting)
        if _judge_of(builder) != judge:  # resolved in this pass: the recipe names it
            builder.recipe = recipe_for(owner_of(resource), spec, _judge_of(builder))
    if spec.suspend:
        return _suspend(builder, resource, spec, observed)
    if cond.is_true(builder.status.conditions, cond.SUSPENDED):
        builder.condition(cond.SUSPENDED, "False", "Resumed", "resumed from the last checkpoint")
        builder.event("Resumed", "resumed from the last checkpoint")
        return _resume(builder, resource, spec, observed)
    return _follow_job(builder, resource, spec, observed)


def _status(model: type[Any], raw: dict[str, Any]) -> WorkloadStatus:
    try:
        parsed: WorkloadStatus = model.model_validate(raw or {})
        return parsed
    except ValidationError:
        fresh: WorkloadStatus = model()
        return fresh


def _error_text(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
    return str(error)


def check_semantics(spec: WorkloadSpec) -> None:
    """Rules CEL cannot express (or that need our own code): raise ValueError."""
    if isinstance(spec, TrainingRunSpec):
        steps = [stage.until_step for stage in spec.curriculum]
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
            raise ValueError(f"spec.curriculum: untilStep must grow from stage to stage: {steps}")
        config = spec.model.config
        seq_len = spec.hyperparameters.seq_len
        if config is not None and seq_len > config.max_position_embeddings:
            raise ValueError(
                f"spec.hyperparameters.seqLen {seq_len} exceeds the model's "
                f"maxPositionEmbeddings {config.max_position_embeddings}"
            )
    if spec.backend == Backend.SLURM:
        from infinitecontext.operator.workloads.slurm import cpus, memory_mb

        if spec.secret_env:
            raise ValueError("spec.secretEnv: not supported on the slurm backend yet")

        memory_mb(spec.resources.memory)
        cpus(spec.resources.cpu)


def _unavailable(builder: _Builder, observed: Observed) -> Plan:
    message = observed.unavailable or ""
    builder.condition(cond.READY, "Unknown", cond.BACKEND_UNAVAILABLE, message)
    return builder.plan()


def _refused(builder: _Builder, refusal: cond.Refusal) -> Plan:
    """Invalid until the spec changes: the refused action is not planned again."""
    builder.phase(Phase.INVALID, "False", refusal.reason, refusal.message[:1000])
    return builder.plan()


def _resolve_judge(
    builder: _Builder, spec: EvaluationSpec, observed: Observed
) -> InputModel | None:
    """Record the judge endpoint the job will use (None) or say what is awaited.

    Resolved once, before the job is submitted: the job carries that URL, so a judge
    InferenceService that stops serving later does not send a running job back to
    Waiting (the job then reports the judge as unreachable).
    """
    status = builder.status
    if spec.judge is None or not isinstance(status, EvaluationStatus):
        return None
    if status.judge is not None and status.job is not None:
        return None
    if spec.judge.url:
        status.judge = ResolvedJudge(url=spec.judge.url, served_model=spec.judge.served_model)
        return None
    found = observed.judge
    if found is None or not found.ready or found.endpoint is None:
        name = spec.judge.inference_service
        return InputModel(
            False,
            reason=found.reason if found else "WaitingForInput",
            message=found.message if found else f"judge InferenceService {name} not observed yet",
        )
    status.judge = found.endpoint
    return None


def _judge_of(builder: _Builder) -> ResolvedJudge | None:
    return builder.status.judge if isinstance(builder.status, EvaluationStatus) else None


def _input_in_use(builder: _Builder) -> bool:
    """A submitted job has its input model (the job carries its URI): what happens to
    the object that produced it later (deleted, retrained) does not stop this work."""
    return builder.status.job is not None and builder.status.input_model is not None


def _waiting(builder: _Builder, found: InputModel | None) -> Plan:
    reason = found.reason if found else "WaitingForInput"
    message = found.message if found else "the input model is not resolved yet"
    builder.phase(Phase.WAITING, "False", reason, message)
    return builder.plan()


def _suspend(builder: _Builder, resource: Resource, spec: WorkloadSpec, observed: Observed) -> Plan:
    job = observed.job
    active = job is not None and job.phase in ("Pending", "Running")
    if active and spec.backend == Backend.KUBERNETES:
        builder.actions.append(
            ApplyChildren(_children(resource, spec, builder, observed, suspend=True))
        )
    if active and spec.backend == Backend.SLURM and job and job.slurm_job_id:
        builder.actions.append(CancelSlurm(job.slurm_job_id))
    builder.condition(cond.SUSPENDED, "True", "Suspended", "spec.suspend is true")
    builder.condition(cond.RUNNING, "False", "Suspended", "")
    builder.phase(Phase.SUSPENDED, "False", "Suspended", "spec.suspend is true")
    return builder.plan()


def _resume(builder: _Builder, resource: Resource, spec: WorkloadSpec, observed: Observed) -> Plan:
    if spec.backend == Backend.SLURM:
        return _submit(builder, resource, spec, observed, attempt=_attempt(builder) + 1)
    return _submit(builder, resource, spec, observed, attempt=_attempt(builder))


def _attempt(builder: _Builder) -> int:
    return builder.status.job.attempt if builder.status.job else 0


def lineage_tags(resource: Resource, parent: RegisteredModel | None) -> dict[str, str]:
    tags = {
        f"{TAG_PREFIX}kind": resource.kind,
        f"{TAG_PREFIX}name": resource.name,
        f"{TAG_PREFIX}namespace": resource.namespace,
        f"{TAG_PREFIX}uid": resource.uid,
    }
    if parent is not None and parent.uri:
        tags[f"{TAG_PREFIX}parent_model"] = parent.uri
    return tags


def _children(
    resource: Resource, spec: WorkloadSpec, builder: _Builder, observed: Observed, suspend: bool
) -> list[dict[str, Any]]:
    return render_children(
        owner_of(resource), spec, _work(resource, spec, builder, observed), suspend
    )


def _work(
    resource: Resource, spec: WorkloadSpec, builder: _Builder, observed: Observed
) -> WorkloadCommand:
    """The job's command, environment and recipe, from the spec and what status has resolved."""
    assert builder.recipe is not None  # built at the start of the pass
    return command(
        owner_of(resource), spec, builder.recipe, observed.tracking_uri, builder.status.input_model
    )


def _submit(
    builder: _Builder, resource: Resource, spec: WorkloadSpec, observed: Observed, attempt: int
) -> Plan:
    if spec.backend == Backend.KUBERNETES:
        children = _children(resource, spec, builder, observed, suspend=False)
        builder.actions.append(ApplyChildren(children))
        builder.status.job = ChildJob(
            backend=Backend.KUBERNETES, name=children[-1]["metadata"]["name"], attempt=attempt
        )
    else:
        work = _work(resource, spec, builder, observed)
        if observed.slurm_job_path:
            work.environment["PATH"] = observed.slurm_job_path
        try:
            request = slurm_request(owner_of(resource), spec, work, attempt)
        except InvalidJobRequest as error:  # a value SLURM could misread: never sent
            message = f"the SLURM job request is invalid: {error}"
            return _refused(builder, cond.Refusal(cond.INVALID_SPEC, message))
        builder.actions.append(SubmitSlurm(request, attempt))
        builder.status.job = ChildJob(backend=Backend.SLURM, attempt=attempt)
    builder.condition(cond.SUBMITTED, "True", "Submitted", f"{spec.backend} job submitted")
    builder.phase(Phase.SUBMITTED, "False", "Submitted", f"{spec.backend} job submitted")
    builder.status.start_time = builder.status.start_time or builder.now
    return builder.plan()


def _follow_job(
    builder: _Builder, resource: Resource, spec: WorkloadSpec, observed: Observed
) -> Plan:
    job = observed.job
    if job is None:
        return _submit(builder, resource, spec, observed, attempt=_attempt(builder))
    _record_job(builder, job)
    if observed.run is not None:
        builder.status.run_id = observed.run.run_id
    if job.phase == "Suspended":  # the Job is still suspended from before: resume it
        return _submit(builder, resource, spec, observed, attempt=_attempt(builder))
    if job.phase == "Lost":
        return _lost(builder, resource, spec, observed, job)
    if job.phase == "Succeeded":
        return _succeeded(builder, resource, spec, observed)
    if job.phase == "Failed":
        return _failed(builder, resource, spec, observed, job)
    if _past_deadline(builder, spec):
        return _deadline(builder, spec, job)
    if job.phase == "Running":
        builder.condition(cond.RUNNING, "True", "Running", job.message)
        builder.status.progress = _progress(observed.run, builder.status.progress, builder.recipe)
        builder.phase(Phase.RUNNING, "False", "Running", job.message or "the job is running")
    else:
        builder.phase(Phase.SUBMITTED, "False", "Submitted", job.message or "the job is pending")
    return builder.plan()


def _lost(
    builder: _Builder,
    resource: Resource,
    spec: WorkloadSpec,
    observed: Observed,
    job: JobObservation,
) -> Plan:
    """The recorded SLURM job is gone without a record of its end (purged during an
    outage longer than MinJobAge, no accounting). Its MLflow run may say how it ended;
    where it does not, submitting again could run the work twice: ask instead."""
    run = observed.run
    if run is not None and run.status == "FINISHED":
        return _succeeded(builder, resource, spec, observed)
    if run is not None and run.status in ("FAILED", "KILLED"):
        message = f"{job.message}; its MLflow run {run.run_id} ended {run.status}"
        return _finish_failed(builder, "JobFailed", message)
    if resource.annotations.get(RESUBMIT_LOST_JOB) == str(job.slurm_job_id):
        message = f"{job.message}; {RESUBMIT_LOST_JOB} asks to run it again"
        builder.event("Resubmitting", message, warning=True)
        return _submit(builder, resource, spec, observed, attempt=_attempt(builder) + 1)
    message = (
        f"{job.message}, and no MLflow run says how it ended: it may have run. To run it "
        f"again, annotate {RESUBMIT_LOST_JOB}={job.slurm_job_id}; to give up, delete this"
    )
    ready = cond.find(builder.status.conditions, cond.READY)
    if ready is None or ready.reason != "JobLost":
        builder.event("JobLost", message, warning=True)
    builder.condition(cond.READY, "Unknown", "JobLost", message)
    return builder.plan()


def _record_job(builder: _Builder, job: JobObservation) -> None:
    previous = builder.status.job or ChildJob(backend=Backend.KUBERNETES)
    backend = Backend.SLURM if job.slurm_job_id is not None else previous.backend
    builder.status.job = previous.model_copy(
        update={
            "backend": backend,
            "name": job.name or previous.name,
            "slurm_job_id": job.slurm_job_id or previous.slurm_job_id,
            "state": job.state or job.phase,
        }
    )


def _progress(
    run: RunObservation | None, previous: Progress | None, recipe: Recipe | None
) -> Progress | None:
    if run is None:
        return previous
    loss = run.metrics.get("loss", run.metrics.get("train_loss"))
    total = step_count(recipe) if recipe is not None else None
    return Progress(step=run.step, loss=loss, total_steps=total)


def _past_deadline(builder: _Builder, spec: WorkloadSpec) -> bool:
    # Kubernetes enforces the Job's own activeDeadlineSeconds; SLURM gets a time limit
    # too, but a job that waited in the queue is measured from submission here.
    if spec.backend != Backend.SLURM or spec.active_deadline_seconds is None:
        return False
    started = builder.status.start_time
    return (
        started is not None
        and (builder.now - started).total_seconds() > spec.active_deadline_seconds
    )


def _deadline(builder: _Builder, spec: WorkloadSpec, job: JobObservation) -> Plan:
    if job.slurm_job_id is not None:
        builder.actions.append(CancelSlurm(job.slurm_job_id))
    message = f"ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}"
    return _finish_failed(builder, "DeadlineExceeded", message)


def _failed(
    builder: _Builder,
    resource: Resource,
    spec: WorkloadSpec,
    observed: Observed,
    job: JobObservation,
) -> Plan:
    attempt = _attempt(builder)
    if job.retryable and attempt < spec.retry_policy.backoff_limit:
        builder.event("Retrying", f"{job.message}; submitting attempt {attempt + 2}", warning=True)
        return _submit(builder, resource, spec, observed, attempt=attempt + 1)
    return _finish_failed(builder, job.reason or "JobFailed", job.message or "the job failed")


def _finish_failed(builder: _Builder, reason: str, message: str) -> Plan:
    builder.condition(cond.RUNNING, "False", reason, "")
    builder.condition(cond.FAILED, "True", reason, message)
    builder.status.completion_time = builder.now
    builder.phase(Phase.FAILED, "False", reason, message)
    return builder.plan()


def _succeeded(
    builder: _Builder, resource: Resource, spec: WorkloadSpec, observed: Observed
) -> Plan:
    builder.condition(cond.RUNNING, "False", "Completed", "")
    run = observed.run
    if run is None:
        message = f"the job finished but logged no MLflow run named {run_name(resource.uid)}"
        return _finish_failed(builder, "NoMlflowRun", message)
    builder.status.progress = _progress(run, builder.status.progress, builder.recipe)
    if isinstance(spec, EvaluationSpec):
        return _evaluated(builder, resource, spec, run)
    return _register(builder, resource, spec, observed, run)


def _register(
    builder: _Builder,
    resource: Resource,
    spec: WorkloadSpec,
    observed: Observed,
    run: RunObservation,
) -> Plan:
    if observed.registered is not None:
        builder.status.model = observed.registered
        message = f"registered {observed.registered.uri}"
        builder.condition(cond.SUCCEEDED, "True", "ModelRegistered", message)
        builder.status.completion_time = builder.status.completion_time or builder.now
        builder.phase(Phase.SUCCEEDED, "True", "ModelRegistered", message)
        return builder.plan()
    if not run.has_model:
        message = f"run {run.run_id} has no '{MODEL_ARTIFACT_PATH}' artifact to register"
        return _finish_failed(builder, "NoModelArtifact", message)
    name = registered_model_name(resource, spec)
    tags = lineage_tags(resource, builder.status.input_model)
    builder.actions.append(
        RegisterModel(name, f"runs:/{run.run_id}/{MODEL_ARTIFACT_PATH}", run.run_id, tags)
    )
    builder.phase(Phase.RUNNING, "False", "RegisteringModel", f"registering {name}")
    return builder.plan()


def registered_model_name(resource: Resource, spec: WorkloadSpec) -> str:
    return spec.mlflow.registered_model_name or f"{resource.namespace}.{resource.name}"


def evaluation_results(spec: EvaluationSpec, metrics: dict[str, float]) -> EvaluationResults:
    """Results and pass/fail from the metrics the evaluation job logged."""
    task = spec.passkey.task
    by_length = accuracy_by_length(task, metrics)
    accuracy = metrics.get(mean_accuracy_metric(task))
    if accuracy is None and by_length:
        accuracy = sum(by_length.values()) / len(by_length)
    judge = metrics.get(JUDGE_METRIC)
    thresholds = spec.thresholds
    passed = accuracy is not None and accuracy >= thresholds.passkey_accuracy
    if thresholds.judge_score is not None:
        passed = passed and judge is not None and judge >= thresholds.judge_score
    return EvaluationResults(
        passkey_accuracy=accuracy,
        per_length=[LengthResult(length=n, accuracy=a) for n, a in sorted(by_length.items())],
        judge_score=judge,
        passed=passed,
    )


def _evaluated(
    builder: _Builder, resource: Resource, spec: EvaluationSpec, run: RunObservation
) -> Plan:
    results = evaluation_results(spec, run.metrics)
    if results.passkey_accuracy is None:
        metric = mean_accuracy_metric(spec.passkey.task)
        return _finish_failed(builder, "NoResults", f"run {run.run_id} logged no {metric}")
    status = builder.status
    if spec.judge is not None and results.judge_score is None:
        return _judge_failed(builder, spec, run, results)
    status.results = results  # type: ignore[attr-defined]
    status.model = status.input_model
    model = status.input_model
    if model and model.name and model.version:
        prefix = f"{TAG_PREFIX}eval.{resource.namespace}.{resource.name}."
        tags = {f"{prefix}passkey_accuracy": f"{results.passkey_accuracy or 0:.4f}"}
        tags[f"{prefix}passed"] = str(results.passed).lower()
        tags[f"{prefix}run_id"] = run.run_id
        if results.judge_score is not None:
            tags[f"{prefix}judge_score"] = f"{results.judge_score:.4f}"
        builder.actions.append(TagModelVersion(model.name, model.version, tags))
        if model.run_id:
            started = status.start_time or builder.now
            metrics = evaluation_metrics(resource, results)
            builder.actions.append(
                LogRunMetrics(model.run_id, metrics, resource.generation, _millis(started))
            )
        if results.passed and spec.alias_on_pass:
            builder.actions.append(SetModelAlias(model.name, model.version, spec.alias_on_pass))
    verdict = "passed" if results.passed else "did not pass"
    message = f"passkey accuracy {results.passkey_accuracy or 0:.3f}"
    if results.judge_score is not None:
        message += f", judge score {results.judge_score:.3f}"
    message += f": {verdict} the thresholds"
    builder.condition(cond.PASSED, "True" if results.passed else "False", "Evaluated", message)
    builder.condition(cond.SUCCEEDED, "True", "Evaluated", message)
    status.completion_time = status.completion_time or builder.now
    builder.phase(Phase.SUCCEEDED, "True", "Evaluated", message)
    return builder.plan()


def evaluation_metrics(resource: Resource, results: EvaluationResults) -> dict[str, float]:
    """The results as metrics of the evaluated version's run, under
    `eval/<namespace>/<name>/` (one section of the MLflow UI per Evaluation)."""
    prefix = f"eval/{resource.namespace}/{resource.name}/"
    metrics = {f"{prefix}passkey_accuracy": results.passkey_accuracy or 0.0}
    for cell in results.per_length:
        metrics[f"{prefix}passkey_accuracy_{cell.length}"] = cell.accuracy
    if results.judge_score is not None:
        metrics[f"{prefix}judge_score"] = results.judge_score
    metrics[f"{prefix}passed"] = 1.0 if results.passed else 0.0
    return metrics


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _judge_failed(
    builder: _Builder, spec: EvaluationSpec, run: RunObservation, results: EvaluationResults
) -> Plan:
    """The grid ran but the judge gave no score: Failed with the judge's reason, the
    passkey results kept in status (not passed), no tags on the model version."""
    metrics = run.metrics
    items = int(metrics.get(JUDGE_ITEMS_METRIC, 0))
    errors = int(metrics.get(JUDGE_ERRORS_METRIC, 0))
    unparsable = int(metrics.get(JUDGE_UNPARSABLE_METRIC, 0))
    judge = _judge_of(builder)
    where = judge.url if judge else "the judge"
    accuracy = f"passkey accuracy {results.passkey_accuracy or 0:.3f}"
    if items == 0:
        reason = "NoJudgeScore"
        message = f"run {run.run_id} logged no {JUDGE_METRIC} ({accuracy})"
    elif errors >= items:
        reason = "JudgeUnavailable"
        message = (
            f"the judge at {where} answered none of {items} requests (unreachable or "
            f"failing); {accuracy}; see eval/judge.json in run {run.run_id}"
        )
    else:
        reason = "JudgeUnparsable"
        message = (
            f"no verdict of the judge at {where} could be parsed ({unparsable} of {items} "
            f"unparsable, {errors} request errors; judge.guided: true constrains the "
            f"format); {accuracy}"
        )
    builder.status.results = results.model_copy(update={"passed": False})  # type: ignore[attr-defined]
    builder.status.model = builder.status.input_model
    builder.condition(cond.PASSED, "False", reason, message)
    return _finish_failed(builder, reason, message)


def judge_from_object(name: str, obj: dict[str, Any] | None) -> JudgeInput:
    """Whether a judge InferenceService serves yet, and where (its `status.url` + /v1;
    the served model is the InferenceService's name)."""
    if obj is None:
        return JudgeInput(False, message=f"judge InferenceService {name} does not exist (yet)")
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == cond.READY), {})
    url = status.get("url")
    if ready.get("status") == "True" and url:
        return JudgeInput(True, judge_endpoint(url, served_model=name))
    detail = ready.get("reason") or status.get("phase") or "Pending"
    return JudgeInput(
        False, message=f"waiting for judge InferenceService {name} to serve ({detail})"
    )


def input_from_object(kind: str, name: str, obj: dict[str, Any] | None) -> InputModel:
    """Whether a referenced TrainingRun/Alignment has produced its model yet."""
    if obj is None:
        return InputModel(False, message=f"{kind} {name} does not exist (yet)")
    status = obj.get("status") or {}
    phase = status.get("phase")
    model = status.get("model") or {}
    if phase == Phase.SUCCEEDED and model.get("uri"):
        return InputModel(True, RegisteredModel.model_validate(model))
    if phase in (Phase.FAILED, Phase.INVALID):
        return InputModel(False, reason="InputFailed", message=f"{kind} {name} is {phase}")
    return InputModel(False, message=f"waiting for {kind} {name} (phase {phase or 'Pending'})")


__all__ = [
    "Action",
    "ApplyChildren",
    "CancelSlurm",
    "InputModel",
    "InvalidSpec",
    "JudgeInput",
    "LogRunMetrics",
    "Observed",
    "Plan",
    "RegisterModel",
    "RunObservation",
    "SetModelAlias",
    "SubmitSlurm",
    "TagModelVersion",
    "evaluation_metrics",
    "evaluation_results",
    "input_from_object",
    "judge_from_object",
    "owner_of",
    "parse",
    "reconcile",
]
