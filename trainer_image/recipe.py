"""Recipes: typed, validated descriptions of an SFT, DPO or evaluation run.

Plain frozen dataclasses (no torch, no pydantic), so that the operator builds them
from a CRD spec (operator/workloads/recipe.py, the one adapter) and the trainer image
loads them from YAML. `dump` writes the file the job reads; `load` and `from_dict`
check every field's type and reject unknown keys, naming the path of the first bad
one (`train.curriculum[1].seq_len: expected int, got 'long'`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from infinitecontext.model.config import MLAConfig

T = TypeVar("T")
TaskName = Literal["passkey", "multikey", "multivalue", "multiquery"]
TASKS: tuple[TaskName, ...] = ("passkey", "multikey", "multivalue", "multiquery")
Templates = Literal["fixed", "varied", "heldout"]


class RecipeError(ValueError):
    """A recipe that cannot describe a run; the message names the offending field."""


@dataclass(frozen=True)
class ModelSpec:
    preset: str = "tiny"
    """A model preset (infinitecontext.model.config.PRESETS)."""
    config: MLAConfig | None = None
    """A full architecture, used instead of the preset (a TrainingRun's `model.config`)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """MLAConfig fields to change from the preset or config (e.g. max_position_embeddings)."""
    init_from: str | None = None
    """A HF model directory to continue from instead of a random init (extension stage)."""
    yarn_factor: float = 1.0
    """YaRN factor applied to the model before training (1: none)."""
    yarn_original_length: int | None = None
    """YaRN's original_max_position_embeddings; default: the model's current maximum."""


# Where `data.uri` may point: a local path, file://, or an MLflow artifact (dataset.py).
DATA_URI_SCHEMES = ("file://", "runs:/", "mlflow-artifacts:/")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True)
class DataSpec:
    tasks: tuple[TaskName, ...] = ("passkey",)
    seed: int = 0
    """The synthetic stream's seed; with `uri`, the seed of the record shuffle."""
    digits: int = 5
    num_needles: int = 4
    min_length_fraction: float = 0.5
    """Sample lengths are uniform in [fraction·seq_len, seq_len] tokens."""
    answer_loss_weight: float = 1.0
    lm_loss_weight: float = 0.1
    """Weight of the next-token loss on the haystack, relative to the answer's."""
    tokenizer_sentences: int = 30_000
    templates: Literal["fixed", "varied"] = "fixed"
    """fixed: one wording per task (data.py); varied: needles, questions, keys and
    haystacks drawn from a large generated family (phrasing.py)."""
    haystack: str | None = None
    """A natural-text JSONL (corpus.py) that joins varied templates' haystacks and the
    tokenizer's training text."""
    uri: str | None = None
    """Train on a JSONL dataset instead of the synthetic tasks: one record a line,
    `{"text": …}` or `{"prompt": …, "completion": …}`, at a local path, a `file://`
    URI or an MLflow artifact URI (`runs:/…`, `mlflow-artifacts:/…`); see dataset.py."""


@dataclass(frozen=True)
class CurriculumStage:
    seq_len: int
    until_step: int
    """The stage runs for steps < until_step (after the previous stage)."""


@dataclass(frozen=True)
class TrainSpec:
    steps: int = 100
    tokens_per_step: int = 65_536
    """Global tokens per optimizer step; the batch size is tokens_per_step // seq_len."""
    micro_batch_tokens: int = 16_384
    """Tokens per forward pass and rank; gradient accumulation makes up the rest."""
    seq_len: int = 1024
    """The target length, used from the last curriculum stage on."""
    curriculum: tuple[CurriculumStage, ...] = ()
    seed: int = 0
    log_every: int = 10


@dataclass(frozen=True)
class OptimSpec:
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0


@dataclass(frozen=True)
class ParallelSpec:
    mixed_precision: Literal["bf16", "fp32"] = "bf16"
    """bf16: parameters cast to bf16 for compute, gradients reduced in fp32."""
    activation_checkpointing: bool = False
    compile: bool = False
    """torch.compile each block (and the loss); worth it on GPUs."""
    reshard_after_forward: bool = True
    strategy: Literal["full_shard", "hybrid_shard", "ddp"] = "full_shard"
    """How the ranks hold the model. full_shard: FSDP2, parameters, gradients and
    optimizer state sharded over every rank. hybrid_shard: sharded within groups of
    `shard_group_size` ranks and replicated across them (HSDP: all-gathers stay inside a
    node). ddp: every rank holds everything and gradients are all-reduced (DDP's memory
    and traffic), run as HSDP with groups of one rank, so that mixed precision,
    checkpoints and export take the same code path."""
    shard_group_size: int | None = None
    """hybrid_shard's group size; default: the processes of one node (LOCAL_WORLD_SIZE)."""


