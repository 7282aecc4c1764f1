"""GPU benchmark and passkey study (one device lease per call), results as JSON.

    python -m infinitecontext.trainer.bench --out OUT [--budget-s 480] [--smoke]
        [--phases throughput,profile,passkey] [--presets small,1b] [--seed N]
        [--concurrent K] [--port-base P]
    python -m infinitecontext.trainer.bench --merge A.json B.json … --merged OUT.json
    python -m infinitecontext.trainer.bench --report OUT.json --figures DIR

1. Throughput: tokens/s and MFU of whole optimizer steps (gradient accumulation over
   `micro_batches` forward/backward passes, then one AdamW step, as in training) for
   `small` at 4k and `1b` at 8k (the latter also as 2 micro-batches of 2 sequences,
   variants ending in `_mb2`), ours (FSDP2, bf16 params / fp32 reduce, gradients
   reduced on the last micro-batch only, per-block torch.compile; also eager for
   `small`) against transformers' DeepseekV3ForCausalLM of the same shape and the same
   accumulation (fp32 weights under bf16 autocast, SDPA: what HF's Trainer does with
   bf16=True), in the same process. The same models are also timed with one
   micro-batch per optimizer step (`accum1`, the previous runs' step). MFU = tokens/s
   × training FLOPs per token (sft.training_flops_per_token) / 989 TFLOP/s (H100 dense
   bf16). `--presets` limits it to some presets. `profile`: torch.profiler's CUDA kernel
   times of one 1b@8k step of ours, summed by kind (attention, GEMM, fusions, ...).
2. Passkey, one seed per process (`--seed`: data and init seeds differ per seed; two
   processes can share one GPU, `--concurrent 2`): `small` from scratch
   (recipes/small-passkey.yaml, steps cut to fit the budget), evaluated on a length ×
   depth grid without YaRN and with zero-shot YaRN at 2×/4×/8× the training length;
   then the YaRN ×8 extension stage (recipes/small-yarn.yaml, sized by the speed
   measured in stage 1) and its grid to 32k (40 samples a length) and at 64k/128k
   (10 a length); DPO (seed 0, only where TRL is importable).
Every phase is guarded: a failure is recorded and the next phase runs; phases that
would overrun the budget are shortened or skipped and recorded as such. `--merge`
joins the results of several processes (throughput + one file per seed) and
`--report` turns them into tables and heatmaps (also the older single-seed files).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import logging
import math
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
from infinitecontext.trainer.parallel import init_world, parallelize, set_micro_batch
from infinitecontext.trainer.recipe import EvalSpec, ParallelSpec, SFTRecipe
from infinitecontext.trainer.sft import H100_BF16_DENSE_FLOPS, training_flops_per_token

log = logging.getLogger("bench")
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


class Results:
    """results.json, rewritten after every phase so a killed run keeps what it had."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"phases": {}}

    def record(self, name: str, value: Any) -> None:
        self.data["phases"][name] = value
        self.save()

    def save(self) -> None:
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
        if torch.cuda.is_available():
            gc.collect()
            torch.cuda.empty_cache()  # give memory back to a process sharing the GPU
        return value


