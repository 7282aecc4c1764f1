"""Decode benchmark of the `1b` preset: `python -m infinitecontext.model.decode_benchmark`.

Tokens/s of one decode step (random weights and cache, bf16, batch × 1 new token at a full
context) captured in a CUDA graph (`graphs.CudaGraphDecoder`) and replayed, with the Triton
MLA kernels and with the PyTorch reference (`ICX_KERNELS=reference`) in the same graph; the
same step eagerly, for comparison; peak GPU memory at batch 1 up to 1M tokens. Writes
DIR/decode.json and prints the table. Timing helpers: `kernels/benchmark_timing.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch

from infinitecontext.kernels.benchmark_timing import (
    GiB,
    L2Flusher,
    environment,
    event_times,
    release,
)
from infinitecontext.kernels.roofline import measure_bandwidth
from infinitecontext.model.config import preset
from infinitecontext.model.graphs import CudaGraphDecoder
from infinitecontext.model.memory import mla_bytes_per_token
from infinitecontext.model.transformer import build

K = 1024
REPLAYS = 30
EAGER_STEPS = 10
MEMORY_CONTEXTS = (128 * K, 1024 * K)
SLACK_BYTES = 2 * GiB
"""Logits, MLA partials, cuBLAS workspaces and the allocator's rounding, on top of the cache."""


def time_decode(
    contexts: list[int],
    batches: list[int],
    replays: int = REPLAYS,
    memory_contexts: tuple[int, ...] = MEMORY_CONTEXTS,
) -> dict[str, Any]:
    """Decode tokens/s of the 1b preset (random weights and cache, bf16) and peak memory.

    Each shape's decode step (batch × 1 new token at position context − 1, so it attends to
    exactly `context` cache entries) is captured in a CUDA graph (`CudaGraphDecoder`) and
    replayed: tokens/s = batch / median replay time. Both backends are captured; captured,
    the reference MLA decode gathers up to the cache's capacity instead of reading
    lengths.max() on the host (`gather_latent`), and the capacity equals the context here
    (same work). The same step is also timed eagerly for comparison. Shapes whose cache and
    temporaries would not fit are skipped with the reason. Peak memory: batch 1, Triton,
    weights + cache + captured step.
    """
    started = time.perf_counter()
    cfg = preset("1b")
    model = build(cfg, seed=0, device="cuda").to(torch.bfloat16).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    release()
    result: dict[str, Any] = {
        "preset": "1b",
        "dtype": "bfloat16",
        "weights_GiB": weights / GiB,
        "method": (
            f"CUDA graph of one decode step, median of {replays} replays after warm-up, "
            "CUDA events around each replay, no L2 flush (as in a decode loop); "
            f"eager: median of {EAGER_STEPS} model.decode calls"
        ),
        "decode": [],
        "memory": [],
    }
    for backend in ("triton", "reference"):
        for batch in batches:
            for ctx in contexts:
                entry: dict[str, Any] = {"backend": backend, "batch": batch, "context": ctx}
                free, _ = torch.cuda.mem_get_info()
                skip = skip_reason(bytes_needed(cfg, batch, ctx, backend), free)
                if skip:
                    entry["status"] = skip
                else:
                    try:
                        entry.update(_decode_tokens_per_s(model, batch, ctx, backend, replays))
                    except torch.OutOfMemoryError:
                        entry["status"] = "OOM"
                    release()
                result["decode"].append(entry)
                print(f"e2e {json.dumps(entry)}", flush=True)
    for ctx in memory_contexts:
        release()
        torch.cuda.reset_peak_memory_stats()
        entry = {"backend": "triton", "batch": 1, "context": ctx}
        free, _ = torch.cuda.mem_get_info()
        skip = skip_reason(bytes_needed(cfg, 1, ctx, "triton"), free)
        if skip:
            entry["status"] = skip
        else:
            try:
                timing = _decode_tokens_per_s(model, 1, ctx, "triton", replays, eager_steps=0)
                entry.update(
                    peak_GiB=torch.cuda.max_memory_allocated() / GiB,
                    weights_GiB=weights / GiB,
                    cache_GiB=ctx * mla_bytes_per_token(cfg, 2) / GiB,
                    tokens_per_s=timing.get("tokens_per_s"),
                    status=timing["status"],
                )
            except torch.OutOfMemoryError:
                entry["status"] = "OOM"
        result["memory"].append(entry)
        print(f"e2e memory {json.dumps(entry)}", flush=True)
    del model
    release()
    result["wall_s"] = time.perf_counter() - started
    print(table(result), flush=True)
    return result


