"""Training throughput: ours against transformers' `DeepseekV3ForCausalLM`, same process.

Tokens/s and MFU of whole optimizer steps (gradient accumulation over `micro_batches`
forward/backward passes, then one fused AdamW step, as in training) for `small` at 4k and
`1b` at 8k (also as 2 micro-batches of 2 sequences, variants ending in `_mb2`): ours as
sft.py trains it (FSDP2, bf16 params / fp32 reduce, gradients reduced on the last
micro-batch only, per-block torch.compile; also eager for `small`) against transformers'
model of the same shape and accumulation (fp32 weights under bf16 autocast, SDPA: what HF's
Trainer does with bf16=True). The same models are also timed with one micro-batch per
optimizer step (`accum1`). MFU = tokens/s × training FLOPs per token
(sft.training_flops_per_token) / 989 TFLOP/s (H100 dense bf16). `profile_phase`:
torch.profiler's CUDA kernel times of one 1b@8k step of ours, summed by kind.
Run by `gpu_benchmark` (`--phases throughput,profile`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from infinitecontext.kernels.benchmark_timing import seconds_per_call, sync
from infinitecontext.model import hf
from infinitecontext.model.config import MLAConfig, preset
from infinitecontext.model.transformer import build
from infinitecontext.trainer.benchmark_results import Results, log
from infinitecontext.trainer.parallel import parallelize, set_micro_batch
from infinitecontext.trainer.recipe import ParallelSpec
from infinitecontext.trainer.sft import H100_BF16_DENSE_FLOPS, training_flops_per_token

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
    seconds = seconds_per_call(partial(step, micro_batches), 2, steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    result = _rate(cfg, seq_len, batch * micro_batches, seconds)
    result |= {"micro_batches": micro_batches, "batch": batch, "peak_gib": round(peak, 1)}
    result["accum1"] = _rate(cfg, seq_len, batch, seconds_per_call(partial(step, 1), 1, steps))
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
        sync()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            step(micro)
            sync()
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
    # guarded() also runs the collector: FSDP hooks make the measured model a reference cycle
    value: dict[str, Any] = results.guarded(key, measure)
    log.info("%s: %s", key, {k: v for k, v in value.items() if k != "trace"})
    return value