# ---------------------------------------------------------------- throughput


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _step_time(step: Callable[[], None], warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync()
    return (time.perf_counter() - start) / steps


COMPILED = ParallelSpec(mixed_precision="bf16", compile=True)
"""Ours as the GPU recipes train (recipes/1b-8k.yaml)."""


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def ours_throughput(
    cfg: MLAConfig,
    seq_len: int,
    batch: int,
    micro_batches: int,
    spec: ParallelSpec,
    mesh: Any,
    steps: int,
) -> dict[str, Any]:
    """Our model as sft.py trains it: FSDP2, accumulation with the gradients reduced on
    the last micro-batch only (parallel.set_micro_batch), fused AdamW."""
    step = _ours_step(cfg, seq_len, batch, micro_batches, spec, mesh)
    return _time_both(cfg, seq_len, batch, micro_batches, step, steps)


def _ours_step(
    cfg: MLAConfig, seq_len: int, batch: int, micro_batches: int, spec: ParallelSpec, mesh: Any
) -> Callable[[int], None]:
    device = _device()
    model = build(cfg, seed=0, device=device)
    parallelize(model, spec, mesh)
    world_size = mesh.size()

    def loss(tokens: torch.Tensor) -> torch.Tensor:
        return model(tokens[:, :-1], tokens[:, 1:])[0]  # chunked LM head + cross-entropy

    return _accumulating_step(
        model,
        loss,
        _random_batches(cfg, seq_len, batch, micro_batches, device),
        before_micro_batch=lambda last: set_micro_batch(model, last, world_size),
    )


def hf_throughput(
    cfg: MLAConfig, seq_len: int, batch: int, micro_batches: int, steps: int
) -> dict[str, Any]:
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    device = _device()
    config = DeepseekV3Config(**hf.to_hf_config(cfg, torch.float32))
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = DeepseekV3ForCausalLM(config)

    def loss(tokens: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device, dtype=torch.bfloat16):
            logits = model(tokens[:, :-1]).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())

    batches = _random_batches(cfg, seq_len, batch, micro_batches, device)
    step = _accumulating_step(model, loss, batches)
    return _time_both(cfg, seq_len, batch, micro_batches, step, steps)


def _random_batches(
    cfg: MLAConfig, seq_len: int, batch: int, micro_batches: int, device: str
) -> torch.Tensor:
    """(micro_batches, batch, seq_len + 1) random token ids: inputs and shifted labels."""
    return torch.randint(3, cfg.vocab_size, (micro_batches, batch, seq_len + 1), device=device)


