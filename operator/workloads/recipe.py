"""What a job runs: the trainer's recipe, command line and environment, per kind.

`recipe_for` is the one adapter from a CRD spec to the trainer's typed recipe
(`trainer_image/recipe.py`): the only place where a spec field is renamed or regrouped
(`hyperparameters.learningRate` → `optim.lr`). The planner builds it once per pass,
and building it is the validation: a spec the trainer would refuse is Invalid. `command`
renders it once into the YAML text that ships as a file, never as an environment value:
a ConfigMap mounted at `RECIPE_PATH` on Kubernetes (jobs.py), a quoted here-doc of the
SLURM batch script in the work directory (slurm.py). A fixed shell prologue downloads the
input model from MLflow for Alignment and Evaluation and execs `icx … --recipe FILE`.
The MLflow run is named `icx-<uid>`, which is how the operator finds it again, on either
backend and after any restart.

User values (a dataset URI, a judge URL and rubric) only ever travel inside the recipe
file: never in the shell text, the argv or the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infinitecontext.crds.models import (
    AlignmentSpec,
    Backend,
    EvaluationSpec,
    ModelArchitecture,
    RegisteredModel,
    ResolvedJudge,
    SyntheticData,
    TrainingData,
    TrainingRunSpec,
    WorkloadSpec,
)
from infinitecontext.trainer.recipe import (
    CheckpointSpec,
    CurriculumStage,
    DataSpec,
    DPORecipe,
    EvalSpec,
    JudgeSpec,
    MlflowSpec,
    ModelSpec,
    OptimSpec,
    ParallelSpec,
    SFTRecipe,
    TrainSpec,
    dump,
)

Recipe = SFTRecipe | DPORecipe | EvalSpec
# Where the Kubernetes backend mounts the recipe ConfigMap (read-only).
RECIPE_DIR = "/etc/icx"
RECIPE_FILE = "recipe.yaml"
RECIPE_PATH = f"{RECIPE_DIR}/{RECIPE_FILE}"
CHECKPOINT_ROOT = "/checkpoints"
"""Where a resource's own checkpoint directory goes when the spec names none."""
# Where the job logs its model (TrainingRun, Alignment), relative to the run's artifacts.
MODEL_ARTIFACT_PATH = "model"
# Metrics an evaluation job logs (trainer_image/evaluate.py: `{task}_acc_{length}`,
# and with a judge trainer_image/judge.py's `judge_*`; `judge_score` is 0–1).
JUDGE_METRIC = "judge_score"
JUDGE_ITEMS_METRIC = "judge_items"
JUDGE_ERRORS_METRIC = "judge_request_errors"
JUDGE_UNPARSABLE_METRIC = "judge_unparsable"
# Stands in for an InferenceService judge's URL until it is resolved: the recipe can be
# built (validated) before, and `command` refuses to ship it.
UNRESOLVED_JUDGE = ResolvedJudge(url="http://judge.unresolved.invalid/v1")
_LENGTH_KEY = re.compile(r"^(?P<task>[a-z]+)_acc_(?P<n>\d+)(?P<k>k?)$")

# Runs in the job before the trainer: fixed text, user values only in the recipe file.
PROLOGUE = """set -eu
mkdir -p "$ICX_WORK_DIR"
if [ -n "${ICX_INPUT_MODEL_URI:-}" ]; then
  mlflow artifacts download --artifact-uri "$ICX_INPUT_MODEL_URI" \\
    --dst-path "$ICX_WORK_DIR/input-model"
fi
exec "$@"
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
    recipe: str
    """The recipe file's text."""
    recipe_path: str
    """Where the job reads it (the argv names it)."""


def run_name(uid: str) -> str:
    """The MLflow run name of the job of resource `uid` (how the operator finds it)."""
    return f"icx-{uid}"


def run_experiments(kind: str, spec: WorkloadSpec) -> list[str]:
    """Where the job's run lands: `icx eval passkey` names the run but always logs to
    the trainer's default experiment."""
    default = "infinitecontext"
    wanted = spec.mlflow.experiment
    return [wanted] if kind != "Evaluation" or wanted == default else [wanted, default]


