"""Typed spec and status of the four InfiniteContext kinds: the single source of truth.

`generate.py` turns these models into the committed CRD YAML (structural OpenAPI v3),
and the operator parses every object it reconciles with them. Field docs become
`kubectl explain` text; cross-field rules are CEL (`x-kubernetes-validations`), so the
API server rejects an invalid object before the operator ever sees it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from infinitecontext.model.config import MLAConfig
from infinitecontext.trainer.recipe import TaskName

GROUP = "infinitecontext.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "infinitecontext"
# The images of `make images` (docs/images.md), tagged with the package version.
TRAINER_IMAGE = "ghcr.io/infinitecontext/trainer:0.1.0"
SERVER_IMAGE = "ghcr.io/infinitecontext/server:0.1.0"

# The presets of model/config.py (a test checks that the two lists agree).
PresetName = Literal["1b", "small", "tiny"]
Tracker = Literal["mlflow", "wandb"]


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def exactly_one(*fields: str) -> dict[str, Any]:
    terms = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields)
    return cel(f"{terms} == 1", f"set exactly one of: {', '.join(fields)}")


class Spec(BaseModel):
    """Base of every spec/status object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


# ---------------------------------------------------------------- shared building blocks


class Backend(StrEnum):
    KUBERNETES = "kubernetes"
    SLURM = "slurm"


class Toleration(Spec):
    """A Kubernetes toleration (core/v1 Toleration)."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class KubernetesOptions(Spec):
    """Options of the kubernetes backend (Jobs or Deployments)."""

    image: str = TRAINER_IMAGE
    """Container image that has the `icx` command."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = None
    service_account_name: str | None = None
    """ServiceAccount of the pods (the namespace's `default` when unset); others only
    where the operator's admin policy allows them (docs/security.md)."""
    automount_service_account_token: bool = False
    """Mount the ServiceAccount's API token into the pods (off: the work needs no
    Kubernetes API)."""


class ServerKubernetesOptions(KubernetesOptions):
    """Options of the kubernetes backend of an InferenceService (Deployments)."""

    image: str = SERVER_IMAGE
    """Container image that has `icx serve` and vLLM."""


# Partition, account and QoS names as SLURM accepts them (slurm_bridge/models.py).
SlurmName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]


class SlurmOptions(Spec):
    """Options of the slurm backend (batch jobs through the SLURM bridge)."""

    partition: SlurmName | None = None
    account: SlurmName | None = None
    qos: SlurmName | None = None
    time_limit_minutes: Annotated[int, Field(ge=1)] | None = None
    working_directory: Annotated[str, Field(pattern="^/")] = "/tmp"
    """Absolute directory on the SLURM nodes where the job runs and writes its logs."""
    container_image: str | None = None
    """Run inside this container image (SLURM's --container), if the cluster supports it."""


class Resources(Spec):
    """What the work needs: nodes, and per node GPUs, CPU and memory."""

    nodes: Annotated[int, Field(ge=1, le=512)] = 1
    gpus_per_node: Annotated[int, Field(ge=0, le=16)] = 0
    cpu: str = "1"
    """CPU per node, as a Kubernetes quantity (`4`, `500m`)."""
    memory: str = "4Gi"
    """Memory per node, as a Kubernetes quantity (`16Gi`)."""


class SecretKeyRef(Spec):
    """One key of a Secret in the resource's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(min_length=1, max_length=253)]


class SecretEnvVar(Spec):
    """An environment variable of the job's or server's containers, from a Secret."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=253)]
    secret_key_ref: SecretKeyRef


class Checkpoint(Spec):
    """Where checkpoints go: a PersistentVolumeClaim on Kubernetes, a path on SLURM."""

    path: Annotated[str, Field(pattern="^/")] | None = None
    """Directory inside the job where checkpoints are written and resumed from; default
    `/checkpoints/<the resource's uid>`, so that no two runs (a re-created resource of
    the same name included) ever share one."""
    persistent_volume_claim: str | None = None
    """Claim mounted at `path` (kubernetes backend), or at `/checkpoints` when `path` is
    unset; an emptyDir when unset."""