@dataclass(frozen=True)
class CheckpointSpec:
    every_steps: int = 100
    keep: int = 2
    """Complete checkpoints kept; keep ≥ 2 so that a corrupt last one has a fallback."""


@dataclass(frozen=True)
class MlflowSpec:
    tracking_uri: str | None = None
    """Default: $MLFLOW_TRACKING_URI; with neither, the run is not tracked."""
    experiment: str | None = None
    """Default: $MLFLOW_EXPERIMENT_NAME, else "infinitecontext"."""
    run_name: str | None = None


@dataclass(frozen=True)
class SFTRecipe:
    output_dir: str
    name: str = "sft"
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    parallel: ParallelSpec = field(default_factory=ParallelSpec)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    mlflow: MlflowSpec = field(default_factory=MlflowSpec)
    tracking: tuple[Literal["mlflow", "wandb"], ...] = ("mlflow",)
    """Trackers besides metrics.jsonl; W&B runs offline without WANDB_API_KEY."""
    metrics_port: int | None = None
    """Serve Prometheus metrics here while training (rank 0); also $ICX_METRICS_PORT."""

    def __post_init__(self) -> None:
        check_sft(self)


@dataclass(frozen=True)
class JudgeSpec:
    """An LLM judge that grades the evaluated model's passkey answers (judge.py)."""

    url: str
    """The judge's OpenAI-compatible base URL (…/v1)."""
    model: str | None = None
    """The judge's served model name; default: the first one `GET {url}/models` lists."""
    rubric: str = ""
    """The score rubric (1–5); empty: judge.RETRIEVAL_RUBRIC."""
    api: Literal["completions", "chat"] = "completions"
    guided: bool = False
    """Constrain the judge's output to the verdict format (vLLM structured outputs)."""
    max_items: int = 16
    """Answers graded, spread evenly over the grid's cells."""
    max_tokens: int = 512
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise RecipeError(f"judge.url must be an http(s) URL, got {self.url!r}")
        _positive(self, "max_items", "max_tokens", "timeout")


@dataclass(frozen=True)
class EvalSpec:
    lengths: tuple[int, ...] = (512, 1024, 2048)
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    trials: int = 8
    """Samples per (length, depth) cell."""
    task: TaskName = "passkey"
    seed: int = 1234
    """The evaluation stream; keep it apart from the training seed."""
    digits: int = 5
    num_needles: int = 4
    templates: Templates = "fixed"
    """fixed: the one wording per task; varied: the training family (phrasing.py);
    heldout: phrasings, key words and haystacks training never sees (heldout.py)."""
    haystack: str | None = None
    """A natural-text JSONL (corpus.py's heldout.jsonl) for the haystacks of varied or
    held-out templates; default: the family's generated haystacks."""
    yarn_factor: float = 1.0
    """Applied to a model directory at load time (1: as trained)."""
    batch_tokens: int = 32_768
    """Prompt tokens per generation batch (model directories) or requests in flight."""
    judge: JudgeSpec | None = None
    """Also grade the model's answers with an LLM judge (metric `judge_score`, 0–1)."""


@dataclass(frozen=True)
class DPORecipe:
    model_dir: str
    output_dir: str
    name: str = "dpo"
    pairs: int = 256
    length: int = 1024
    """Prompt length in tokens of the preference pairs."""
    rejected: Literal["haystack", "model"] = "haystack"
    """haystack: another number from the haystack; model: the model's own wrong answer
    (falling back to a haystack number where the model is right)."""
    data: DataSpec = field(default_factory=DataSpec)
    beta: float = 0.1
    loss_type: str = "sigmoid"
    lr: float = 1e-5
    steps: int = 50
    batch_size: int = 4
    grad_accum: int = 1
    warmup_steps: int = 0
    bf16: bool = False
    seed: int = 0
    evaluation: EvalSpec | None = None
    """Passkey accuracy before and after, on this grid."""
    mlflow: MlflowSpec = field(default_factory=MlflowSpec)

    def __post_init__(self) -> None:
        _positive(self, "pairs", "length", "steps", "batch_size", "grad_accum")
        if self.data.uri is not None:
            raise RecipeError("data.uri: DPO pairs come from the synthetic tasks only")
        if self.beta <= 0:
            raise RecipeError(f"beta must be positive, got {self.beta}")


