"""What a job runs: the trainer's recipe, command line and environment, per kind.

This is the one place that knows the trainer's interface (`trainer_image/recipe.py`
and the `icx train sft|dpo` / `icx eval` commands); the Kubernetes and SLURM renderers
both take `WorkloadCommand` from here. The recipe is rendered as one line of YAML and travels in
the `ICX_RECIPE` environment variable (no ConfigMap, no shared file); a fixed shell
prologue writes it to the work directory, downloads the input model from MLflow for
Alignment and Evaluation, and execs `icx`. The MLflow run is named `icx-<uid>`, which
is how the operator finds it again, on either backend and after any restart.

User values (a dataset URI, a judge URL and rubric) only ever travel inside the
recipe, i.e. as one environment value: never in the shell text or the argv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from infinitecontext.crds.models import (
    AlignmentSpec,
    EvaluationSpec,
    JudgeEndpoint,
    ModelSpec,
    RegisteredModel,
    SyntheticData,
    TrainingRunSpec,
    WorkloadSpec,
)

RECIPE_ENV = "ICX_RECIPE"
# Where the job logs its model (TrainingRun, Alignment), relative to the run's artifacts.
MODEL_ARTIFACT_PATH = "model"
# Metrics an evaluation job logs (trainer_image/evaluate.py: `{task}_acc_{length}`,
# and with a judge trainer_image/judge.py's `judge_*`; `judge_score` is 0–1).
JUDGE_METRIC = "judge_score"
JUDGE_ITEMS_METRIC = "judge_items"
JUDGE_ERRORS_METRIC = "judge_request_errors"
JUDGE_UNPARSABLE_METRIC = "judge_unparsable"
# Stands in for an InferenceService judge's URL while the spec alone is validated.
UNRESOLVED_JUDGE = JudgeEndpoint(url="http://judge.unresolved.invalid/v1")
_LENGTH_KEY = re.compile(r"^(?P<task>[a-z]+)_acc_(?P<n>\d+)(?P<k>k?)$")

# Runs in the job before the trainer: fixed text, user values only through the env.
PROLOGUE = """set -eu
work="$ICX_WORK_DIR"; mkdir -p "$work"
printf '%s\\n' "$ICX_RECIPE" > "$work/recipe.yaml"
if [ -n "${ICX_INPUT_MODEL_URI:-}" ]; then
  mlflow artifacts download --artifact-uri "$ICX_INPUT_MODEL_URI" --dst-path "$work/input-model"
fi
exec "$@" --config "$work/recipe.yaml"
"""

_SUBCOMMAND = {
    "TrainingRun": ["icx", "train", "sft"],
    "Alignment": ["icx", "train", "dpo"],
    "Evaluation": ["icx", "eval", "passkey"],
}


@dataclass(frozen=True)
class Owner:
    """The custom resource a job belongs to."""

    kind: str
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class WorkloadCommand:
    argv: list[str]
    environment: dict[str, str]


def run_name(uid: str) -> str:
    """The MLflow run name of the job of resource `uid` (how the operator finds it)."""
    return f"icx-{uid}"


def run_experiments(kind: str, spec: WorkloadSpec) -> list[str]:
    """Where the job's run lands: `icx eval passkey` names the run but always logs to
    the trainer's default experiment."""
    default = "infinitecontext"
    wanted = spec.mlflow.experiment
    return [wanted] if kind != "Evaluation" or wanted == default else [wanted, default]


def work_dir(spec: WorkloadSpec) -> str:
    checkpoint = getattr(spec, "checkpoint", None)
    return checkpoint.path if checkpoint is not None else "/tmp/icx-work"


def _mlflow(spec: WorkloadSpec, owner: Owner) -> dict[str, Any]:
    return {"experiment": spec.mlflow.experiment, "run_name": run_name(owner.uid)}


def _model(model: ModelSpec) -> dict[str, Any]:
    if model.preset is not None:
        return {"preset": model.preset}
    import dataclasses

    assert model.config is not None
    fields = dataclasses.asdict(model.config)
    yarn = fields.pop("yarn")
    result: dict[str, Any] = {"preset": "tiny", "overrides": fields}
    if yarn["factor"] > 1:
        result["overrides"]["max_position_embeddings"] = yarn["original_max_position_embeddings"]
        result["yarn_factor"] = yarn["factor"]
        result["yarn_original_length"] = yarn["original_max_position_embeddings"]
    return result