class MlflowOptions(Spec):
    """MLflow experiment and model registry names."""

    tracking_uri: str | None = None
    """MLflow tracking server; the operator's `MLFLOW_TRACKING_URI` when unset."""
    experiment: str = "infinitecontext"
    registered_model_name: str | None = None
    """Registered model that receives the output as a new version."""


class RetryPolicy(Spec):
    """How often infrastructure failures are retried; errors in our code fail at once."""

    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 3


class ModelRegistryRef(Spec):
    """A version of a registered MLflow model, by number or by alias."""

    name: str
    version: str | None = None
    alias: str | None = None


class ModelRef(Spec):
    """The model to use: the output of a TrainingRun or Alignment, or an MLflow version."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [exactly_one("trainingRun", "alignment", "mlflow")]
        }
    )
    training_run: str | None = None
    """Name of a TrainingRun in the same namespace; its registered version is used."""
    alignment: str | None = None
    """Name of an Alignment in the same namespace; its registered version is used."""
    mlflow: ModelRegistryRef | None = None


_BACKEND_RULES: list[Any] = [
    cel(
        "self.backend == 'slurm' || !has(self.slurm)",
        "slurm options need backend: slurm",
        ".slurm",
    ),
    cel(
        "self.backend == 'kubernetes' || !has(self.kubernetes)",
        "kubernetes options need backend: kubernetes",
        ".kubernetes",
    ),
    cel(
        "self.backend == 'kubernetes' || size(self.secretEnv) == 0",
        "secretEnv needs backend: kubernetes (the slurm backend has no secret channel yet)",
        ".secretEnv",
    ),
]


class WorkloadSpec(Spec):
    """Fields shared by every kind that runs a job."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _BACKEND_RULES})
    backend: Backend = Backend.KUBERNETES
    kubernetes: KubernetesOptions | None = None
    slurm: SlurmOptions | None = None
    resources: Resources = Field(default_factory=Resources)
    mlflow: MlflowOptions = Field(default_factory=MlflowOptions)
    suspend: bool = False
    """Stop the work (the job is deleted or cancelled); clearing it resumes from the last
    checkpoint."""
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Fail the work when it has run longer than this."""
    secret_env: Annotated[list[SecretEnvVar], Field(max_length=64)] = Field(default_factory=list)
    """Credentials for the containers (an authenticated MLflow, `WANDB_API_KEY`), each
    from a Secret of the namespace, which the kubelet reads: they appear in no spec,
    status or log. Kubernetes backend only, so far."""


# ---------------------------------------------------------------- TrainingRun


class ModelArchitecture(Spec):
    """The architecture: a named preset, or a full MLA config (transformers' field names)."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [exactly_one("preset", "config")]}
    )
    preset: PresetName | None = None
    config: MLAConfig | None = None


class SyntheticData(Spec):
    """Parameters of the synthetic long-context task generator (needles in filler)."""

    tasks: Annotated[list[TaskName], Field(min_length=1)] = Field(
        default_factory=lambda: list[TaskName](["passkey"])
    )
    seed: int = 0
    digits: Annotated[int, Field(ge=1, le=12)] = 5
    num_needles: Annotated[int, Field(ge=1)] = 4
    min_length_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Sample lengths are uniform in [fraction·seqLen, seqLen] tokens."""
    tokenizer_sentences: Annotated[int, Field(ge=100)] = 30000
    """Filler sentences the byte-level BPE tokenizer is trained on."""


DATA_URI_PREFIXES = ("/", "file:///", "runs:/", "mlflow-artifacts:/")


class TrainingData(Spec):
    """Training data: the synthetic task generator, or a dataset URI."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                exactly_one("synthetic", "uri"),
                cel(
                    "!has(self.uri) || "
                    + " || ".join(f"self.uri.startsWith('{p}')" for p in DATA_URI_PREFIXES),
                    "data.uri must be an absolute path, or a file:///…, runs:/… or "
                    "mlflow-artifacts:/… URI of a JSONL file",
                    ".uri",
                ),
            ]
        }
    )
    synthetic: SyntheticData | None = None
    uri: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """A JSONL dataset, one record a line: `{"text": …}` or `{"prompt": …, "completion":
    …}`. An absolute path in the job (e.g. on the checkpoint volume), `file:///path`, or an
    MLflow artifact (`runs:/<run id>/<path>`, `mlflow-artifacts:/…`) the job downloads.
    Records are shuffled per epoch with `hyperparameters.seed`; each fills one row of
    `seqLen` tokens (longer ones are cut, shorter ones padded)."""


