"""Passkey study: `small` from scratch, extended with YaRN, then DPO, in one time budget.

One seed per process (`seed`: data and init seeds differ per seed; two processes can share
one GPU, `concurrent=2`): `small` from scratch (recipes/small-passkey.yaml, steps cut to fit
the budget), evaluated on a length × depth grid without YaRN and with zero-shot YaRN at
2×/4×/8× the training length; then the YaRN ×8 extension stage (recipes/small-yarn.yaml,
sized by the speed measured in stage 1) and its grid to 32k (40 samples a length) and at
64k/128k (10 a length); DPO (seed 0, only where TRL is importable). Phases that would
overrun the budget are shortened or skipped and recorded as such. Run by `gpu_benchmark`
(`--phases passkey`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from infinitecontext.trainer import recipe as recipes
from infinitecontext.trainer.benchmark_results import Results, log
from infinitecontext.trainer.recipe import EvalSpec, ParallelSpec, SFTRecipe

REPO = Path(__file__).resolve().parents[1]
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)

# Time model of the passkey study, from the H100 run of BENCHMARKS.md (one process alone
# on the GPU). Stage 1 ran 1,200 steps × 65,536 (padded) tokens in 128 s: 614k tokens/s,
# the same as the eager throughput measurement at 4k (618k).
STAGE1_RATE = 614_000.0
# Stage 2 (8k → 16k → 32k): attention grows with the length; ~0.6 × stage 1's rate.
STAGE2_RATE_RATIO = 0.6
# Passkey evaluation (prefill-bound, linear in tokens to 128k): seconds per prompt token
# (20.9 s for 40 × 1k…32k, 28.1 s for 20 × 1k…128k), plus loading the model.
EVAL_S_PER_TOKEN = 6.5e-6
EVAL_FIXED_S = 3.0
# Start-up and export of a training run (process group, tokenizer, data workers, HF export).
TRAIN_FIXED_S = 8.0
# Processes sharing one GPU time-slice it (no MPS): their aggregate speed relative to one
# alone, assumed low (the gaps one leaves, at syncs and in Python, are what the other
# fills); stage 2 is then sized by stage 1's measured speed.
OVERLAP = 1.05
SAFETY_S = 15.0


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    @property
    def left(self) -> float:
        return self.deadline - time.monotonic()


def fit_steps(recipe: SFTRecipe, seconds: float, tokens_per_s: float) -> SFTRecipe:
    """Cut train.steps (and the curriculum, proportionally) to what fits in `seconds`."""
    affordable = int(seconds * tokens_per_s / recipe.train.tokens_per_step)
    steps = max(20, min(recipe.train.steps, affordable))
    ratio = steps / recipe.train.steps
    curriculum = tuple(
        dataclasses.replace(s, until_step=max(i + 1, int(s.until_step * ratio)))
        for i, s in enumerate(recipe.train.curriculum)
    )
    train = dataclasses.replace(recipe.train, steps=steps, curriculum=curriculum)
    optim = dataclasses.replace(
        recipe.optim, warmup_steps=min(recipe.optim.warmup_steps, steps // 10)
    )
    checkpoint = dataclasses.replace(recipe.checkpoint, every_steps=steps)
    return dataclasses.replace(recipe, train=train, optim=optim, checkpoint=checkpoint)


def seeded(recipe: SFTRecipe, seed: int) -> SFTRecipe:
    """The recipe for study seed `seed`: its own data stream (and tokenizer, trained on
    that stream) and its own initialisation; seed 0 is the recipe as written."""
    data = dataclasses.replace(recipe.data, seed=recipe.data.seed + 1000 * seed)
    train = dataclasses.replace(recipe.train, seed=recipe.train.seed + seed)
    return dataclasses.replace(recipe, data=data, train=train)


def eval_tokens(spec: EvalSpec) -> int:
    return spec.trials * len(spec.depths) * sum(spec.lengths)


def train_seconds(recipe: SFTRecipe, tokens_per_s: float) -> float:
    return TRAIN_FIXED_S + recipe.train.steps * recipe.train.tokens_per_step / tokens_per_s


PORTS: list[int] = []
"""Process-group ports to use in turn (`--port-base`), else a free one each time."""


def _next_port() -> int:
    from infinitecontext.trainer.parallel import free_port

    return PORTS.pop(0) if PORTS else free_port()


def train_phase(recipe: SFTRecipe) -> dict[str, Any]:
    from infinitecontext.trainer.sft import run_sft

    if "LOCAL_RANK" not in os.environ or os.environ.get("WORLD_SIZE") == "1":
        os.environ["MASTER_PORT"] = str(_next_port())  # a fresh group for each run
    started = time.monotonic()
    result = run_sft(recipe, resume=False)
    train_s = time.monotonic() - started
    return {
        "steps": result.final_step,
        "train_s": round(train_s, 1),
        # padded tokens through the model per second, start-up and export included
        "padded_tokens_per_s": round(result.final_step * recipe.train.tokens_per_step / train_s),
        "final": result.metrics,
        "export_dir": str(result.export_dir),
        "curriculum": [dataclasses.asdict(s) for s in recipe.train.curriculum],
        "seq_len": recipe.train.seq_len,
        "data_seed": recipe.data.seed,
        "init_seed": recipe.train.seed,
    }


def eval_phase(model_dir: Path, spec: EvalSpec, out: Path) -> dict[str, Any]:
    from infinitecontext.trainer.evaluate import run_eval

    result = run_eval(spec, out, model_dir=model_dir)
    return result.to_json()


@dataclasses.dataclass
class Plan:
    """How this process splits its budget (recorded in results.json as `plan`)."""

    rate: float
    """Stage-1 padded tokens/s assumed for this process (shared GPU included)."""
    slowdown: float
    """This process's speed alone on the GPU over its speed here (> 1 when shared)."""
    eval_s_per_token: float
    smoke: bool

    def eval_seconds(self, spec: EvalSpec) -> float:
        return EVAL_FIXED_S + self.eval_s_per_token * eval_tokens(spec)


