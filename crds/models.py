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
    """Taint key the toleration matches; empty with operator `Exists` matches every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """`Exists` (any value) or `Equal` (the taint's value equals `value`); Kubernetes takes
    `Equal` when unset."""
    value: str | None = None
    """Taint value matched by operator `Equal`; empty with `Exists`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect matched (`NoSchedule`, `PreferNoSchedule`, `NoExecute`); every effect
    when unset."""
    toleration_seconds: int | None = None
    """With effect `NoExecute`: seconds the pod stays on a node after the taint appears;
    forever when unset."""


class KubernetesOptions(Spec):
    """Options of the kubernetes backend (Jobs or Deployments)."""

    image: str = TRAINER_IMAGE
    """Container image that has the `icx` command."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls `image`: `Always`, `IfNotPresent` or `Never`."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pods must match (the pod's nodeSelector), e.g. a GPU pool's label."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Node taints the pods tolerate, e.g. the `nvidia.com/gpu` taint of a GPU pool."""
    priority_class_name: str | None = None
    """PriorityClass of the pods; the cluster's default priority when unset."""
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
# Text that reaches a SLURM batch script or a path: no control character (newline …).
PrintableText = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]+$")]
AbsolutePath = Annotated[str, Field(pattern=r"^/[^\x00-\x1f\x7f]*$")]
# CPU as a positive Kubernetes quantity: whole or decimal CPUs (`2`, `0.5`) or millicores.
CpuQuantity = Annotated[str, Field(pattern=r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")]
# Memory as a Kubernetes quantity with a binary or decimal suffix (`16Gi`, `512M`).
MemoryQuantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?([KMGTP]i?)?$")]
# A registered MLflow model name: MLflow refuses `/` and `:`, and a quote would end the
# operator's search filter (`name = '…'`).
MlflowModelName = Annotated[str, Field(pattern=r"^[^/:'\x00-\x1f\x7f]+$", max_length=256)]
MAX_STEPS = 10_000_000
"""More optimizer steps than any run this operator is meant for (a typo guard)."""


class SlurmOptions(Spec):
    """Options of the slurm backend (batch jobs through the SLURM bridge)."""

    partition: SlurmName | None = None
    """SLURM partition (`--partition`); the cluster's default partition when unset."""
    account: SlurmName | None = None
    """SLURM account charged (`--account`); the submitting user's default account when
    unset."""
    qos: SlurmName | None = None
    """SLURM quality of service (`--qos`); the account's default when unset."""
    time_limit_minutes: Annotated[int, Field(ge=1)] | None = None
    """Wall-clock limit of the batch job in minutes (`--time`); when unset,
    `activeDeadlineSeconds` rounded up to minutes, else the partition's limit."""
    working_directory: AbsolutePath = "/tmp"
    """Absolute directory on the SLURM nodes where the job runs and writes its logs."""
    container_image: PrintableText | None = None
    """Run inside this container image (SLURM's --container), if the cluster supports it."""


class Resources(Spec):
    """What the work needs: nodes, and per node GPUs, CPU and memory."""

    nodes: Annotated[int, Field(ge=1, le=512)] = 1
    """Nodes the work spans. A job on several nodes trains as one distributed process group
    (an Indexed Job on Kubernetes, one allocation on SLURM)."""
    gpus_per_node: Annotated[int, Field(ge=0, le=16)] = 0
    """GPUs per node (`nvidia.com/gpu` on Kubernetes, `--gpus-per-node` on SLURM); 0 runs on
    CPU."""
    cpu: CpuQuantity = "1"
    """CPU per node, as a Kubernetes quantity (`4`, `500m`)."""
    memory: MemoryQuantity = "4Gi"
    """Memory per node, as a Kubernetes quantity (`16Gi`)."""


class SecretKeyRef(Spec):
    """One key of a Secret in the resource's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=253)]
    """Key within the Secret's data whose value is used."""


class SecretEnvVar(Spec):
    """An environment variable of the job's or server's containers, from a Secret."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=253)]
    """Name of the environment variable (e.g. `WANDB_API_KEY`)."""
    secret_key_ref: SecretKeyRef
    """The Secret key that holds its value."""


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
    """MLflow experiment the job's run is logged in (created when missing)."""
    registered_model_name: MlflowModelName | None = None
    """Registered model that receives the output as a new version."""


class RetryPolicy(Spec):
    """How often infrastructure failures are retried; errors in our code fail at once."""

    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """Retries before the work is Failed: the Job's backoffLimit on Kubernetes;
    resubmissions after a node failure or preemption on SLURM."""


# A model version alias as MLflow accepts it: `latest` and `v<n>` are reserved.
MlflowAlias = Annotated[
    str,
    Field(
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]*$",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!self.matches('^(?i)(latest|v[0-9]+)$')",
                    "an MLflow alias cannot be `latest` or `v<number>` (MLflow reserves them)",
                )
            ]
        },
    ),
]