class Hyperparameters(Spec):
    steps: Annotated[int, Field(ge=1)] = 100
    tokens_per_step: Annotated[int, Field(ge=1)] = 65536
    """Global tokens per optimizer step (batch size = tokensPerStep / seqLen)."""
    micro_batch_tokens: Annotated[int, Field(ge=1)] = 16384
    """Tokens per forward pass and rank; gradient accumulation makes up the rest."""
    seq_len: Annotated[int, Field(ge=16)] = 1024
    """Target context length, used from the last curriculum stage on."""
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-3
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    warmup_steps: Annotated[int, Field(ge=0)] = 10
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    grad_clip: Annotated[float, Field(gt=0)] = 1.0
    precision: Literal["bf16", "fp32"] = "bf16"
    seed: int = 0
    log_every: Annotated[int, Field(ge=1)] = 10


class LengthStage(Spec):
    """One stage of the context-length curriculum: seqLen until step untilStep."""

    seq_len: Annotated[int, Field(ge=16)]
    until_step: Annotated[int, Field(ge=1)]


class TrainingCheckpoint(Checkpoint):
    every_steps: Annotated[int, Field(ge=1)] = 100
    keep: Annotated[int, Field(ge=1)] = 2
    """Complete checkpoints kept (at least 2, so a corrupt last one has a fallback)."""


class TrainingRunSpec(WorkloadSpec):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *_BACKEND_RULES,
                cel(
                    "self.hyperparameters.warmupSteps < self.hyperparameters.steps",
                    "hyperparameters.warmupSteps must be smaller than hyperparameters.steps",
                    ".hyperparameters.warmupSteps",
                ),
                cel(
                    "self.curriculum.all(s, s.untilStep <= self.hyperparameters.steps)",
                    "curriculum stages must end by hyperparameters.steps",
                    ".curriculum",
                ),
            ]
        }
    )
    model: ModelArchitecture
    data: TrainingData = Field(default_factory=lambda: TrainingData(synthetic=SyntheticData()))
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    curriculum: Annotated[list[LengthStage], Field(max_length=16)] = Field(default_factory=list)
    """Stages run in order; untilStep must grow from stage to stage."""
    checkpoint: TrainingCheckpoint = Field(default_factory=TrainingCheckpoint)
    tracking: Annotated[list[Tracker], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: list[Tracker](["mlflow"])
    )
    """Where the trainer logs: MLflow, and Weights & Biases too (offline without a
    WANDB_API_KEY in the job's environment; `wandb sync` uploads the run later)."""


# ---------------------------------------------------------------- Alignment


class DpoParameters(Spec):
    beta: Annotated[float, Field(gt=0)] = 0.1
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-5
    steps: Annotated[int, Field(ge=1)] = 50
    batch_size: Annotated[int, Field(ge=1)] = 4
    grad_accum: Annotated[int, Field(ge=1)] = 1
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    bf16: bool = False
    seed: int = 0


class PreferenceData(Spec):
    """Preference pairs generated from the synthetic tasks: the chosen answer is the
    true needle, the rejected one another number from the haystack or the model's own
    wrong answer."""

    pairs: Annotated[int, Field(ge=1)] = 256
    length: Annotated[int, Field(ge=16)] = 1024
    """Prompt length in tokens."""
    rejected: Literal["haystack", "model"] = "haystack"
    synthetic: SyntheticData = Field(default_factory=SyntheticData)


class AlignmentSpec(WorkloadSpec):
    base_model: ModelRef
    dpo: DpoParameters = Field(default_factory=DpoParameters)
    preference_data: PreferenceData = Field(default_factory=PreferenceData)
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)


# ---------------------------------------------------------------- Evaluation