def work_dir(owner: Owner, spec: WorkloadSpec) -> str:
    """The checkpoint directory: the spec's, else one of this resource's own, keyed by
    its UID, so that runs never share one (nor resume another's checkpoints or run)."""
    checkpoint = getattr(spec, "checkpoint", None)
    path = checkpoint.path if checkpoint is not None else None
    return path or f"{CHECKPOINT_ROOT}/{owner.uid}"


def recipe_path(owner: Owner, spec: WorkloadSpec) -> str:
    """The mounted ConfigMap on Kubernetes; on SLURM, the work directory (which must be
    on a shared filesystem for several nodes, as the checkpoints must)."""
    if spec.backend == Backend.KUBERNETES:
        return RECIPE_PATH
    return f"{work_dir(owner, spec)}/{RECIPE_FILE}"


# ---------------------------------------------------------------- the adapter


def recipe_for(owner: Owner, spec: WorkloadSpec, judge: ResolvedJudge | None = None) -> Recipe:
    """The trainer's recipe for a workload (RecipeError, a ValueError, if it refuses).

    `judge` is where an Evaluation's judge was resolved to (status.judge); without it a
    `judge.url` is used as given and an InferenceService judge gets a placeholder."""
    if isinstance(spec, TrainingRunSpec):
        return sft_recipe(spec, owner)
    if isinstance(spec, AlignmentSpec):
        return dpo_recipe(spec, owner)
    if isinstance(spec, EvaluationSpec):
        return eval_recipe(spec, judge)
    raise ValueError(f"{owner.kind} runs no job")


def sft_recipe(spec: TrainingRunSpec, owner: Owner) -> SFTRecipe:
    hyper = spec.hyperparameters
    return SFTRecipe(
        name=owner.name,
        output_dir=work_dir(owner, spec),
        model=model_spec(spec.model),
        data=data_spec(spec.data, hyper.seed),
        train=TrainSpec(
            steps=hyper.steps,
            tokens_per_step=hyper.tokens_per_step,
            micro_batch_tokens=hyper.micro_batch_tokens,
            seq_len=hyper.seq_len,
            curriculum=tuple(CurriculumStage(s.seq_len, s.until_step) for s in spec.curriculum),
            seed=hyper.seed,
            log_every=hyper.log_every,
        ),
        optim=OptimSpec(
            lr=hyper.learning_rate,
            min_lr_ratio=hyper.min_lr_ratio,
            warmup_steps=hyper.warmup_steps,
            weight_decay=hyper.weight_decay,
            grad_clip=hyper.grad_clip,
        ),
        parallel=ParallelSpec(mixed_precision=hyper.precision),
        checkpoint=CheckpointSpec(
            every_steps=spec.checkpoint.every_steps, keep=spec.checkpoint.keep
        ),
        mlflow=mlflow_spec(spec, owner),
        tracking=tuple(dict.fromkeys(spec.tracking)),
    )


def dpo_recipe(spec: AlignmentSpec, owner: Owner) -> DPORecipe:
    dpo, pairs = spec.dpo, spec.preference_data
    return DPORecipe(
        name=owner.name,
        model_dir=f"{work_dir(owner, spec)}/input-model",
        output_dir=work_dir(owner, spec),
        pairs=pairs.pairs,
        length=pairs.length,
        rejected=pairs.rejected,
        data=synthetic_data_spec(pairs.synthetic),
        beta=dpo.beta,
        loss_type=dpo.loss_type,
        lr=dpo.learning_rate,
        steps=dpo.steps,
        batch_size=dpo.batch_size,
        grad_accum=dpo.grad_accum,
        warmup_steps=dpo.warmup_steps,
        bf16=dpo.bf16,
        seed=dpo.seed,
        mlflow=mlflow_spec(spec, owner),
    )