def _synthetic_data(synthetic: SyntheticData) -> dict[str, Any]:
    """The synthetic task generator's parameters, as a recipe's `data` section."""
    return {
        "tasks": list(synthetic.tasks),
        "seed": synthetic.seed,
        "digits": synthetic.digits,
        "num_needles": synthetic.num_needles,
        "min_length_fraction": synthetic.min_length_fraction,
        "tokenizer_sentences": synthetic.tokenizer_sentences,
    }


def sft_recipe(spec: TrainingRunSpec, owner: Owner) -> dict[str, Any]:
    """A `trainer.recipe.SFTRecipe` as plain data."""
    h = spec.hyperparameters
    synthetic = spec.data.synthetic
    if synthetic is not None:
        data = _synthetic_data(synthetic)
    else:  # a JSONL dataset: the trainer fetches, indexes and shuffles it (seeded)
        data = {"uri": spec.data.uri, "seed": h.seed}
    return {
        "name": owner.name,
        "output_dir": spec.checkpoint.path,
        "model": _model(spec.model),
        "data": data,
        "train": {
            "steps": h.steps,
            "tokens_per_step": h.tokens_per_step,
            "micro_batch_tokens": h.micro_batch_tokens,
            "seq_len": h.seq_len,
            "curriculum": [
                {"seq_len": s.seq_len, "until_step": s.until_step} for s in spec.curriculum
            ],
            "seed": h.seed,
            "log_every": h.log_every,
        },
        "optim": {
            "lr": h.learning_rate,
            "min_lr_ratio": h.min_lr_ratio,
            "warmup_steps": h.warmup_steps,
            "weight_decay": h.weight_decay,
            "grad_clip": h.grad_clip,
        },
        "parallel": {"mixed_precision": h.precision},
        "checkpoint": {"every_steps": spec.checkpoint.every_steps, "keep": spec.checkpoint.keep},
        "mlflow": _mlflow(spec, owner),
        "tracking": list(dict.fromkeys(spec.tracking)),
    }


def dpo_recipe(spec: AlignmentSpec, owner: Owner) -> dict[str, Any]:
    """A `trainer.recipe.DPORecipe` as plain data."""
    d, p = spec.dpo, spec.preference_data
    return {
        "name": owner.name,
        "model_dir": f"{spec.checkpoint.path}/input-model",
        "output_dir": spec.checkpoint.path,
        "pairs": p.pairs,
        "length": p.length,
        "rejected": p.rejected,
        "data": _synthetic_data(p.synthetic),
        "beta": d.beta,
        "loss_type": d.loss_type,
        "lr": d.learning_rate,
        "steps": d.steps,
        "batch_size": d.batch_size,
        "grad_accum": d.grad_accum,
        "warmup_steps": d.warmup_steps,
        "bf16": d.bf16,
        "seed": d.seed,
        "mlflow": _mlflow(spec, owner),
    }


def eval_recipe(
    spec: EvaluationSpec, owner: Owner, judge: JudgeEndpoint | None = None
) -> dict[str, Any]:
    """A `trainer.recipe.EvalSpec` as plain data (the model directory is an argument).

    With `spec.judge`, `judge` is the endpoint it resolved to (an InferenceService's
    URL is only known to the operator); the job grades the grid's answers there.
    """
    g = spec.passkey
    result: dict[str, Any] = {
        "lengths": list(g.lengths),
        "depths": list(g.depths),
        "trials": g.samples,
        "task": g.task,
        "seed": g.seed,
        "yarn_factor": g.yarn_factor,
    }
    if spec.judge is not None:
        if judge is None:
            raise ValueError("spec.judge: the judge endpoint is not resolved")
        result["judge"] = {
            "url": judge.url,
            "model": judge.served_model,
            "rubric": spec.judge.rubric or "",
            "api": spec.judge.api,
            "guided": spec.judge.guided,
            "max_items": spec.judge.max_items,
        }
    return result