def make_plan(small_rate: float, concurrent: int, smoke: bool = False) -> Plan:
    """Speeds for a process that shares the GPU with `concurrent - 1` others."""
    slowdown = concurrent / OVERLAP if concurrent > 1 else 1.0
    rate = (small_rate or STAGE1_RATE) / slowdown
    return Plan(rate, slowdown, EVAL_S_PER_TOKEN * slowdown, smoke)


def study_grids(length: int, length2: int, smoke: bool) -> dict[str, EvalSpec]:
    """The evaluation grids: stage 1 (trained to `length`) to 8× without YaRN and at
    2×/4×/8× with zero-shot YaRN; stage 2 (trained to `length2`) to `length2` with 40
    samples a length (8 per length × depth cell), and at 2× and 4× with 10."""
    if smoke:  # a tiny model on a CPU: grids to 1k/2k tokens
        length = 128
    trials = 2 if smoke else 8
    low = 256 if smoke else 1024
    grids = {"stage1_eval": EvalSpec(_lengths(low, 8 * length), DEPTHS, trials)}
    for factor in (2.0, 4.0, 8.0):
        spec = EvalSpec((int(factor * length),), DEPTHS, trials, yarn_factor=factor)
        grids[f"stage1_eval_yarn{factor:g}"] = spec
    grids["stage2_eval"] = EvalSpec(_lengths(low, length2), DEPTHS, trials)
    grids["stage2_eval_long"] = EvalSpec((2 * length2, 4 * length2), DEPTHS, trials=2)
    return grids


def after_stage1_seconds(plan: Plan, stage2: SFTRecipe, grids: list[EvalSpec]) -> float:
    """What follows stage 1 (its evaluations, stage 2 at its full length and stage 2's):
    stage 1 gets the rest of the budget."""
    evals = sum(plan.eval_seconds(g) for g in grids)
    return evals + train_seconds(stage2, plan.rate * STAGE2_RATE_RATIO)