class ModelRegistryRef(Spec):
    """A version of a registered MLflow model, by number or by alias."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.version) && has(self.alias))",
                    "set at most one of: version, alias",
                )
            ]
        }
    )
    name: MlflowModelName
    """Registered model name in the MLflow model registry."""
    version: str | None = None
    """Version number (`"3"`). When neither `version` nor `alias` is set, the latest version
    is used."""
    alias: MlflowAlias | None = None
    """Alias of the version (e.g. `champion`, which a passing Evaluation sets). An
    InferenceService resolves it on every poll, so moving the alias rolls out a new
    revision; an Alignment or Evaluation resolves it until its job is submitted and then
    keeps that version."""


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
    """A version of a registered MLflow model, by number or by alias."""


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


WORKLOAD_MUTABLE_FIELDS = ("suspend", "retry_policy", "active_deadline_seconds")
"""The spec fields of a TrainingRun, Alignment or Evaluation that may change once its
job is submitted; every other field is the work itself, as a Kubernetes Job's template
is."""


def immutable_once_submitted(spec: type[BaseModel], mutable: tuple[str, ...]) -> dict[str, Any]:
    """A CEL rule on the whole object: once `status.job` is recorded, every spec field but
    `mutable` keeps its value (present or absent alike)."""
    terms = []
    for name, field in spec.model_fields.items():
        if name in mutable:
            continue
        wire = field.alias or to_camel(name)
        same = f"self.spec.{wire} == oldSelf.spec.{wire}"
        if field.is_required() or field.default is not None or field.default_factory:
            terms.append(same)  # always there (the API server fills in defaults)
        else:
            present = f"has(self.spec.{wire})"
            terms.append(
                f"({present} ? has(oldSelf.spec.{wire}) && {same} : !has(oldSelf.spec.{wire}))"
            )
    kind = spec.__name__.removesuffix("Spec")
    allowed = ", ".join(to_camel(name) for name in mutable)
    return cel(
        f"!has(oldSelf.status) || !has(oldSelf.status.job) || ({' && '.join(terms)})",
        f"the spec of a submitted {kind} cannot change except {allowed}: "
        f"create a new {kind} to run different work",
    )


class WorkloadSpec(Spec):
    """Fields shared by every kind that runs a job."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _BACKEND_RULES})
    backend: Backend = Backend.KUBERNETES
    """Where the work runs: `kubernetes` (Jobs or Deployments in this namespace) or `slurm`
    (batch jobs through the operator's SLURM bridge)."""
    kubernetes: KubernetesOptions | None = None
    slurm: SlurmOptions | None = None
    resources: Resources = Field(default_factory=Resources)
    mlflow: MlflowOptions = Field(default_factory=MlflowOptions)
    suspend: bool = False
    """Stop the work (the job is deleted or cancelled); clearing it resumes from the last
    checkpoint."""
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Seconds the job may run before the work is Failed (the Job's activeDeadlineSeconds;
    on SLURM also the time limit when `slurm.timeLimitMinutes` is unset); no limit when
    unset. An InferenceService ignores it."""
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
    """A named size (model/config.py): `tiny` (CI, a CPU forward pass in milliseconds),
    `small`, or `1b`."""
    config: MLAConfig | None = None
    """A full MLA architecture: transformers' DeepseekV3Config field names in camelCase;
    fields left out take the defaults below."""


class SyntheticData(Spec):
    """Parameters of the synthetic long-context task generator (needles in filler)."""

    tasks: Annotated[list[TaskName], Field(min_length=1)] = Field(
        default_factory=lambda: list[TaskName](["passkey"])
    )
    """Tasks mixed into the data, after RULER's needle-in-a-haystack tasks: `passkey` (one
    number hidden in filler text), `multikey` (several keyed needles, one asked),
    `multivalue` (several values of one key, all asked), `multiquery` (several keys, two
    asked at once)."""
    seed: int = 0
    """Seed of the generated stream: the same seed gives the same samples."""
    digits: Annotated[int, Field(ge=1, le=12)] = 5
    """Digits of each hidden number."""
    num_needles: Annotated[int, Field(ge=1)] = 4
    """Needles per sample: keys of `multikey`, values of `multivalue` (`multiquery` uses at
    least 2)."""
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
    """Optimisation of a TrainingRun: AdamW with linear warmup, then cosine decay to
    minLrRatio · learningRate at the last step."""

    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 100
    """Optimizer steps of the run."""
    tokens_per_step: Annotated[int, Field(ge=1)] = 65536
    """Global tokens per optimizer step (batch size = tokensPerStep / seqLen)."""
    micro_batch_tokens: Annotated[int, Field(ge=1)] = 16384
    """Tokens per forward pass and rank; gradient accumulation makes up the rest."""
    seq_len: Annotated[int, Field(ge=16)] = 1024
    """Target context length, used from the last curriculum stage on."""
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-3
    """Peak learning rate, reached at the end of warmup."""
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Learning rate at the last step, as a fraction of `learningRate`."""
    warmup_steps: Annotated[int, Field(ge=0)] = 10
    """Steps of linear warmup from 0 to `learningRate`; must be smaller than `steps`."""
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    """AdamW weight decay of the matrices (norms and other 1-D parameters get none)."""
    grad_clip: Annotated[float, Field(gt=0)] = 1.0
    """Maximum global L2 norm of the gradients; larger ones are scaled down to it."""
    precision: Literal["bf16", "fp32"] = "bf16"
    """`bf16`: parameters cast to bf16 for compute, gradients reduced in fp32; `fp32`: full
    precision throughout."""
    seed: int = 0
    """Seed of the weight initialisation, and of the record shuffle of a `data.uri` dataset."""
    log_every: Annotated[int, Field(ge=1)] = 10
    """Steps between progress log lines (loss, tokens/s, MFU, ETA) and flushes of the step
    metrics to the trackers."""