def _accumulating_step(
    model: torch.nn.Module,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    batches: torch.Tensor,
    before_micro_batch: Callable[[bool], None] | None = None,
) -> Callable[[int], None]:
    """step(count): `count` micro-batches of forward with the next-token cross-entropy
    (`loss_of(tokens)`) and backward, then one fused AdamW step; `before_micro_batch(is_last)`
    runs ahead of each micro-batch."""
    fused = batches.is_cuda
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=not fused)

    def step(count: int) -> None:
        for i in range(count):
            if before_micro_batch is not None:
                before_micro_batch(i == count - 1)
            (loss_of(batches[i]) / count).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _time_both(
    cfg: MLAConfig,
    seq_len: int,
    batch: int,
    micro_batches: int,
    step: Callable[[int], None],
    steps: int,
) -> dict[str, Any]:
    """Optimizer steps of `micro_batches` micro-batches (2 warm-up steps: compilation),
    then of one micro-batch (same shapes, nothing recompiles)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    seconds = _step_time(partial(step, micro_batches), 2, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    result = _rate(cfg, seq_len, batch * micro_batches, seconds)
    result |= {"micro_batches": micro_batches, "batch": batch, "peak_gib": round(peak, 1)}
    result["accum1"] = _rate(cfg, seq_len, batch, _step_time(partial(step, 1), 1, steps))
    return result


def _rate(cfg: MLAConfig, seq_len: int, batch: int, seconds: float) -> dict[str, Any]:
    tokens_per_s = batch * seq_len / seconds
    mfu = tokens_per_s * training_flops_per_token(cfg, seq_len) / H100_BF16_DENSE_FLOPS
    return {"step_s": round(seconds, 4), "tokens_per_s": round(tokens_per_s), "mfu": round(mfu, 4)}


def throughput_phase(
    results: Results, mesh: Any, smoke: bool, only: frozenset[str] = frozenset()
) -> tuple[float, bool]:
    """Measure every shape (or the presets in `only`). Returns `small`'s tokens/s and
    whether to compile for the passkey training (compiled must be clearly faster: each new
    curriculum length costs a recompile)."""
    # (preset, sequence length, sequences per micro-batch, micro-batches per step, suffix of
    # the variant names). `1b` is also timed with the same 32k tokens a step as 2
    # micro-batches of 2 sequences: half the gradient accumulations, twice the rows per GEMM.
    shapes = (
        [("tiny", 256, 2, 2, "")]
        if smoke
        else [("small", 4096, 8, 4, ""), ("1b", 8192, 1, 4, ""), ("1b", 8192, 2, 2, "_mb2")]
    )
    if only:
        shapes = [shape for shape in shapes if shape[0] in only]
    steps = 2 if smoke else 4
    rates: dict[str, float] = {}
    for name, seq_len, batch, micro, layout in shapes:
        cfg = preset(name)
        ours = partial(ours_throughput, cfg, seq_len, batch, micro, mesh=mesh, steps=steps)
        variants: dict[str, Callable[[], dict[str, Any]]] = {
            "ours_compiled": partial(ours, COMPILED),
            "hf_deepseek_v3": partial(hf_throughput, cfg, seq_len, batch, micro, steps),
        }
        if name != "1b":
            variants["ours_eager"] = partial(ours, ParallelSpec(mixed_precision="bf16"))
        for variant, measure in variants.items():
            key = f"throughput/{name}@{seq_len}/{variant}{layout}"
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


# Kernel-name patterns of each group in the profile, tried in this order.
KERNEL_GROUPS = (
    ("attention", ("cudnn", "fmha", "flash", "attention")),
    ("gemm", ("gemm", "nvjet", "xmma", "cutlass", "cublas")),
    ("optimizer", ("adam", "multi_tensor")),
    ("cross_entropy", ("log_softmax", "nll_loss", "cross_entropy")),
    ("inductor_fusion", ("triton_",)),
    ("copy_cast", ("copy", "cast", "fill", "cat")),
)


def kernel_group(name: str) -> str:
    lowered = name.lower()
    for group, patterns in KERNEL_GROUPS:
        if any(p in lowered for p in patterns):
            return group
    return "other"


def profile_phase(results: Results, mesh: Any, smoke: bool) -> None:
    """Where one accumulating step of ours at the 1b@8k shape spends its GPU time:
    torch.profiler's CUDA kernels summed by group (KERNEL_GROUPS) and the top 25."""
    name, seq_len, batch, micro = ("tiny", 256, 2, 2) if smoke else ("1b", 8192, 1, 4)

    def measure() -> dict[str, Any]:
        step = _ours_step(preset(name), seq_len, batch, micro, COMPILED, mesh)
        for _ in range(2):
            step(micro)
        _sync()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            step(micro)
            _sync()
        kernels = [
            (e.key, e.self_device_time_total / 1e3, e.count)
            for e in prof.key_averages()
            if e.device_type == torch.autograd.DeviceType.CUDA and e.self_device_time_total > 0
        ]
        kernels.sort(key=lambda k: -k[1])
        groups: dict[str, float] = {}
        for key, ms, _ in kernels:
            group = kernel_group(key)
            groups[group] = groups.get(group, 0.0) + ms
        return {
            "shape": f"{name}@{seq_len}, {micro} micro-batches of {batch}",
            "gpu_ms_by_group": {k: round(v, 2) for k, v in sorted(groups.items())},
            "gpu_ms_total": round(sum(groups.values()), 2),
            "top_kernels": [
                {"kernel": key[:160], "ms": round(ms, 3), "calls": count}
                for key, ms, count in kernels[:25]
            ],
        }

    _measure(results, f"profile/{name}@{seq_len}/ours_compiled", measure)