class PasskeyGrid(Spec):
    task: TaskName = "passkey"
    lengths: Annotated[list[Annotated[int, Field(ge=16)]], Field(min_length=1, max_length=32)] = (
        Field(default_factory=lambda: [512, 1024, 2048])
    )
    """Context lengths in tokens."""
    depths: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1, max_length=32)
    ] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """Relative positions of the needle in the context (0: start, 1: end)."""
    samples: Annotated[int, Field(ge=1, le=10000)] = 8
    """Samples per (length, depth) cell."""
    seed: int = 1234
    yarn_factor: Annotated[float, Field(ge=1)] = 1.0


class Judge(Spec):
    """An LLM judge that grades the evaluated model's passkey answers after the grid
    (Prometheus-style absolute grading, 1–5 per answer, against the true needle as the
    reference answer); the mean, normalised to 0–1, is `results.judgeScore`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                exactly_one("inferenceService", "url"),
                cel(
                    "!has(self.url) || self.url.startsWith('http://') || "
                    "self.url.startsWith('https://')",
                    "judge.url must be an http:// or https:// URL",
                    ".url",
                ),
            ]
        }
    )
    inference_service: str | None = None
    """InferenceService in the same namespace serving the judge model: its `status.url`
    (once Ready) is the endpoint and its name the served model."""
    url: Annotated[str, Field(max_length=2048)] | None = None
    """An OpenAI-compatible base URL (`http://host:8000/v1`)."""
    served_model: str | None = None
    """The model name at `url`; default: the first model the endpoint lists."""
    rubric: Annotated[str, Field(max_length=8192)] | None = None
    """The score rubric (scores 1–5); default: a retrieval rubric (5: exactly the
    right number … 1: no number or an invented one)."""
    api: Literal["completions", "chat"] = "completions"
    """`completions` (system and user text in one prompt) or `chat`."""
    guided: bool = False
    """Constrain the judge's output to `feedback [RESULT] n` (vLLM structured outputs);
    makes a small judge's verdicts parsable."""
    max_items: Annotated[int, Field(ge=1, le=1000)] = 16
    """Answers graded, spread evenly over the grid."""


class Thresholds(Spec):
    passkey_accuracy: Annotated[float, Field(ge=0, le=1)] = 0.9
    """Minimum mean accuracy over the grid."""
    judge_score: Annotated[float, Field(ge=0, le=1)] | None = None
    """Minimum judge score: the mean verdict (1–5) as (mean − 1) / 4."""


class EvaluationSpec(WorkloadSpec):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *_BACKEND_RULES,
                cel(
                    "!has(self.thresholds.judgeScore) || has(self.judge)",
                    "thresholds.judgeScore needs a judge",
                    ".thresholds.judgeScore",
                ),
            ]
        }
    )
    model: ModelRef
    passkey: PasskeyGrid = Field(default_factory=PasskeyGrid)
    judge: Judge | None = None
    thresholds: Thresholds = Field(default_factory=Thresholds)
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)
    """Scratch space for the downloaded model and the results."""


# ---------------------------------------------------------------- InferenceService


class Autoscaling(Spec):
    """Autoscaling of replicas through the scale subresource (HPA, or KEDA if installed)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "minReplicas must not exceed maxReplicas",
                )
            ]
        }
    )
    enabled: bool = False
    engine: Literal["auto", "hpa", "keda"] = "auto"
    """`auto`: KEDA when its CRDs are installed, else an HPA."""
    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 4
    metric: Literal[
        "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"
    ] = "vllm:num_requests_waiting"
    target: Annotated[float, Field(gt=0)] = 5.0
    """Target per replica: waiting requests, or KV-cache usage in [0, 1]."""
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0)] = 300


class RolloutGate(Spec):
    """An Evaluation that must have passed for the new model version before promotion."""

    evaluation: str
    thresholds: Thresholds | None = None
    """Stricter thresholds than the Evaluation's own, if set."""


class Rollout(Spec):
    strategy: Literal["RollingUpdate", "Canary"] = "RollingUpdate"
    canary_percent: Annotated[int, Field(ge=1, le=100)] = 10
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(default_factory=lambda: [10, 50, 100])
    """Traffic percentages the canary is promoted through."""
    step_interval_seconds: Annotated[int, Field(ge=0)] = 60
    gate: RolloutGate | None = None
    progress_deadline_seconds: Annotated[int, Field(ge=1)] = 600
    gateway: str | None = None
    """Gateway (`name` or `namespace/name`) of an HTTPRoute that splits a canary's traffic
    by weight when the Gateway API is installed; else the split is by replicas."""


