"""GPU benchmark and passkey study in one script (one device lease), results as JSON.

    python -m infinitecontext.trainer.bench --out OUT [--budget-s 500] [--smoke]

1. Throughput: tokens/s and MFU of one training step (forward, backward, AdamW) for
   `small` at 4k and `1b` at 8k, ours (FSDP2, bf16 params / fp32 reduce, per-block
   torch.compile; also eager for `small`) against transformers' DeepseekV3ForCausalLM of
   the same shape (fp32 weights under bf16 autocast, SDPA: what HF's Trainer does
   with bf16=True), in the same process. MFU = tokens/s × training FLOPs per token
   (sft.training_flops_per_token) / 989 TFLOP/s (H100 dense bf16).
2. Passkey: `small` from scratch (recipes/small-passkey.yaml, steps cut to fit the
   budget at the measured speed), evaluated on a length × depth grid without YaRN and
   with zero-shot YaRN at 2×/4×/8× the training length; then the YaRN ×8 extension
   stage (recipes/small-yarn.yaml) and the grid up to 128k.
Every phase is guarded: a failure is recorded and the next phase runs; phases that
would overrun the budget are skipped and recorded as such.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from infinitecontext.model import hf
from infinitecontext.model.config import MLAConfig, preset
from infinitecontext.model.transformer import build
from infinitecontext.trainer import recipe as recipes
from infinitecontext.trainer.parallel import init_world, parallelize
from infinitecontext.trainer.recipe import EvalSpec, ParallelSpec, SFTRecipe
from infinitecontext.trainer.sft import H100_BF16_DENSE_FLOPS, training_flops_per_token

log = logging.getLogger("bench")
REPO = Path(__file__).resolve().parents[1]


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    @property
    def left(self) -> float:
        return self.deadline - time.monotonic()


class Results:
    """results.json, rewritten after every phase so a killed run keeps what it had."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"phases": {}}

    def record(self, name: str, value: Any) -> None:
        self.data["phases"][name] = value
        self.path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")

    def guarded(self, name: str, phase: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            value = phase()
        except Exception as err:
            log.error("%s failed: %s", name, err)
            value = {
                "error": f"{type(err).__name__}: {err}",
                "trace": traceback.format_exc()[-2000:],
            }
        if isinstance(value, dict):
            value["wall_s"] = round(time.monotonic() - started, 1)
        self.record(name, value)
        return value


def _step_time(step: Callable[[], None], warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def ours_throughput(
    cfg: MLAConfig, seq_len: int, batch: int, compile_blocks: bool, mesh: Any, steps: int
) -> dict[str, Any]:
    model = build(cfg, seed=0, device="cuda")
    parallelize(model, ParallelSpec(mixed_precision="bf16", compile=compile_blocks), mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(3, cfg.vocab_size, (batch, seq_len + 1), device="cuda")

    def step() -> None:
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = _step_time(step, 2, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return _rate(cfg, seq_len, batch, seconds) | {"peak_gib": round(peak, 1)}


def hf_throughput(cfg: MLAConfig, seq_len: int, batch: int, steps: int) -> dict[str, Any]:
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    config = DeepseekV3Config(**hf.to_hf_config(cfg, torch.float32))
    config._attn_implementation = "sdpa"
    with torch.device("cuda"):
        model = DeepseekV3ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(3, cfg.vocab_size, (batch, seq_len + 1), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids[:, :-1]).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    seconds = _step_time(step, 2, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return _rate(cfg, seq_len, batch, seconds) | {"peak_gib": round(peak, 1)}


def _rate(cfg: MLAConfig, seq_len: int, batch: int, seconds: float) -> dict[str, Any]:
    tokens_per_s = batch * seq_len / seconds
    mfu = tokens_per_s * training_flops_per_token(cfg, seq_len) / H100_BF16_DENSE_FLOPS
    return {"step_s": round(seconds, 4), "tokens_per_s": round(tokens_per_s), "mfu": round(mfu, 4)}


def throughput_phase(results: Results, mesh: Any, smoke: bool) -> tuple[float, bool]:
    """Measure every shape. Returns `small`'s tokens/s and whether to compile for the
    passkey training (compiled must be clearly faster: each new curriculum length costs
    a recompile)."""
    shapes = [("tiny", 256, 2)] if smoke else [("small", 4096, 8), ("1b", 8192, 1)]
    steps = 2 if smoke else 6
    rates: dict[str, float] = {}
    for name, seq_len, batch in shapes:
        cfg = preset(name)
        variants: dict[str, Callable[[], dict[str, Any]]] = {
            "ours_compiled": partial(ours_throughput, cfg, seq_len, batch, True, mesh, steps),
            "hf_deepseek_v3": partial(hf_throughput, cfg, seq_len, batch, steps),
        }
        if name != "1b":
            variants["ours_eager"] = partial(
                ours_throughput, cfg, seq_len, batch, False, mesh, steps
            )
        for variant, measure in variants.items():
            key = f"throughput/{name}@{seq_len}/{variant}"
            value = _measure(results, key, measure)
            if "error" in value and variant == "ours_compiled":
                # Triton kernels inside compiled blocks may not trace: retry on the reference ops.
                os.environ["ICX_KERNELS"] = "reference"
                value = _measure(results, key + "_reference_kernels", measure)
            if name != "1b" and "tokens_per_s" in value:
                rates[variant] = float(value["tokens_per_s"])
    compiled, eager = rates.get("ours_compiled", 0.0), rates.get("ours_eager", 0.0)
    use_compile = compiled > 1.3 * eager
    results.data["passkey_training"] = {
        "compile": use_compile,
        "kernels": os.environ.get("ICX_KERNELS", "auto"),
    }
    return (compiled if use_compile else eager), use_compile


def _measure(results: Results, key: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    torch.cuda.reset_peak_memory_stats()
    value: dict[str, Any] = results.guarded(key, measure)
    gc.collect()  # FSDP hooks make the measured model a reference cycle
    torch.cuda.empty_cache()
    log.info("%s: %s", key, {k: v for k, v in value.items() if k != "trace"})
    return value


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


def train_phase(recipe: SFTRecipe) -> dict[str, Any]:
    from infinitecontext.trainer.parallel import free_port
    from infinitecontext.trainer.sft import run_sft

    if "LOCAL_RANK" not in os.environ or os.environ.get("WORLD_SIZE") == "1":
        os.environ["MASTER_PORT"] = str(free_port())  # a fresh group for each run
    started = time.monotonic()
    result = run_sft(recipe, resume=False)
    return {
        "steps": result.final_step,
        "train_s": round(time.monotonic() - started, 1),
        "final": result.metrics,
        "export_dir": str(result.export_dir),
        "curriculum": [dataclasses.asdict(s) for s in recipe.train.curriculum],
        "seq_len": recipe.train.seq_len,
    }


def eval_phase(model_dir: Path, spec: EvalSpec, out: Path) -> dict[str, Any]:
    from infinitecontext.trainer.evaluate import run_eval

    result = run_eval(spec, out, model_dir=model_dir)
    return result.to_json()


def passkey_phase(
    results: Results, budget: Budget, small_rate: float, use_compile: bool, out: Path, smoke: bool
) -> None:
    base = recipes.load(REPO / "recipes" / "small-passkey.yaml", SFTRecipe)
    parallel = dataclasses.replace(base.parallel, compile=use_compile)
    base = dataclasses.replace(base, output_dir=str(out / "small-passkey"), parallel=parallel)
    if smoke:  # a CPU dry run of the same code path: tiny model, short sequences
        base = dataclasses.replace(
            base,
            model=dataclasses.replace(base.model, preset="tiny"),
            parallel=ParallelSpec(mixed_precision="fp32"),
            train=dataclasses.replace(
                base.train, tokens_per_step=2048, micro_batch_tokens=2048, seq_len=512
            ),
        )
        small_rate = 2000.0
    seconds = 20.0 if smoke else min(200.0, 0.4 * budget.left)
    stage1 = fit_steps(base, seconds, small_rate or 300_000)
    trained = results.guarded("passkey/stage1_train", lambda: train_phase(stage1))
    if "error" in trained:
        return
    model_dir = Path(trained["export_dir"])
    length = stage1.train.seq_len
    trials = 2 if smoke else 8
    depths = (0.0, 0.25, 0.5, 0.75, 1.0)
    grid = EvalSpec(lengths=_lengths(1024, 8 * length), depths=depths, trials=trials)
    results.guarded("passkey/stage1_eval", lambda: eval_phase(model_dir, grid, out / "eval"))
    for factor in (2.0, 4.0, 8.0):
        if budget.left < 0.35 * seconds:
            results.record(f"passkey/stage1_eval_yarn{factor:g}", {"skipped": "time budget"})
            continue
        spec = EvalSpec(
            lengths=(int(factor * length),), depths=depths, trials=trials, yarn_factor=factor
        )
        phase = partial(eval_phase, model_dir, spec, out / "eval")
        results.guarded(f"passkey/stage1_eval_yarn{factor:g}", phase)
    if budget.left < 70:
        results.record("passkey/stage2", {"skipped": "time budget"})
        return
    ext = recipes.load(REPO / "recipes" / "small-yarn.yaml", SFTRecipe)
    ext = dataclasses.replace(
        ext, output_dir=str(out / "small-yarn"), parallel=parallel,
        model=dataclasses.replace(ext.model, init_from=str(model_dir)),
    )  # fmt: skip
    if smoke:
        short = dataclasses.replace(
            ext.train, seq_len=512, curriculum=(), tokens_per_step=2048, micro_batch_tokens=2048
        )
        ext = dataclasses.replace(ext, parallel=ParallelSpec(mixed_precision="fp32"), train=short)
    seconds2 = 10.0 if smoke else min(80.0, 0.35 * budget.left)
    stage2 = fit_steps(ext, seconds2, (small_rate or 300_000) * 0.6)
    trained2 = results.guarded("passkey/stage2_train", lambda: train_phase(stage2))
    if "error" in trained2:
        return
    model2 = Path(trained2["export_dir"])
    top = 4 * stage2.train.seq_len if smoke else 131072
    spec2 = EvalSpec(lengths=_lengths(1024, top), depths=depths, trials=max(2, trials // 2))
    evaluated = results.guarded(
        "passkey/stage2_eval", lambda: eval_phase(model2, spec2, out / "eval2")
    )
    if budget.left < 45:
        results.record("passkey/dpo", {"skipped": "time budget"})
        return
    hardest = hardest_length(evaluated, default=4 * stage2.train.seq_len)
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
        evaluation=EvalSpec((length,), (0.0, 0.25, 0.5, 0.75, 1.0), 8 if length <= 32768 else 4),
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


def report(results_file: Path, figures: Path) -> str:
    """Heatmaps for every evaluated grid and markdown tables, from a results.json."""
    from infinitecontext.trainer.evaluate import GridResult, plot_heatmap

    data = json.loads(results_file.read_text())
    lines = [f"device: {data.get('device')}, torch {data.get('torch')}", ""]
    lines += [
        "| shape | variant | tokens/s | MFU | step (s) | peak GiB |",
        "|---|---|---|---|---|---|",
    ]
    for key, value in data["phases"].items():
        if key.startswith("throughput/") and "tokens_per_s" in value:
            _, shape, variant = key.split("/")
            lines.append(
                f"| {shape} | {variant} | {value['tokens_per_s']:,} | {100 * value['mfu']:.1f}% "
                f"| {value['step_s']} | {value['peak_gib']} |"
            )
    lines.append("")
    for key, value in data["phases"].items():
        if key.startswith("passkey/") and "accuracy" in value:
            fields = ("task", "target", "yarn_factor", "lengths", "depths", "accuracy", "trials")
            grid = GridResult(
                **{f: value[f] for f in fields},
                errors={int(k): v for k, v in value.get("errors", {}).items()},
            )
            name = key.split("/")[1]
            plot_heatmap(grid, figures / f"{name}.png")
            row = " | ".join(
                f"{100 * grid.by_length.get(n, float('nan')):.0f}%" for n in grid.lengths
            )
            lines.append(
                f"**{name}** (YaRN ×{grid.yarn_factor:g}, {grid.trials} trials × "
                f"{len(grid.depths)} depths per length)"
            )
            lines.append("")
            lines.append("| " + " | ".join(str(n) for n in grid.lengths) + " |")
            lines.append("|" + "---|" * len(grid.lengths))
            lines.append(f"| {row} |")
            lines.append("")
        elif key == "passkey/dpo" and value.get("before"):
            before, after = value["before"]["mean"], value["after"]["mean"]
            margins = [h.get("rewards/margins", float("nan")) for h in value["history"]]
            lines.append(
                f"DPO ({len(value['history'])} steps, pairs of {value['pair_length']} tokens): "
                f"passkey at {value['length']} tokens {100 * before:.1f}% before, "
                f"{100 * after:.1f}% after; reward margin {margins[0]:.3f} → {margins[-1]:.3f}"
            )
            lines.append("")
        elif key.startswith("passkey/") and key.endswith("_train") and "steps" in value:
            lines.append(f"{key}: {value['steps']} steps in {value['train_s']} s, final "
                         f"loss {value['final'].get('loss', float('nan')):.4f}")  # fmt: skip
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", type=Path, help="results.json to turn into figures/tables")
    parser.add_argument("--figures", type=Path, default=Path("docs/bench/trainer"))
    parser.add_argument("--budget-s", type=float, default=480)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, for a CPU dry run")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    if args.report:
        print(report(args.report, args.figures))
        return
    if args.out is None:
        parser.error("--out is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "results.json")
    results.data["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results.data["torch"] = torch.__version__
    small_rate, use_compile = 0.0, False
    if torch.cuda.is_available() and not args.skip_throughput:
        world = init_world()
        small_rate, use_compile = throughput_phase(results, world.mesh, args.smoke)
        torch.distributed.destroy_process_group()
    passkey_phase(results, budget, small_rate, use_compile, args.out, args.smoke)
    log.info("done; %.0f s of budget left", budget.left)


if __name__ == "__main__":
    main()