def passkey_phase(
    results: Results,
    budget: Budget,
    small_rate: float,
    use_compile: bool,
    out: Path,
    smoke: bool,
    seed: int = 0,
    concurrent: int = 1,
) -> None:
    plan = make_plan(small_rate, concurrent, smoke)
    base = seeded(recipes.load(REPO / "recipes" / "small-passkey.yaml", SFTRecipe), seed)
    parallel = dataclasses.replace(base.parallel, compile=use_compile)
    base = dataclasses.replace(base, output_dir=str(out / "small-passkey"), parallel=parallel)
    ext = seeded(recipes.load(REPO / "recipes" / "small-yarn.yaml", SFTRecipe), seed)
    ext = dataclasses.replace(ext, output_dir=str(out / "small-yarn"), parallel=parallel)
    if smoke:  # a CPU dry run of the same code path: tiny model, short sequences
        short: dict[str, Any] = dict(tokens_per_step=2048, micro_batch_tokens=1024, seq_len=512)
        fp32 = ParallelSpec(mixed_precision="fp32")
        base = dataclasses.replace(
            base, model=dataclasses.replace(base.model, preset="tiny"), parallel=fp32,
            train=dataclasses.replace(base.train, **short),
        )  # fmt: skip
        ext = dataclasses.replace(
            ext, parallel=fp32, train=dataclasses.replace(ext.train, curriculum=(), **short)
        )
        plan = dataclasses.replace(plan, rate=2000.0)
    results.data["plan"] = dataclasses.asdict(plan) | {"concurrent": concurrent}
    kernels = os.environ.get("ICX_KERNELS", "auto")
    results.data["passkey_training"] = {"compile": use_compile, "kernels": kernels}
    grids = study_grids(base.train.seq_len, ext.train.seq_len, smoke)
    grid1, grid2, long2 = grids["stage1_eval"], grids["stage2_eval"], grids["stage2_eval_long"]
    yarn_grids = {g.yarn_factor: g for g in grids.values() if g.yarn_factor > 1}
    length2 = ext.train.seq_len

    after = after_stage1_seconds(plan, ext, list(grids.values()))
    seconds = 20.0 if smoke else budget.left - after - TRAIN_FIXED_S - SAFETY_S
    stage1 = fit_steps(base, seconds, plan.rate)
    results.data["plan"] |= {"stage1_s": round(seconds), "stage2_and_evals_s": round(after)}
    log.info("seed %d: stage 1 %d steps in ~%.0f s; then ~%.0f s", seed,
             stage1.train.steps, seconds, after)  # fmt: skip
    trained = results.guarded("passkey/stage1_train", lambda: train_phase(stage1))
    if "error" in trained:
        return
    model_dir = Path(trained["export_dir"])
    measured = trained["padded_tokens_per_s"] if not smoke else plan.rate

    def evaluate(name: str, model: Path, spec: EvalSpec, folder: str) -> dict[str, Any]:
        return dict(
            results.guarded(f"passkey/{name}", partial(eval_phase, model, spec, out / folder))
        )

    evaluated = evaluate("stage1_eval", model_dir, grid1, "eval")
    if not smoke and "wall_s" in evaluated and "error" not in evaluated:
        # calibrate the evaluation cost on this GPU share
        per_token = max(0.0, evaluated["wall_s"] - EVAL_FIXED_S) / eval_tokens(grid1)
        plan = dataclasses.replace(plan, eval_s_per_token=max(per_token, 0.5 * EVAL_S_PER_TOKEN))

    ext_rate = measured * STAGE2_RATE_RATIO

    def stage2_need(steps: int) -> float:
        """Seconds for stage 2 with `steps` steps and its ≤ 32k evaluation."""
        part = dataclasses.replace(ext, train=dataclasses.replace(ext.train, steps=steps))
        return train_seconds(part, ext_rate) + plan.eval_seconds(grid2)

    for factor, spec in yarn_grids.items():
        name = f"stage1_eval_yarn{factor:g}"
        reserve = stage2_need(ext.train.steps // 2) + SAFETY_S
        if not smoke and budget.left - plan.eval_seconds(spec) < reserve:
            results.record(f"passkey/{name}", {"skipped": "time budget"})
            continue
        evaluate(name, model_dir, spec, "eval")

    stage2_seconds = budget.left - plan.eval_seconds(grid2) - TRAIN_FIXED_S - SAFETY_S
    # 64k/128k are evaluated if that leaves stage 2 at least 2/3 of its steps
    with_long = stage2_seconds - plan.eval_seconds(long2)
    if with_long * ext_rate >= 2 / 3 * ext.train.steps * ext.train.tokens_per_step:
        stage2_seconds = with_long
    if smoke:
        stage2_seconds = 10.0
    elif stage2_seconds * ext_rate < 20 * ext.train.tokens_per_step:  # not even 20 steps
        results.record("passkey/stage2_train", {"skipped": "time budget"})
        return
    ext = dataclasses.replace(ext, model=dataclasses.replace(ext.model, init_from=str(model_dir)))
    stage2 = fit_steps(ext, stage2_seconds, ext_rate if not smoke else plan.rate)
    results.data["plan"] |= {"stage2_s": round(stage2_seconds), "stage2_rate": round(ext_rate)}
    trained2 = results.guarded("passkey/stage2_train", lambda: train_phase(stage2))
    if "error" in trained2:
        return
    model2 = Path(trained2["export_dir"])
    evaluated2 = evaluate("stage2_eval", model2, grid2, "eval2")
    if budget.left < plan.eval_seconds(long2) + 5:
        results.record("passkey/stage2_eval_long", {"skipped": "time budget"})
    else:
        evaluate("stage2_eval_long", model2, long2, "eval2_long")
    results.data["seconds_left"] = round(budget.left)
    if seed != 0:
        return
    if importlib.util.find_spec("trl") is None:
        results.record("passkey/dpo", {"skipped": "TRL is not importable (no wheels carried)"})
        return
    if budget.left < (45 if smoke else 110):
        results.record("passkey/dpo", {"skipped": "time budget"})
        return
    long_result = results.data["phases"].get("passkey/stage2_eval_long", {})
    merged = {"by_length": evaluated2.get("by_length", {}) | long_result.get("by_length", {})}
    hardest = hardest_length(merged, default=4 * length2)
    results.guarded("passkey/dpo", partial(dpo_phase, model2, hardest, out / "dpo", smoke))


def hardest_length(evaluated: dict[str, Any], default: int) -> int:
    """The shortest length below 90% (where DPO has room to help), else the longest."""
    by_length = {int(k): v for k, v in evaluated.get("by_length", {}).items()}
    below = [n for n, accuracy in sorted(by_length.items()) if accuracy < 0.9]
    return below[0] if below else max(by_length, default=default)


def dpo_phase(model_dir: Path, length: int, out: Path, smoke: bool) -> dict[str, Any]:
    """TRL DPO on the extended model; passkey accuracy before and after at `length`."""
    from infinitecontext.trainer.dpo import run_dpo
    from infinitecontext.trainer.recipe import DataSpec, DPORecipe

    recipe = DPORecipe(
        model_dir=str(model_dir), output_dir=str(out), pairs=16 if smoke else 128,
        length=min(length, 512 if smoke else 16384), rejected="model",
        data=DataSpec(tasks=("passkey",), seed=2), lr=2e-5, steps=4 if smoke else 24,
        batch_size=4, bf16=True,
        evaluation=EvalSpec((length,), DEPTHS, 8 if length <= 32768 else 4),
    )  # fmt: skip
    result = run_dpo(recipe)
    return {
        "length": length,
        "pair_length": recipe.length,
        "before": result["before"],
        "after": result["after"],
        "history": result["history"],
    }


def _lengths(low: int, high: int) -> tuple[int, ...]:
    lengths, n = [], low
    while n <= high:
        lengths.append(n)
        n *= 2
    return tuple(lengths)