@torch.no_grad()
def _decode_tokens_per_s(
    model: Any,
    batch: int,
    ctx: int,
    backend: str,
    replays: int = REPLAYS,
    eager_steps: int = EAGER_STEPS,
) -> dict[str, Any]:
    """Graph-replay (and eager) times of one decode step at a full context of `ctx` tokens."""
    cache = model.new_cache(batch, ctx)  # capacity = context: both MLA paths read it all
    for layer in range(cache.latent.shape[0]):
        cache.latent[layer].normal_()  # never time on zeros
    gen = torch.Generator(device="cuda").manual_seed(batch * 7919 + ctx)
    ids = torch.randint(0, int(model.config.vocab_size), (batch, 1), device="cuda", generator=gen)
    positions = torch.full((batch, 1), ctx - 1, dtype=torch.long, device="cuda")
    row: dict[str, Any] = {}
    with _kernels(backend):
        decoder = CudaGraphDecoder(model, cache, capture=True, warmup=3)
        try:
            decoder(ids, positions)  # warm-up, capture, one replay
            times = _time_steps(decoder.step, replays)
            back_to_back = _time_back_to_back(decoder.step, replays)
            bounded = backend == "reference"
            how = "graph (reference MLA bounded by capacity)" if bounded else "graph"
            row.update(_step_stats(batch, times), status=how, back_to_back_ms=back_to_back)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # record it, still time the eager step
            row["status"] = f"capture failed: {type(exc).__name__}: {exc}"[:300]
        decoder.reset()
        del decoder
        release()
        if eager_steps:
            eager = partial(model.decode, ids, cache, positions)
            row["eager"] = _step_stats(batch, _time_steps(eager, eager_steps, warmup=2))
    del cache
    return row


@contextlib.contextmanager
def _kernels(backend: str) -> Iterator[None]:
    """ICX_KERNELS=backend inside the block, the previous value after."""
    before = os.environ.get("ICX_KERNELS")
    os.environ["ICX_KERNELS"] = backend
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ICX_KERNELS", None)
        else:
            os.environ["ICX_KERNELS"] = before


def _time_steps(step: Callable[[], Any], reps: int, warmup: int = 3) -> list[float]:
    """Milliseconds of each of `reps` calls, between CUDA events, after `warmup` calls."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    return event_times(step, reps)


def _time_back_to_back(step: Callable[[], Any], reps: int) -> float:
    """Milliseconds per call of `reps` calls queued back to back (no host wait between)."""
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


def _step_stats(batch: int, times_ms: list[float]) -> dict[str, Any]:
    """Median step time, its spread and tokens/s = batch / median step time."""
    ordered = sorted(times_ms)
    n = len(ordered)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
    return {
        "steps": n,
        "step_ms": median,
        "p20_ms": ordered[int(0.2 * (n - 1))],
        "p80_ms": ordered[math.ceil(0.8 * (n - 1))],
        "tokens_per_s": batch / (median / 1e3),
    }


def bytes_needed(cfg: Any, batch: int, ctx: int, backend: str) -> int:
    """GPU memory a shape needs beyond the weights: the bf16 cache, the step's temporaries.

    The reference gathers one layer's cache to fp32 (576 × 4 B per token), masks a copy of
    it and einsums over slices of that (≈ 3 fp32 copies), plus fp32 scores per head (≈ 4);
    the eager warm-up and the graph's pool each hold one layer's worth.
    """
    need = batch * ctx * mla_bytes_per_token(cfg, 2) + SLACK_BYTES
    if backend == "reference":
        per_token = 3 * cfg.latent_dim * 4 + 4 * cfg.num_attention_heads * 4
        need += 2 * batch * ctx * per_token
    return need


def skip_reason(need: int, free: int, margin: float = 0.9) -> str | None:
    if need <= margin * free:
        return None
    return f"skipped: needs {need / GiB:.1f} GiB, {free / GiB:.1f} GiB free"


def table(result: dict[str, Any]) -> str:
    """The end-to-end decode rows and the memory rows as text."""
    head = (
        f"{'backend':>9} {'B':>2} {'ctx':>8} | {'graph ms':>8} {'p20-p80 ms':>15} {'tok/s':>8}"
        f" {'b2b ms':>7} | {'eager ms':>8} {'tok/s':>8} | status"
    )
    lines = ["end to end, 1b preset, bf16", head, "-" * len(head)]
    for r in result.get("decode", []):
        eager = r.get("eager", {})
        if "step_ms" in r:
            graph = (
                f"{r['step_ms']:8.3f} {r['p20_ms']:7.3f}-{r['p80_ms']:<7.3f}"
                f" {r['tokens_per_s']:8.1f} {r['back_to_back_ms']:7.3f}"
            )
        else:
            graph = f"{'-':>8} {'-':>15} {'-':>8} {'-':>7}"
        eager_cols = (
            f"{eager['step_ms']:8.3f} {eager['tokens_per_s']:8.1f}"
            if eager
            else f"{'-':>8} {'-':>8}"
        )
        lines.append(
            f"{r['backend']:>9} {r['batch']:>2} {r['context']:>8} | {graph} | {eager_cols}"
            f" | {r.get('status', '')}"
        )
    for m in result.get("memory", []):
        line = f"peak memory B=1 ctx={m['context']}: "
        if "peak_GiB" in m:
            line += (
                f"{m['peak_GiB']:.2f} GiB (weights {m['weights_GiB']:.2f} + cache "
                f"{m['cache_GiB']:.2f}), "
            )
            tps = m.get("tokens_per_s")
            line += f"{tps:.1f} tok/s" if tps is not None else str(m.get("status"))
        else:
            line += str(m.get("status"))
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--quick", action="store_true", help="batch 1 at 4k, for a smoke test")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    report: dict[str, Any] = environment() | {"bandwidth": measure_bandwidth(L2Flusher())}
    release()
    contexts = [4 * K, 32 * K, 128 * K] if not args.quick else [4 * K]
    report["end_to_end"] = time_decode(contexts, [1, 8] if not args.quick else [1])
    json_path = args.out / "decode.json"
    json_path.write_text(json.dumps(report, indent=1))
    print(f"wrote {json_path}", flush=True)


if __name__ == "__main__":
    main()