def _measure(results: Results, key: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    value: dict[str, Any] = results.guarded(key, measure)
    gc.collect()  # FSDP hooks make the measured model a reference cycle
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("%s: %s", key, {k: v for k, v in value.items() if k != "trace"})
    return value


# ---------------------------------------------------------------- passkey


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


# ---------------------------------------------------------------- merge and report


def normalize(data: dict[str, Any]) -> dict[str, Any]:
    """Any results.json as {"device", "torch", "phases" (throughput), "seeds": {seed:
    {"phases" (passkey), "plan", …}}}: merged files already are; a single process's file
    (the older single-seed ones included) holds its passkey phases for its `seed` (0)."""
    if "seeds" in data:
        return data
    phases = data.get("phases", {})
    passkey = {k: v for k, v in phases.items() if k.startswith("passkey/")}
    seeds: dict[str, Any] = {}
    if passkey:
        extra = {k: data[k] for k in ("plan", "passkey_training", "seconds_left") if k in data}
        seeds[str(data.get("seed", 0))] = {"phases": passkey} | extra
    return {
        "device": data.get("device"),
        "torch": data.get("torch"),
        "phases": {k: v for k, v in phases.items() if not k.startswith("passkey/")},
        "seeds": seeds,
    } | ({"passkey_training": data["passkey_training"]} if "passkey_training" in data else {})


def merge(files: list[Path]) -> dict[str, Any]:
    """One results document from several processes' (throughput, seed 0, seed 1 …)."""
    merged: dict[str, Any] = {"device": None, "torch": None, "phases": {}, "seeds": {}}
    for file in files:
        data = normalize(json.loads(file.read_text()))
        if data.get("device") not in (None, "cpu") or merged["device"] is None:
            merged["device"], merged["torch"] = data.get("device"), data.get("torch")
        merged["phases"] |= data.get("phases", {})
        merged["seeds"] |= data.get("seeds", {})
        if "passkey_training" in data and data["phases"]:
            merged["passkey_training"] = data["passkey_training"]
    merged["seeds"] = dict(sorted(merged["seeds"].items(), key=lambda kv: int(kv[0])))
    return merged


def _grid(value: dict[str, Any]) -> Any:
    from infinitecontext.trainer.evaluate import GridResult

    fields = ("task", "target", "yarn_factor", "lengths", "depths", "accuracy", "trials")
    return GridResult(
        **{f: value[f] for f in fields},
        errors={int(k): v for k, v in value.get("errors", {}).items()},
    )


def _k(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def _pct(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{100 * value:.0f}%"


def throughput_lines(phases: dict[str, Any]) -> list[str]:
    lines = [
        "| shape | variant | tokens/step | tokens/s | MFU | step (s) | peak GiB "
        "| 1 micro-batch/step: tokens/s (MFU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best: dict[str, dict[str, float]] = {}
    for key, value in phases.items():
        if not key.startswith("throughput/") or "tokens_per_s" not in value:
            continue
        _, shape, variant = key.split("/")
        seq_len = int(shape.split("@")[1])
        micro, batch = value.get("micro_batches", 1), value.get("batch")
        tokens = f"{micro} × {batch} × {seq_len}" if batch else "1 step"
        one = value.get("accum1")
        single = f"{one['tokens_per_s']:,} ({100 * one['mfu']:.1f}%)" if one else "—"
        lines.append(
            f"| {shape} | {variant} | {tokens} | {value['tokens_per_s']:,} "
            f"| {100 * value['mfu']:.1f}% | {value['step_s']} | {value['peak_gib']} | {single} |"
        )
        side = "hf" if variant.startswith("hf") else "ours"
        layout = f" ({micro} × {batch})" if batch else ""
        for group in (shape, shape + layout):  # the best of any layout, and each layout
            sides = best.setdefault(group, {})
            sides[side] = max(sides.get(side, 0.0), float(value["tokens_per_s"]))
    lines.append("")
    for group, sides in best.items():
        if "hf" in sides and "ours" in sides:
            lines.append(f"{group}: ours / transformers = {sides['ours'] / sides['hf']:.2f}×")
    lines.append("")
    return lines


def seed_lines(seed: str, phases: dict[str, Any], figures: Path, suffix: str) -> list[str]:
    from infinitecontext.trainer.evaluate import plot_heatmap

    lines = [f"### seed {seed}", ""]
    for key, value in phases.items():
        name = key.split("/", 1)[1]
        if "skipped" in value or "error" in value:
            why = value.get("skipped") or value["error"].splitlines()[0][:200]
            lines += [f"{name}: not run ({why})", ""]
        elif "accuracy" in value:
            grid = _grid(value)
            plot_heatmap(grid, figures / f"{name}{suffix}.png")
            lines.append(
                f"**{name}** (YaRN ×{grid.yarn_factor:g}, {grid.trials} trials × "
                f"{len(grid.depths)} depths per length, {value.get('wall_s', '?')} s)"
            )
            lines.append("")
            lines.append("| " + " | ".join(_k(n) for n in grid.lengths) + " |")
            lines.append("|" + "---|" * len(grid.lengths))
            by_length = grid.by_length
            lines.append("| " + " | ".join(_pct(by_length.get(n)) for n in grid.lengths) + " |")
            lines.append("")
        elif name == "dpo" and value.get("before"):
            before, after = value["before"]["mean"], value["after"]["mean"]
            margins = [h.get("rewards/margins", float("nan")) for h in value["history"]]
            lines.append(
                f"DPO ({len(value['history'])} steps, pairs of {value['pair_length']} tokens): "
                f"passkey at {value['length']} tokens {100 * before:.1f}% before, "
                f"{100 * after:.1f}% after; reward margin {margins[0]:.3f} → {margins[-1]:.3f}"
            )
            lines.append("")
        elif name.endswith("_train") and "steps" in value:
            loss = value["final"].get("loss", float("nan"))
            seeds = f", data seed {value['data_seed']}" if "data_seed" in value else ""
            lines.append(f"{name}: {value['steps']} steps in {value['train_s']} s{seeds}, "
                         f"final loss {loss:.4f}")  # fmt: skip
            lines.append("")
    return lines


SUMMARY_TABLES = {
    "stage1_eval": "stage 1, no YaRN",
    "stage1_eval_yarn": "stage 1, YaRN at eval only (×2/×4/×8)",
    "stage2_eval": "stage 2 (YaRN ×8 fine-tune)",
    "stage2_eval_long": "stage 2 (YaRN ×8 fine-tune)",
}


def summary_lines(seeds: dict[str, Any]) -> list[str]:
    """Per-seed accuracy by length (stage 1 with and without YaRN, stage 2) and the
    issue's targets over all seeds."""
    rows: dict[str, dict[str, dict[int, float]]] = {}
    for seed, entry in seeds.items():
        for key, value in entry["phases"].items():
            if "accuracy" not in value:
                continue
            name = key.split("/", 1)[1]
            table = SUMMARY_TABLES.get(name.rstrip("0123456789"), name)
            rows.setdefault(table, {}).setdefault(seed, {}).update(_grid(value).by_length)
    if not rows:
        return []
    lines = ["### passkey accuracy by length, per seed", ""]
    for table, by_seed in rows.items():
        lengths = sorted({n for acc in by_seed.values() for n in acc})
        lines.append(f"| {table} | " + " | ".join(_k(n) for n in lengths) + " |")
        lines.append("|---|" + "---|" * len(lengths))
        for seed, acc in by_seed.items():
            lines.append(f"| seed {seed} | " + " | ".join(_pct(acc.get(n)) for n in lengths) + " |")
        if len(by_seed) > 1:
            mean = [_mean([acc[n] for acc in by_seed.values() if n in acc]) for n in lengths]
            lines.append("| mean | " + " | ".join(_pct(m) for m in mean) + " |")
        lines.append("")
    final = rows.get(SUMMARY_TABLES["stage2_eval"], {})
    if final:
        short = [a for acc in final.values() for n, a in acc.items() if n <= 4096]
        at32 = [acc[32768] for acc in final.values() if 32768 in acc]
        lines.append(f"targets over {len(final)} seed(s): ≥ 95% up to 4k: "
                     f"{_verdict(short, 0.95)}; ≥ 90% at 32k: {_verdict(at32, 0.90)}")  # fmt: skip
        for n in (65536, 131072):
            values = [acc[n] for acc in final.values() if n in acc]
            if values:
                lines.append(f"{_k(n)}: " + ", ".join(_pct(v) for v in values) + " (aim 90%)")
        lines.append("")
    return lines


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _verdict(values: list[float], target: float) -> str:
    if not values:
        return "not measured"
    return f"{'met' if min(values) >= target else 'NOT met'} (lowest {_pct(min(values))})"


def report(results_file: Path, figures: Path) -> str:
    """Markdown tables (throughput, per-seed passkey grids, cross-seed summary) and a
    heatmap per evaluated grid (`<grid>_seed<N>.png` when there are several seeds)."""
    data = normalize(json.loads(results_file.read_text()))
    lines = [f"device: {data.get('device')}, torch {data.get('torch')}", ""]
    lines += throughput_lines(data.get("phases", {}))
    seeds = data.get("seeds", {})
    for seed, entry in seeds.items():
        suffix = f"_seed{seed}" if len(seeds) > 1 else ""
        lines += seed_lines(seed, entry["phases"], figures, suffix)
        walls = ", ".join(
            f"{k.split('/', 1)[1]} {v['wall_s']}" for k, v in entry["phases"].items()
            if "wall_s" in v
        )  # fmt: skip
        lines += [f"wall (s): {walls}", ""] if walls else []
    if seeds:
        lines += summary_lines(seeds)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--report", type=Path, help="results.json to turn into figures/tables")
    parser.add_argument("--figures", type=Path, default=Path("docs/bench/trainer"))
    parser.add_argument("--merge", type=Path, nargs="+", help="results.json files to join")
    parser.add_argument("--merged", type=Path, help="where --merge writes the joined file")
    parser.add_argument("--budget-s", type=float, default=480)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, for a CPU dry run")
    parser.add_argument("--phases", default="throughput,passkey")
    parser.add_argument("--skip-throughput", action="store_true", help="= --phases passkey")
    parser.add_argument("--presets", default="", help="throughput: only these presets (a,b)")
    parser.add_argument("--seed", type=int, default=0, help="passkey study seed")
    parser.add_argument("--concurrent", type=int, default=1, help="processes sharing the GPU")
    parser.add_argument("--port-base", type=int, default=0, help="process-group ports from here")
    args = parser.parse_args()
    if args.merge:
        if args.merged is None:
            parser.error("--merge needs --merged")
        args.merged.write_text(json.dumps(merge(args.merge), indent=2, default=str) + "\n")
        return
    if args.report:
        print(report(args.report, args.figures))
        return
    if args.out is None:
        parser.error("--out is required")
    phases = set(args.phases.split(",")) - ({"throughput"} if args.skip_throughput else set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    PORTS[:] = range(args.port_base, args.port_base + 50) if args.port_base else []
    budget = Budget(args.budget_s)
    args.out.mkdir(parents=True, exist_ok=True)
    results = Results(args.out / "results.json")
    results.data["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results.data["torch"] = torch.__version__
    results.data["seed"] = args.seed
    results.save()
    small_rate, use_compile = 0.0, False
    if phases & {"throughput", "profile"} and (torch.cuda.is_available() or args.smoke):
        world = init_world()
        if "throughput" in phases:
            only = frozenset(filter(None, args.presets.split(",")))
            small_rate, use_compile = throughput_phase(results, world.mesh, args.smoke, only)
        if "profile" in phases:
            profile_phase(results, world.mesh, args.smoke)
        torch.distributed.destroy_process_group()
    if "passkey" in phases:
        passkey_phase(
            results, budget, small_rate, use_compile, args.out, args.smoke,
            args.seed, args.concurrent,
        )  # fmt: skip
    log.info("done; %.0f s of budget left", budget.left)


if __name__ == "__main__":
    main()