class ServerOptions(Spec):
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    api_key: SecretKeyRef | None = None
    """The Secret key that holds the API key: clients then send `Authorization: Bearer
    <key>` to `/v1/*` (vLLM's `VLLM_API_KEY`; `/health`, `/ready` and `/metrics` stay
    open). Kubernetes backend only, so far. The admin's policy may require one."""
    max_model_len: Annotated[int, Field(ge=16)] | None = None
    extra_args: list[str] = Field(default_factory=list)
    termination_grace_period_seconds: Annotated[int, Field(ge=0)] = 120


class InferenceServiceSpec(WorkloadSpec):
    kubernetes: ServerKubernetesOptions | None = None
    model: ModelRef
    replicas: Annotated[int, Field(ge=0)] = 1
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    rollout: Rollout = Field(default_factory=Rollout)
    server: ServerOptions = Field(default_factory=ServerOptions)


# ---------------------------------------------------------------- status


class Phase(StrEnum):
    PENDING = "Pending"
    WAITING = "Waiting"
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    INVALID = "Invalid"
    # InferenceService
    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    DEGRADED = "Degraded"


class Condition(Spec):
    """A status condition (metav1.Condition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class ChildJob(Spec):
    """The job that does the work."""

    backend: Backend
    name: str | None = None
    """Kubernetes Job name."""
    slurm_job_id: int | None = None
    state: str | None = None
    """Backend state (Job condition or SLURM state)."""
    attempt: int = 0
    """Submissions so far (a resumed run submits again)."""


class Progress(Spec):
    step: int | None = None
    total_steps: int | None = None
    """The recipe's step count (TrainingRun, Alignment)."""
    loss: float | None = None


class RegisteredModel(Spec):
    """An MLflow model version."""

    run_id: str | None = None
    name: str | None = None
    version: str | None = None
    uri: str | None = None
    """`models:/name/version`."""


class LengthResult(Spec):
    length: int
    accuracy: float


class EvaluationResults(Spec):
    passkey_accuracy: float | None = None
    per_length: list[LengthResult] = Field(default_factory=list)
    judge_score: float | None = None
    passed: bool | None = None


class ServedTemplate(Spec):
    """What one InferenceService revision serves, kept so that it can be rolled back to."""

    model_uri: str
    """The resolved model version (`models:/name/version`)."""
    resources: Resources = Field(default_factory=Resources)
    kubernetes: ServerKubernetesOptions | None = None
    slurm: SlurmOptions | None = None
    server: ServerOptions = Field(default_factory=ServerOptions)
    secret_env: list[SecretEnvVar] | None = None
    """None when the spec has none (so that older revisions' hashes stay the same)."""


class Revision(Spec):
    revision: int
    model_version: str
    started: datetime
    outcome: Literal["Progressing", "Stable", "RolledBack", "Superseded"]
    reason: str | None = None
    """Why it ended as it did (a rollback's cause)."""
    message: str | None = None
    template_hash: str | None = None
    template: ServedTemplate | None = None


class WorkloadStatus(Spec):
    observed_generation: int | None = None
    phase: Phase = Phase.PENDING
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    run_id: str | None = None
    """The MLflow run the job logs into (created by the operator before submitting)."""
    job: ChildJob | None = None
    progress: Progress | None = None
    input_model: RegisteredModel | None = None
    """The resolved input model (Alignment, Evaluation)."""
    model: RegisteredModel | None = None
    """The registered output (TrainingRun, Alignment) or the evaluated model."""
    start_time: datetime | None = None
    completion_time: datetime | None = None


class TrainingRunStatus(WorkloadStatus):
    pass


class AlignmentStatus(WorkloadStatus):
    pass


class ResolvedJudge(Spec):
    """The judge endpoint the evaluation job was given (resolved before submission)."""

    url: str
    served_model: str | None = None


class EvaluationStatus(WorkloadStatus):
    results: EvaluationResults | None = None
    judge: ResolvedJudge | None = None