def check_sft(recipe: SFTRecipe) -> None:
    train = recipe.train
    _positive(train, "steps", "tokens_per_step", "micro_batch_tokens", "seq_len", "log_every")
    _positive(recipe.checkpoint, "every_steps", "keep")
    if not recipe.data.tasks:
        raise RecipeError("data.tasks must name at least one task")
    check_data_uri(recipe.data.uri)
    if not 0 < recipe.data.min_length_fraction <= 1:
        raise RecipeError("data.min_length_fraction must be in (0, 1]")
    previous = 0
    for i, stage in enumerate(train.curriculum):
        if stage.seq_len <= 0 or stage.until_step <= previous:
            raise RecipeError(
                f"train.curriculum[{i}]: seq_len must be positive and until_step must grow "
                f"(got seq_len={stage.seq_len}, until_step={stage.until_step} after {previous})"
            )
        previous = stage.until_step
    if recipe.optim.warmup_steps >= train.steps:
        raise RecipeError("optim.warmup_steps must be smaller than train.steps")


def check_data_uri(uri: str | None) -> None:
    """A dataset URI the trainer can read: a path, file://, runs:/ or mlflow-artifacts:/."""
    if uri is None:
        return
    if not uri.strip():
        raise RecipeError("data.uri must not be empty")
    if _SCHEME.match(uri) and not uri.startswith(DATA_URI_SCHEMES):
        known = ", ".join(f"{s}…" for s in DATA_URI_SCHEMES)
        raise RecipeError(f"data.uri {uri!r}: unsupported scheme; use a path, {known}")


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise RecipeError(f"{type(obj).__name__}.{name} must be positive, got {value}")


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from plain data, checking types and rejecting unknown keys."""
    if not isinstance(data, dict):
        raise RecipeError(f"{path or 'recipe'}: expected a mapping, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RecipeError(f"{path or 'recipe'}: unknown field(s) {unknown}; known: {sorted(names)}")
    values = {k: _convert(hints[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as err:  # a required field is missing
        raise RecipeError(f"{path or 'recipe'}: {err}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if origin is Literal:
        if value not in args:
            raise RecipeError(f"{path}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise RecipeError(f"{path}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise RecipeError(f"{path}: expected {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    return _scalar(hint, value, path)


def _scalar(hint: Any, value: Any, path: str) -> Any:
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise RecipeError(f"{path}: expected int, got {value!r}")
    if not isinstance(value, hint):
        raise RecipeError(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def load(path: Path, cls: type[T]) -> T:
    """Read a YAML recipe file into `cls` (SFTRecipe, DPORecipe or EvalSpec)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RecipeError(f"{path}: {err}") from None
    try:
        return from_dict(cls, data)
    except RecipeError as err:
        raise RecipeError(f"{path}: {err}") from None


def to_dict(recipe: object) -> dict[str, Any]:
    assert dataclasses.is_dataclass(recipe) and not isinstance(recipe, type)
    return dataclasses.asdict(recipe)


def dump(recipe: object) -> str:
    """The recipe as the YAML file a job reads (`load` reads it back to an equal recipe).

    A string with a line break or another control character (a judge rubric) is written
    double-quoted with escapes, so every value stays on its own line: a SLURM batch
    script carries the file in a here-doc whose end marker no line can imitate."""
    return yaml.dump(to_dict(recipe), Dumper=_RecipeDumper, sort_keys=False, width=2**31)


class _RecipeDumper(yaml.SafeDumper):
    """SafeDumper that double-quotes strings with control characters (see `dump`)."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if not value.isprintable() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RecipeDumper.add_representer(str, _string)
_RecipeDumper.add_representer(tuple, yaml.SafeDumper.represent_list)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"train": {"steps": 3}} → {"train.steps": "3"}: MLflow parameters."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = str(value)
    return flat


__all__ = [
    "TASKS",
    "DPORecipe",
    "EvalSpec",
    "JudgeSpec",
    "RecipeError",
    "SFTRecipe",
    "dump",
    "from_dict",
    "load",
]