def judge_endpoint(url: str, served_model: str | None = None) -> JudgeEndpoint:
    """An OpenAI-compatible base URL: an InferenceService's `status.url` gets `/v1`."""
    base = url.rstrip("/")
    return JudgeEndpoint(
        url=base if base.endswith("/v1") else f"{base}/v1", served_model=served_model
    )


def recipe(owner: Owner, spec: WorkloadSpec, judge: JudgeEndpoint | None = None) -> dict[str, Any]:
    if isinstance(spec, TrainingRunSpec):
        return sft_recipe(spec, owner)
    if isinstance(spec, AlignmentSpec):
        return dpo_recipe(spec, owner)
    if isinstance(spec, EvaluationSpec):
        return eval_recipe(spec, owner, judge)
    raise ValueError(f"{owner.kind} runs no job")


def recipe_text(owner: Owner, spec: WorkloadSpec, judge: JudgeEndpoint | None = None) -> str:
    """The recipe as one line of flow-style YAML: SLURM's REST environment mangles
    newlines (a rubric's are escaped as \\n inside a quoted scalar), and JSON would
    write 1e-05, which PyYAML reads back as a string."""
    data = recipe(owner, spec, judge)
    text = yaml.dump(
        data, Dumper=_OneLineDumper, default_flow_style=True, sort_keys=False, width=2**31
    ).strip()
    if "\n" in text:  # cannot happen with the dumper below; never send a broken recipe
        raise ValueError("the recipe does not fit on one line")
    return text


class _OneLineDumper(yaml.SafeDumper):
    """Strings with line breaks (a rubric) as double-quoted scalars, whose `\\n` escapes
    keep the document on one line (plain or single-quoted style would break the line)."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if not value.isprintable() else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_OneLineDumper.add_representer(str, _string)


def validate_recipe(owner: Owner, spec: WorkloadSpec) -> None:
    """Check the rendered recipe with the trainer's own loader (ValueError if it refuses)."""
    from infinitecontext.trainer import recipe as trainer_recipe

    classes = {
        "TrainingRun": trainer_recipe.SFTRecipe,
        "Alignment": trainer_recipe.DPORecipe,
        "Evaluation": trainer_recipe.EvalSpec,
    }
    judge = None
    if isinstance(spec, EvaluationSpec) and spec.judge is not None:
        judge = JudgeEndpoint(url=spec.judge.url) if spec.judge.url else UNRESOLVED_JUDGE
    trainer_recipe.from_dict(classes[owner.kind], recipe(owner, spec, judge))


def command(
    owner: Owner,
    spec: WorkloadSpec,
    tracking_uri: str,
    input_model: RegisteredModel | None = None,
    judge: JudgeEndpoint | None = None,
) -> WorkloadCommand:
    argv = ["/bin/sh", "-c", PROLOGUE, "icx-job", *_SUBCOMMAND[owner.kind]]
    directory = work_dir(spec)
    if owner.kind == "Evaluation":
        argv += [
            "--model-dir",
            f"{directory}/input-model",
            "--out",
            f"{directory}/eval",
            "--run-name",
            run_name(owner.uid),
        ]
    environment = {
        RECIPE_ENV: recipe_text(owner, spec, judge),
        "ICX_WORK_DIR": directory,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": spec.mlflow.experiment,
        "ICX_OWNER": f"{owner.kind}/{owner.namespace}/{owner.name}",
        "ICX_OWNER_UID": owner.uid,
    }
    if input_model is not None and input_model.uri:
        environment["ICX_INPUT_MODEL_URI"] = input_model.uri
    return WorkloadCommand(argv, environment)


def accuracy_by_length(task: str, metrics: dict[str, float]) -> dict[int, float]:
    """`{task}_acc_{n}` metrics by length (`1k` means 1024, as the evaluator names them)."""
    found: dict[int, float] = {}
    for key, value in metrics.items():
        match = _LENGTH_KEY.match(key)
        if match and match.group("task") == task:
            n = int(match.group("n"))
            found[n * 1024 if match.group("k") else n] = value
    return found


def mean_accuracy_metric(task: str) -> str:
    return f"{task}_acc_mean"