class InferenceServiceStatus(Spec):
    observed_generation: int | None = None
    phase: Phase = Phase.PENDING
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    url: str | None = None
    replicas: int = 0
    ready_replicas: int = 0
    selector: str | None = None
    """Label selector of the replicas (the scale subresource's labelSelectorPath)."""
    revisions: list[Revision] = Field(default_factory=list)
    stable_revision: int | None = None
    canary_revision: int | None = None
    latest_rolled_out_model: str | None = None
    previous_rolled_out_model: str | None = None
    canary_percent: int | None = None
    """Share of the replicas the canary revision runs at its current step."""
    step_started: datetime | None = None
    """When the current rollout step (a canary step, a rolling update) began."""


# ---------------------------------------------------------------- the kinds


class PrinterColumn(BaseModel):
    name: str
    type: str
    json_path: str
    priority: int = 0


_READY = PrinterColumn(
    name="Ready", type="string", json_path='.status.conditions[?(@.type=="Ready")].status'
)
_PHASE = PrinterColumn(name="Phase", type="string", json_path=".status.phase")
_AGE = PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp")
_BACKEND = PrinterColumn(name="Backend", type="string", json_path=".spec.backend", priority=1)
_OUTPUT = PrinterColumn(name="Model", type="string", json_path=".status.model.uri")


class Kind(BaseModel):
    """A custom resource kind: names, printer columns, spec and status models."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    kind: str
    plural: str
    short_names: list[str]
    spec: type[Spec]
    status: type[Spec]
    columns: list[PrinterColumn]
    scale: bool = False
    description: str = ""

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


TRAINING_RUN = Kind(
    kind="TrainingRun",
    plural="trainingruns",
    short_names=["icxtr"],
    spec=TrainingRunSpec,
    status=TrainingRunStatus,
    columns=[
        _PHASE,
        _READY,
        _OUTPUT,
        PrinterColumn(name="Step", type="integer", json_path=".status.progress.step"),
        _BACKEND,
        _AGE,
    ],
    description="Trains an MLA model and registers it in MLflow.",
)
ALIGNMENT = Kind(
    kind="Alignment",
    plural="alignments",
    short_names=["icxal"],
    spec=AlignmentSpec,
    status=AlignmentStatus,
    columns=[_PHASE, _READY, _OUTPUT, _BACKEND, _AGE],
    description="Aligns a model with DPO and registers the result as a new model version.",
)
EVALUATION = Kind(
    kind="Evaluation",
    plural="evaluations",
    short_names=["icxev"],
    spec=EvaluationSpec,
    status=EvaluationStatus,
    columns=[
        _PHASE,
        _READY,
        PrinterColumn(name="Model", type="string", json_path=".status.inputModel.uri"),
        PrinterColumn(name="Accuracy", type="number", json_path=".status.results.passkeyAccuracy"),
        PrinterColumn(name="Passed", type="boolean", json_path=".status.results.passed"),
        _AGE,
    ],
    description="Evaluates a model on a passkey grid (and a judge) and tags its version.",
)
INFERENCE_SERVICE = Kind(
    kind="InferenceService",
    plural="inferenceservices",
    short_names=["icxsvc"],
    spec=InferenceServiceSpec,
    status=InferenceServiceStatus,
    columns=[
        _PHASE,
        _READY,
        PrinterColumn(name="Model", type="string", json_path=".status.latestRolledOutModel"),
        PrinterColumn(name="URL", type="string", json_path=".status.url"),
        PrinterColumn(name="Replicas", type="integer", json_path=".status.readyReplicas"),
        _AGE,
    ],
    scale=True,
    description="Serves a registered model with vLLM, with canary rollouts and rollback.",
)

KINDS: tuple[Kind, ...] = (TRAINING_RUN, ALIGNMENT, EVALUATION, INFERENCE_SERVICE)
KINDS_BY_NAME: dict[str, Kind] = {k.kind: k for k in KINDS}


def parse_spec(kind: Kind, spec: dict[str, Any]) -> Any:
    """The typed spec of an object (raises pydantic.ValidationError)."""
    return kind.spec.model_validate(spec)
