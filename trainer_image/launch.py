"""What the trainer CLI needs besides the runs themselves: torchrun re-launch, recipe
loading with overrides, and the judge over a JSONL file."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from infinitecontext.trainer.recipe import (
    TASKS,
    DPORecipe,
    EvalSpec,
    MlflowSpec,
    RecipeError,
    SFTRecipe,
    from_dict,
    load,
)


def relaunch_under_torchrun(nproc_per_node: int) -> None:
    """With more than one process wanted and not yet under torchrun, become torchrun.

    `icx train sft --nproc-per-node 2 …` is then `torchrun --standalone
    --nproc-per-node 2 -m infinitecontext.cli train sft …`: one command for CPU tests
    and GPU nodes. Inside a worker (LOCAL_RANK set) this returns.
    """
    if nproc_per_node <= 1 or "LOCAL_RANK" in os.environ:
        return
    args = [a for a in sys.argv[1:] if not a.startswith("--nproc-per-node")]
    if "--nproc-per-node" in sys.argv:  # the value followed as its own argument
        value_at = sys.argv.index("--nproc-per-node")
        args = sys.argv[1:value_at] + sys.argv[value_at + 2 :]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc_per_node}", "-m", "infinitecontext.cli", *args,
    ]  # fmt: skip
    os.execv(sys.executable, command)


def _output_dir(path: Path | None) -> str | None:
    if path is not None:
        return str(path)
    return os.environ.get("ICX_OUTPUT_DIR")


def load_sft_recipe(config: Path, output_dir: Path | None = None) -> SFTRecipe:
    recipe = load(config, SFTRecipe)
    override = _output_dir(output_dir)
    return dataclasses.replace(recipe, output_dir=override) if override else recipe


def load_dpo_recipe(config: Path, output_dir: Path | None = None) -> DPORecipe:
    recipe = load(config, DPORecipe)
    override = _output_dir(output_dir)
    return dataclasses.replace(recipe, output_dir=override) if override else recipe


def eval_spec(
    config: Path | None,
    lengths: str | None,
    depths: str | None,
    trials: int | None,
    task: str | None,
    yarn_factor: float | None,
    templates: str | None = None,
    haystack: str | None = None,
    seed: int | None = None,
) -> EvalSpec:
    """An EvalSpec from a YAML file (or defaults), with command-line overrides."""
    spec = load(config, EvalSpec) if config else EvalSpec()
    changes: dict[str, Any] = {}
    if lengths:
        changes["lengths"] = [int(x) for x in lengths.split(",")]
    if depths:
        changes["depths"] = [float(x) for x in depths.split(",")]
    if trials is not None:
        changes["trials"] = trials
    if task is not None:
        if task not in TASKS:
            raise RecipeError(f"task must be one of {list(TASKS)}, got {task!r}")
        changes["task"] = task
    if yarn_factor is not None:
        changes["yarn_factor"] = float(yarn_factor)
    if templates is not None:
        changes["templates"] = templates
    if haystack is not None:
        changes["haystack"] = haystack
    if seed is not None:
        changes["seed"] = seed
    return from_dict(EvalSpec, dataclasses.asdict(spec) | changes)


def run_judge_file(
    endpoint: str,
    served_model: str,
    items_file: Path,
    out: Path,
    api: str = "completions",
    guided: bool = False,
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Grade each JSONL item, write the report (verdicts + summary), log the summary."""
    from infinitecontext.trainer.judge import Item, JudgeEndpoint, judge, judge_metrics
    from infinitecontext.trainer.tracking import Tracker

    items = [Item(**json.loads(line)) for line in items_file.read_text().splitlines() if line]
    report = judge(JudgeEndpoint(endpoint, served_model, api=api, guided=guided), items)
    summary = report.summary()
    verdicts = [dataclasses.asdict(v) for v in report.verdicts]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "verdicts": verdicts}, indent=2) + "\n")
    tracker = Tracker.start(MlflowSpec(), "judge", resume_run_id=mlflow_run_id)
    tracker.log_metrics(judge_metrics(summary), step=0)
    tracker.log_artifact(out, "judge")
    tracker.end()
    return summary