class LengthStage(Spec):
    """One stage of the context-length curriculum: seqLen until step untilStep."""

    seq_len: Annotated[int, Field(ge=16)]
    """Sequence length in tokens during this stage."""
    until_step: Annotated[int, Field(ge=1)]
    """The stage runs until this optimizer step (exclusive), starting where the previous
    stage ended."""


class TrainingCheckpoint(Checkpoint):
    """Where and how often a TrainingRun checkpoints: a resumed run (after `suspend` or a
    retry) continues from the last complete checkpoint."""

    every_steps: Annotated[int, Field(ge=1)] = 100
    """Optimizer steps between two checkpoints."""
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
    """Direct Preference Optimization (TRL's DPOTrainer) of the base model against a frozen
    copy of itself as the reference."""

    beta: Annotated[float, Field(gt=0)] = 0.1
    """DPO's β: the strength of the implicit KL penalty toward the reference model (larger
    stays closer to the base model)."""
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    """`sigmoid` (the DPO paper's loss), `ipo` (IPO, arXiv 2310.12036) or `hinge` (SLiC's
    hinge loss)."""
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-5
    """Peak learning rate, reached after `warmupSteps`."""
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = 50
    """Optimizer steps."""
    batch_size: Annotated[int, Field(ge=1)] = 4
    """Preference pairs per forward pass."""
    grad_accum: Annotated[int, Field(ge=1)] = 1
    """Forward passes accumulated per optimizer step (pairs per step = batchSize ×
    gradAccum)."""
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    """Steps of linear learning-rate warmup."""
    bf16: bool = False
    """Train in bf16 mixed precision on a GPU (ignored on CPU)."""
    seed: int = 0
    """Seed of the pair order and the trainer."""


class PreferenceData(Spec):
    """Preference pairs generated from the synthetic tasks: the chosen answer is the
    true needle, the rejected one another number from the haystack or the model's own
    wrong answer."""

    pairs: Annotated[int, Field(ge=1)] = 256
    """Preference pairs generated."""
    length: Annotated[int, Field(ge=16)] = 1024
    """Prompt length in tokens."""
    rejected: Literal["haystack", "model"] = "haystack"
    """The rejected answer: `haystack` (another number from the prompt) or `model` (the base
    model's own wrong answer; a haystack number where the model is right)."""
    synthetic: SyntheticData = Field(default_factory=SyntheticData)


class AlignmentSpec(WorkloadSpec):
    base_model: ModelRef
    dpo: DpoParameters = Field(default_factory=DpoParameters)
    preference_data: PreferenceData = Field(default_factory=PreferenceData)
    checkpoint: Checkpoint = Field(default_factory=Checkpoint)