def eval_recipe(spec: EvaluationSpec, judge: ResolvedJudge | None = None) -> EvalSpec:
    """The grid (the model directory and the run name are arguments of `icx eval`)."""
    grid = spec.passkey
    return EvalSpec(
        lengths=tuple(grid.lengths),
        depths=tuple(grid.depths),
        trials=grid.samples,
        task=grid.task,
        seed=grid.seed,
        yarn_factor=grid.yarn_factor,
        judge=judge_spec(spec, judge),
    )


def judge_spec(spec: EvaluationSpec, resolved: ResolvedJudge | None) -> JudgeSpec | None:
    wanted = spec.judge
    if wanted is None:
        return None
    if resolved is None:
        given = (
            ResolvedJudge(url=wanted.url, served_model=wanted.served_model) if wanted.url else None
        )
        resolved = given or UNRESOLVED_JUDGE
    return JudgeSpec(
        url=resolved.url,
        model=resolved.served_model,
        rubric=wanted.rubric or "",
        api=wanted.api,
        guided=wanted.guided,
        max_items=wanted.max_items,
    )


def model_spec(model: ModelArchitecture) -> ModelSpec:
    """A preset by name, or the full MLAConfig as it is (YaRN scaling included)."""
    if model.config is not None:
        return ModelSpec(config=model.config)
    if model.preset is None:  # the API server's CEL rule refuses this already
        raise ValueError("spec.model: set exactly one of: preset, config")
    return ModelSpec(preset=model.preset)


def data_spec(data: TrainingData, seed: int) -> DataSpec:
    """The synthetic tasks, or a JSONL dataset shuffled with the run's seed."""
    if data.synthetic is not None:
        return synthetic_data_spec(data.synthetic)
    return DataSpec(uri=data.uri, seed=seed)


def synthetic_data_spec(synthetic: SyntheticData) -> DataSpec:
    return DataSpec(
        tasks=tuple(synthetic.tasks),
        seed=synthetic.seed,
        digits=synthetic.digits,
        num_needles=synthetic.num_needles,
        min_length_fraction=synthetic.min_length_fraction,
        tokenizer_sentences=synthetic.tokenizer_sentences,
    )


def mlflow_spec(spec: WorkloadSpec, owner: Owner) -> MlflowSpec:
    return MlflowSpec(experiment=spec.mlflow.experiment, run_name=run_name(owner.uid))


def step_count(recipe: Recipe) -> int | None:
    """The optimizer steps the job runs (status.progress.totalSteps)."""
    if isinstance(recipe, SFTRecipe):
        return recipe.train.steps
    if isinstance(recipe, DPORecipe):
        return recipe.steps
    return None


def judge_endpoint(url: str, served_model: str | None = None) -> ResolvedJudge:
    """An OpenAI-compatible base URL: an InferenceService's `status.url` gets `/v1`."""
    base = url.rstrip("/")
    return ResolvedJudge(
        url=base if base.endswith("/v1") else f"{base}/v1", served_model=served_model
    )


# ---------------------------------------------------------------- the job


def command(
    owner: Owner,
    spec: WorkloadSpec,
    recipe: Recipe,
    tracking_uri: str,
    input_model: RegisteredModel | None = None,
) -> WorkloadCommand:
    """The job's argv, environment and recipe file (rendered here, once)."""
    if isinstance(recipe, EvalSpec) and recipe.judge and recipe.judge.url == UNRESOLVED_JUDGE.url:
        raise ValueError("spec.judge: the judge endpoint is not resolved")
    path = recipe_path(owner, spec)
    directory = work_dir(owner, spec)
    argv = ["/bin/sh", "-c", PROLOGUE, "icx-job", *_SUBCOMMAND[owner.kind], "--recipe", path]
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
        "ICX_WORK_DIR": directory,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": spec.mlflow.experiment,
        "ICX_OWNER": f"{owner.kind}/{owner.namespace}/{owner.name}",
        "ICX_OWNER_UID": owner.uid,
    }
    if input_model is not None and input_model.uri:
        environment["ICX_INPUT_MODEL_URI"] = input_model.uri
    return WorkloadCommand(argv, environment, dump(recipe), path)


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