# ---------------------------------------------------------------- Evaluation


class PasskeyGrid(Spec):
    """The evaluation grid: accuracy of retrieving the needle at every (length, depth) cell."""

    task: TaskName = "passkey"
    """Synthetic task evaluated (see `data.synthetic.tasks` of a TrainingRun)."""
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
    """Seed of the evaluation samples; keep it apart from the training seed."""
    yarn_factor: Annotated[float, Field(ge=1)] = 1.0
    """YaRN context-extension factor applied to the model when it is loaded (1: as trained)."""


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
    """What an Evaluation must reach to pass (`status.results.passed`)."""

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
    alias_on_pass: MlflowAlias = "champion"
    """MLflow alias set on the evaluated model version when it passes (MLflow moves it from
    the version that had it), so that a `model.mlflow.alias` reference follows the versions
    that passed; empty: no alias."""


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
    """Scale the replicas between minReplicas and maxReplicas on `metric`; when false,
    `replicas` is used."""
    engine: Literal["auto", "hpa", "keda"] = "auto"
    """`auto`: KEDA when its CRDs are installed, else an HPA."""
    min_replicas: Annotated[int, Field(ge=0)] = 1
    """Fewest replicas; 0 scales to zero with KEDA (an HPA keeps at least 1)."""
    max_replicas: Annotated[int, Field(ge=1)] = 4
    """Most replicas."""
    metric: Literal[
        "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"
    ] = "vllm:num_requests_waiting"
    """vLLM metric averaged over the replicas that drives the scaling: requests waiting in
    the queue, or KV-cache usage (`vllm:gpu_cache_usage_perc` is its name in older vLLM
    releases)."""
    target: Annotated[float, Field(gt=0)] = 5.0
    """Target per replica: waiting requests, or KV-cache usage in [0, 1]."""
    scale_down_stabilization_seconds: Annotated[int, Field(ge=0)] = 300
    """Seconds the metric must stay low before replicas are removed (the scale-down
    stabilization window)."""


class RolloutGate(Spec):
    """An Evaluation that must have passed for the new model version before promotion."""

    evaluation: str
    """Name of an Evaluation in the same namespace; it must have passed for the model
    version being rolled out."""
    thresholds: Thresholds | None = None
    """Stricter thresholds than the Evaluation's own, if set."""


class Rollout(Spec):
    """How a new revision (a new model version, or a changed server template) replaces the
    serving one."""

    strategy: Literal["RollingUpdate", "Canary"] = "RollingUpdate"
    """`RollingUpdate`: replace the replicas in place; `Canary`: run the new revision beside
    the stable one, promote it through `steps` and roll it back when it fails."""
    canary_percent: Annotated[int, Field(ge=1, le=100)] = 10
    """First traffic share of a canary, in percent."""
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(default_factory=lambda: [10, 50, 100])
    """Traffic percentages the canary is promoted through."""
    step_interval_seconds: Annotated[int, Field(ge=0)] = 60
    """Seconds a canary stays at each step before it is promoted to the next."""
    gate: RolloutGate | None = None
    progress_deadline_seconds: Annotated[int, Field(ge=1)] = 600
    """Seconds a revision may take to become ready before it is rolled back."""
    gateway: str | None = None
    """Gateway (`name` or `namespace/name`) of an HTTPRoute that splits a canary's traffic
    by weight when the Gateway API is installed; else the split is by replicas."""


class ServerOptions(Spec):
    """The vLLM server (`icx serve`) of each replica."""

    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    """Port the server listens on and the Service exposes."""
    api_key: SecretKeyRef | None = None
    """The Secret key that holds the API key: clients then send `Authorization: Bearer
    <key>` to `/v1/*` (vLLM's `VLLM_API_KEY`; `/health`, `/ready` and `/metrics` stay
    open). Kubernetes backend only, so far. The admin's policy may require one."""
    max_model_len: Annotated[int, Field(ge=16)] | None = None
    """Longest context in tokens the server accepts (vLLM's `--max-model-len`); the model's
    maximum when unset."""
    extra_args: list[str] = Field(default_factory=list)
    """Further vLLM arguments, each passed on as one argument (e.g. `--enforce-eager`)."""
    termination_grace_period_seconds: Annotated[int, Field(ge=0)] = 120
    """Seconds a stopping replica has to finish the requests in flight before it is killed."""


class InferenceServiceSpec(WorkloadSpec):
    kubernetes: ServerKubernetesOptions | None = None
    model: ModelRef
    replicas: Annotated[int, Field(ge=0)] = 1
    """Server replicas when autoscaling is off; the scale subresource (`kubectl scale`) sets
    it too."""
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
    """Condition type, e.g. `Ready`, `Submitted`, `Running`, `Succeeded`, `Failed`,
    `Passed`."""
    status: Literal["True", "False", "Unknown"]
    """`True`, `False` or `Unknown`."""
    reason: str
    """CamelCase reason of the last transition, for machines."""
    message: str = ""
    """Human-readable detail of the last transition."""
    last_transition_time: datetime
    """When `status` last changed (RFC 3339)."""
    observed_generation: int | None = None
    """The `metadata.generation` the condition was set for."""


class ChildJob(Spec):
    """The job that does the work."""

    backend: Backend
    """Where the job runs: `kubernetes` or `slurm`."""
    name: str | None = None
    """Kubernetes Job name."""
    slurm_job_id: int | None = None
    """SLURM job id (slurm backend)."""
    state: str | None = None
    """Backend state (Job condition or SLURM state)."""
    attempt: int = 0
    """Submissions so far (a resumed run submits again)."""


class Progress(Spec):
    """How far the job is, read from its MLflow run."""

    step: int | None = None
    """Last optimizer step logged."""
    total_steps: int | None = None
    """The recipe's step count (TrainingRun, Alignment)."""
    loss: float | None = None
    """Training loss at `step`."""


class RegisteredModel(Spec):
    """An MLflow model version."""

    run_id: str | None = None
    """MLflow run that logged the model."""
    name: str | None = None
    """Registered model name."""
    version: str | None = None
    """Version number in the registry."""
    uri: str | None = None
    """`models:/name/version`."""


class LengthResult(Spec):
    """Accuracy at one context length, over all depths."""

    length: int
    """Context length in tokens."""
    accuracy: float
    """Share of the samples answered correctly (0–1)."""


class EvaluationResults(Spec):
    """What the evaluation measured (also logged as metrics on the evaluated version's
    MLflow run)."""

    passkey_accuracy: float | None = None
    """Mean accuracy over the grid (0–1)."""
    per_length: list[LengthResult] = Field(default_factory=list)
    """Accuracy per context length."""
    judge_score: float | None = None
    """The judge's mean verdict (1–5) normalised to 0–1 as (mean − 1) / 4."""
    passed: bool | None = None
    """Whether the results meet `spec.thresholds`."""


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
    """One revision of an InferenceService: a model version with a server template."""

    revision: int
    """Sequence number, from 1."""
    model_version: str
    """The model it serves (`models:/name/version`)."""
    started: datetime
    """When it began to roll out (RFC 3339)."""
    outcome: Literal["Progressing", "Stable", "RolledBack", "Superseded"]
    """`Progressing` (rolling out), `Stable` (serving), `RolledBack` (failed; see `reason`),
    `Superseded` (replaced by a later revision)."""
    reason: str | None = None
    """Why it ended as it did (a rollback's cause)."""
    message: str | None = None
    """Detail of the outcome."""
    template_hash: str | None = None
    """Hash of the served template: a spec change that keeps it keeps the revision."""
    template: ServedTemplate | None = None


class WorkloadStatus(Spec):
    """Observed state of a job-running kind."""

    observed_generation: int | None = None
    """The `metadata.generation` this status reflects."""
    phase: Phase = Phase.PENDING
    """Lifecycle phase: `Pending`, `Waiting` (for an input model or judge), `Submitted`,
    `Running`, `Suspended`, `Succeeded`, `Failed`, or `Invalid` (the spec cannot run; it
    is not retried until the spec changes)."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Current state as conditions (metav1.Condition), keyed by type."""
    run_id: str | None = None
    """The MLflow run the job logs into (created by the operator before submitting)."""
    job: ChildJob | None = None
    progress: Progress | None = None
    input_model: RegisteredModel | None = None
    """The resolved input model (Alignment, Evaluation)."""
    model: RegisteredModel | None = None
    """The registered output (TrainingRun, Alignment) or the evaluated model."""
    start_time: datetime | None = None
    """When the work was first submitted (RFC 3339)."""
    completion_time: datetime | None = None
    """When the work succeeded or failed (RFC 3339)."""


class TrainingRunStatus(WorkloadStatus):
    pass


class AlignmentStatus(WorkloadStatus):
    pass


class ResolvedJudge(Spec):
    """The judge endpoint the evaluation job was given (resolved before submission)."""

    url: str
    """OpenAI-compatible base URL of the judge (`…/v1`)."""
    served_model: str | None = None
    """Model name the judge serves; the first listed when unset."""


class EvaluationStatus(WorkloadStatus):
    results: EvaluationResults | None = None
    judge: ResolvedJudge | None = None


class InferenceServiceStatus(Spec):
    observed_generation: int | None = None
    """The `metadata.generation` this status reflects."""
    phase: Phase = Phase.PENDING
    """`Pending`, `Progressing` (a revision rolls out), `Available` (the stable revision
    serves) or `Degraded` (a revision was rolled back, or the spec is invalid)."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Current state as conditions (metav1.Condition), keyed by type."""
    url: str | None = None
    """In-cluster URL of the OpenAI-compatible endpoint
    (`http://<name>.<namespace>.svc.cluster.local:<port>`)."""
    replicas: int = 0
    """Replicas running (the scale subresource's status replicas)."""
    ready_replicas: int = 0
    """Replicas ready to serve."""
    selector: str | None = None
    """Label selector of the replicas (the scale subresource's labelSelectorPath)."""
    revisions: list[Revision] = Field(default_factory=list)
    """Revisions, oldest first."""
    stable_revision: int | None = None
    """Revision that serves the stable traffic."""
    canary_revision: int | None = None
    """Revision running as a canary, while one does."""
    latest_rolled_out_model: str | None = None
    """Model URI of the stable revision (`models:/name/version`)."""
    previous_rolled_out_model: str | None = None
    """Model URI of the stable revision before it."""
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
# Why an object is (not) Ready, in `kubectl get` itself; the message comes last, being long.
_REASON = PrinterColumn(
    name="Reason", type="string", json_path='.status.conditions[?(@.type=="Ready")].reason'
)
_MESSAGE = PrinterColumn(
    name="Message", type="string", json_path='.status.conditions[?(@.type=="Ready")].message'
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
    rules: list[dict[str, Any]] = Field(default_factory=list)
    """CEL rules on the whole object (they may read `oldSelf.status`)."""

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
    rules=[immutable_once_submitted(TrainingRunSpec, WORKLOAD_MUTABLE_FIELDS)],
    status=TrainingRunStatus,
    columns=[
        _PHASE,
        _READY,
        _OUTPUT,
        PrinterColumn(name="Step", type="integer", json_path=".status.progress.step"),
        _BACKEND,
        _AGE,
        _REASON,
        _MESSAGE,
    ],
    description="Trains an MLA model and registers it in MLflow.",
)
ALIGNMENT = Kind(
    kind="Alignment",
    plural="alignments",
    short_names=["icxal"],
    spec=AlignmentSpec,
    rules=[immutable_once_submitted(AlignmentSpec, WORKLOAD_MUTABLE_FIELDS)],
    status=AlignmentStatus,
    columns=[_PHASE, _READY, _OUTPUT, _BACKEND, _AGE, _REASON, _MESSAGE],
    description="Aligns a model with DPO and registers the result as a new model version.",
)
EVALUATION = Kind(
    kind="Evaluation",
    plural="evaluations",
    short_names=["icxev"],
    spec=EvaluationSpec,
    rules=[immutable_once_submitted(EvaluationSpec, WORKLOAD_MUTABLE_FIELDS)],
    status=EvaluationStatus,
    columns=[
        _PHASE,
        _READY,
        PrinterColumn(name="Model", type="string", json_path=".status.inputModel.uri"),
        PrinterColumn(name="Accuracy", type="number", json_path=".status.results.passkeyAccuracy"),
        PrinterColumn(name="Passed", type="boolean", json_path=".status.results.passed"),
        _AGE,
        _REASON,
        _MESSAGE,
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
        _REASON,
        _MESSAGE,
    ],
    scale=True,
    description="Serves a registered model with vLLM, with canary rollouts and rollback.",
)

KINDS: tuple[Kind, ...] = (TRAINING_RUN, ALIGNMENT, EVALUATION, INFERENCE_SERVICE)
KINDS_BY_NAME: dict[str, Kind] = {k.kind: k for k in KINDS}


def parse_spec(kind: Kind, spec: dict[str, Any]) -> Any:
    """The typed spec of an object (raises pydantic.ValidationError)."""
    return kind.spec.model_validate(spec)
