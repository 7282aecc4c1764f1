"""One-GPU benchmark of the kernels: `python -m infinitecontext.kernels.bench --out DIR`.

Measures, in one run: the GPU's copy and read bandwidth; MLA decode over a grid of batch ×
context × heads against eager absorbed attention, `torch.compile` of it and the naive path
that decompresses the latent cache every step; RMSNorm, residual-add + RMSNorm and RoPE
against eager and `torch.compile`; decode tokens/s and peak memory of the `1b` preset.
Prints tables, writes DIR/kernels_bench.json and DIR/mla_decode_bandwidth.png.

Timing: every variant is captured in a CUDA graph and replayed after a 256 MiB read that
evicts L2 (`_L2Flusher`), between CUDA events (p20/p50/p80 over the replays), so Python
launch overhead and cache-resident inputs do not flatter small shapes.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import triton
import triton.language as tl

from infinitecontext.kernels.mla_decode import (
    DecodeConfig,
    default_config,
    hopper_kernel_takes,
    mla_decode_triton,
)
from infinitecontext.kernels.mla_decode_ref import (
    KV_LORA_RANK,
    LATENT_DIM,
    PAGE_SIZE,
    decompress_attention,
    mla_decode_ref,
    quantize_latent_fp8,
)
from infinitecontext.kernels.rms_norm import add_rms_norm_triton, rms_norm_triton
from infinitecontext.kernels.rms_norm_ref import add_rms_norm_ref, rms_norm_ref
from infinitecontext.kernels.rope import apply_rope_triton_
from infinitecontext.kernels.rope_ref import apply_rope_ref_

GiB = 1 << 30
K = 1024
MLA_GRID = [(b, ctx) for b in (1, 8, 32, 64) for ctx in (4 * K, 32 * K, 128 * K)] + [(1, 1024 * K)]
MLA_HEADS = (16, 128)
NORM_ROWS = (1, 64, 2048, 16384)
NORM_WIDTHS = (512, 1536, 2048)
SOFTMAX_SCALE = 0.1352  # DeepSeek-V3's 192^-0.5 · mscale²


@dataclass
class Timing:
    p20_ms: float
    p50_ms: float
    p80_ms: float


# --------------------------------------------------------------------------- timing


class _L2Flusher:
    """Evicts L2 (50 MB on the H100) before a timed call by reading a 256 MB buffer.

    Reading, not writing: a memset (Triton's `do_bench` zeroes a buffer) leaves ~50 MB of
    dirty lines that the timed kernel then has to write back to HBM, about 10 µs on the
    H100 (the MLA decode at B=1, 1M: 400 µs after a memset, 390 µs after a read; session 3
    probe in BENCHMARKS.md). A decode step finds no such backlog.
    """

    def __init__(self) -> None:
        self.buffer = torch.ones(256 << 20, dtype=torch.int8, device="cuda")

    def __call__(self) -> None:
        torch.sum(self.buffer, dtype=torch.int32)


def time_graph(fn: Callable[[], Any], flush: _L2Flusher, reps: int = 30) -> Timing:
    """Median and quartile-ish times of one captured call of `fn`, L2 flushed before each."""
    fn()  # compile / warm up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
        with torch.cuda.graph(graph, stream=stream):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    times = event_times(graph.replay, reps, before_each=flush)
    del graph
    return _percentiles(times)


def time_eager(fn: Callable[[], Any], flush: _L2Flusher, reps: int = 10) -> Timing:
    """Events around plain calls, for what cannot be captured."""
    fn()
    torch.cuda.synchronize()
    return _percentiles(event_times(fn, reps, before_each=flush))


def event_times(
    call: Callable[[], Any], reps: int, before_each: Callable[[], Any] | None = None
) -> list[float]:
    """Milliseconds of each of `reps` calls between CUDA events (`before_each` runs outside)."""
    times = []
    for _ in range(reps):
        if before_each is not None:
            before_each()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def _percentiles(times: list[float]) -> Timing:
    t = torch.tensor(times)
    q = torch.quantile(t, torch.tensor([0.2, 0.5, 0.8])).tolist()
    return Timing(*q)


def time_any(fn: Callable[[], Any], flush: _L2Flusher) -> tuple[Timing | None, str]:
    """(timing, how) — graph replay if capturable, else eager; None with the error if it fails."""
    try:
        return time_graph(fn, flush), "graph"
    except torch.OutOfMemoryError:
        return None, "OOM"
    except Exception as exc:
        torch.cuda.synchronize()
        first = f"{type(exc).__name__}"
    try:
        return time_eager(fn, flush), f"eager ({first} in capture)"
    except torch.OutOfMemoryError:
        return None, "OOM"
    finally:
        gc.collect()
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- bandwidth


@triton.jit
def _read_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, ITERS: tl.constexpr):  # type: ignore[no-untyped-def]
    """Streams x once: each program sums ITERS consecutive blocks (a read-only roofline)."""
    pid = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(ITERS):
        offs = (pid * ITERS + i) * BLOCK + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + offs, mask=offs < n, other=0.0, eviction_policy="evict_first")
    tl.store(out_ptr + pid, tl.sum(acc, axis=0))


def measure_bandwidth(flush: _L2Flusher) -> dict[str, float]:
    """Copy (read + write counted) and read-only bandwidth over 2 GiB buffers, in GB/s."""
    n = 2 * GiB // 4
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    copy = time_graph(partial(dst.copy_, src), flush)
    block, iters = 4096, 8
    programs = triton.cdiv(n, block * iters)
    sink = torch.empty(programs, device="cuda")

    read = partial(_read_kernel[(programs,)], src, sink, n, BLOCK=block, ITERS=iters, num_warps=8)
    read_triton = time_graph(read, flush)
    read_torch = time_graph(src.sum, flush)
    nbytes = n * 4
    result = {
        "copy_GBps": 2 * nbytes / copy.p50_ms / 1e6,
        "read_triton_GBps": nbytes / read_triton.p50_ms / 1e6,
        "read_torch_sum_GBps": nbytes / read_torch.p50_ms / 1e6,
    }
    result["read_GBps"] = max(result["read_triton_GBps"], result["read_torch_sum_GBps"])
    return result


# --------------------------------------------------------------------------- MLA decode


def absorbed_eager(
    q_lat: torch.Tensor, q_pe: torch.Tensor, cache: torch.Tensor, scale: float
) -> torch.Tensor:
    """DeepSeek-V3 `inference/model.py` absorb path over a full cache: bf16 einsums."""
    c_kv, k_pe = cache[..., :KV_LORA_RANK], cache[..., KV_LORA_RANK:]
    scores = torch.einsum("bhc,btc->bht", q_lat, c_kv) + torch.einsum("bhr,btr->bht", q_pe, k_pe)
    probs = (scores.float() * scale).softmax(dim=-1).to(q_lat.dtype)
    return torch.einsum("bht,btc->bhc", probs, c_kv)


_absorbed_compiled = torch.compile(absorbed_eager, dynamic=True)


def mla_bytes(batch: int, ctx: int, heads: int, cache_bytes: int = 2) -> int:
    """FlashMLA's count: the cache once, q in, out out (bf16 q and out)."""
    return batch * ctx * LATENT_DIM * cache_bytes + batch * heads * (LATENT_DIM + KV_LORA_RANK) * 2


def mla_flops(batch: int, ctx: int, heads: int) -> int:
    return 2 * batch * ctx * heads * (LATENT_DIM + KV_LORA_RANK)


def _fits(nbytes: float, margin: float = 0.85) -> bool:
    free, _ = torch.cuda.mem_get_info()
    return nbytes < margin * free


def _run_each(call: Callable[[Any], Any], inputs: list[Any]) -> None:
    for item in inputs:
        call(item)


def time_per_call(
    call: Callable[[Any], Any], inputs: list[Any], flush: _L2Flusher
) -> tuple[Timing | None, str]:
    """Time `call` over each of `inputs` back to back in one graph; per-call times.

    Distinct inputs (one cache per layer, as in a model's decode step) keep every read cold
    after the L2 flush, while the graph's launch latency is shared by the calls.
    """
    timing, how = time_any(partial(_run_each, call, inputs), flush)
    if timing is None:
        return None, how
    n = len(inputs)
    return Timing(timing.p20_ms / n, timing.p50_ms / n, timing.p80_ms / n), f"{how} x{n}"


def _copies(nbytes: int) -> int:
    """How many distinct caches a stream of calls rotates through (1.5 GiB in all, ≤ 8)."""
    return max(1, min(8, int(1.5 * GiB) // max(nbytes, 1)))


def bench_mla_shape(
    batch: int,
    ctx: int,
    heads: int,
    flush: _L2Flusher,
    read_gbps: float,
    config: DecodeConfig | None,
    baselines: bool,
) -> dict[str, Any]:
    """One grid point: Triton (contiguous, paged, fp8) and the three baselines."""
    gen = torch.Generator(device="cuda").manual_seed(batch * 7919 + ctx + heads)
    dt = torch.bfloat16
    q_lat = torch.randn(batch, heads, KV_LORA_RANK, device="cuda", dtype=dt, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=dt, generator=gen)
    cache = torch.randn(batch, ctx, LATENT_DIM, device="cuda", dtype=dt, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    row: dict[str, Any] = {"batch": batch, "context": ctx, "heads": heads}
    nbytes, flops = mla_bytes(batch, ctx, heads), mla_flops(batch, ctx, heads)
    copies = _copies(cache.numel() * 2)
    row["stream_copies"] = copies
    caches = [cache] + [cache.clone() for _ in range(copies - 1)]

    def triton_on(c: torch.Tensor) -> Any:
        return mla_decode_triton(q_lat, q_pe, c, lengths, SOFTMAX_SCALE, config=config)

    timing, how = time_per_call(triton_on, caches[:1], flush)
    row["triton_single_call"] = _rates(timing, how, nbytes, flops, read_gbps)
    timing, how = time_per_call(triton_on, caches, flush)
    row["triton"] = _rates(timing, how, nbytes, flops, read_gbps)
    row["split_kernel"] = "triton"
    if config is None and hopper_kernel_takes(q_lat, cache):
        # The same call with the Triton split kernel instead, side by side in this process.
        row["split_kernel"] = "hopper"

        def triton_split_on(c: torch.Tensor) -> Any:
            return mla_decode_triton(q_lat, q_pe, c, lengths, SOFTMAX_SCALE, hopper=False)

        timing, how = time_per_call(triton_split_on, caches, flush)
        row["triton_split_kernel"] = _rates(timing, how, nbytes, flops, read_gbps)
    out, _ = triton_on(cache)
    ref_out, ref_lse = _reference_in_chunks(q_lat, q_pe, cache, lengths)
    row["rel_err_vs_fp32_ref"] = float((out.float() - ref_out).norm() / ref_out.norm())

    # Paged caches (page 64, pages in random order): same bytes.
    pages = batch * ctx // PAGE_SIZE
    order = torch.randperm(pages, device="cuda", generator=gen)
    table = order.view(batch, -1).to(torch.int32)
    pools = []
    for c in caches:
        pool = torch.empty_like(c).view(pages, PAGE_SIZE, LATENT_DIM)
        pool[order] = c.view(pages, PAGE_SIZE, LATENT_DIM)
        pools.append(pool)
    del caches, cache, pool
    gc.collect()

    def paged_on(pool: torch.Tensor) -> Any:
        return mla_decode_triton(q_lat, q_pe, pool, lengths, SOFTMAX_SCALE, table, config=config)

    timing, how = time_per_call(paged_on, pools, flush)
    row["triton_paged"] = _rates(timing, how, nbytes, flops, read_gbps)
    caches = [pool[order].view(batch, ctx, LATENT_DIM) for pool in pools]
    del pools
    gc.collect()

    # FP8 caches with per-token scales: half the bytes.
    fp8_caches = [_quantize_in_chunks(c) for c in caches]

    def fp8_on(pair: tuple[torch.Tensor, torch.Tensor]) -> Any:
        return mla_decode_triton(
            q_lat, q_pe, pair[0], lengths, SOFTMAX_SCALE, None, pair[1], config=config
        )

    timing, how = time_per_call(fp8_on, fp8_caches, flush)
    fp8_bytes = mla_bytes(batch, ctx, heads, 1) + batch * ctx * 4
    row["triton_fp8"] = _rates(timing, how, fp8_bytes, flops, read_gbps)
    fp8_out, fp8_lse = fp8_on(fp8_caches[0])
    row["fp8_rel_err_vs_bf16_cache"] = float((fp8_out.float() - ref_out).norm() / ref_out.norm())
    row["fp8_lse_max_abs_err"] = float((fp8_lse - ref_lse).abs().max())
    del fp8_caches, fp8_out, out
    gc.collect()
    torch.cuda.empty_cache()

    if baselines:
        row.update(_baselines(q_lat, q_pe, caches, heads, flush, nbytes, flops, read_gbps, gen))
    return row


def _baselines(  # type: ignore[no-untyped-def]
    q_lat, q_pe, caches, heads, flush, nbytes, flops, read_gbps, gen
) -> dict[str, Any]:
    batch, ctx, _ = caches[0].shape
    result: dict[str, Any] = {}
    scores_bytes = batch * heads * ctx * (2 + 4 + 4 + 2)  # bf16 scores, fp32 softmax, bf16 probs
    for name, fn in (("eager", absorbed_eager), ("compile", _absorbed_compiled)):
        if _fits(scores_bytes):
            call = partial(_absorbed_on, fn, q_lat, q_pe)
            timing, how = time_per_call(call, caches, flush)
        else:
            timing, how = None, "skipped: would not fit"
        result[name] = _rates(timing, how, nbytes, flops, read_gbps)
    decompressed = batch * heads * ctx * (192 + 128) * 2 * 1.6  # K, V and the cat's copy
    if _fits(decompressed):
        q_nope = torch.randn(batch, heads, 128, device="cuda", dtype=q_lat.dtype, generator=gen)
        w_uk = torch.randn(heads, 128, 512, device="cuda", dtype=q_lat.dtype, generator=gen)
        w_uv = torch.randn(heads, 128, 512, device="cuda", dtype=q_lat.dtype, generator=gen)
        naive = partial(_naive_on, q_nope, q_pe, w_uk, w_uv)
        timing, how = time_per_call(naive, caches, flush)
    else:
        timing, how = None, "skipped: decompressed K/V would not fit"
    result["naive_decompress"] = _rates(timing, how, nbytes, flops, read_gbps)
    return result


def _absorbed_on(fn, q_lat, q_pe, cache):  # type: ignore[no-untyped-def]
    return fn(q_lat, q_pe, cache, SOFTMAX_SCALE)


def _naive_on(q_nope, q_pe, w_uk, w_uv, cache):  # type: ignore[no-untyped-def]
    return decompress_attention(q_nope, q_pe, cache, w_uk, w_uv, SOFTMAX_SCALE)


def _reference_in_chunks(
    q_lat: torch.Tensor, q_pe: torch.Tensor, cache: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 reference one sequence at a time (the full fp32 copy would not fit at 64 × 128k)."""
    outs, lses = [], []
    for b in range(cache.shape[0]):
        o, lse = mla_decode_ref(
            q_lat[b : b + 1], q_pe[b : b + 1], cache[b : b + 1], lengths[b : b + 1], SOFTMAX_SCALE
        )
        outs.append(o.float())
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def _quantize_in_chunks(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    quantized = torch.empty(cache.shape, device=cache.device, dtype=torch.float8_e4m3fn)
    scales = torch.empty(cache.shape[:2], device=cache.device, dtype=torch.float32)
    for b in range(cache.shape[0]):
        quantized[b], scales[b] = quantize_latent_fp8(cache[b])
    return quantized, scales


def _rates(
    timing: Timing | None, how: str, nbytes: float, flops: float, read_gbps: float
) -> dict[str, Any]:
    if timing is None:
        return {"status": how}
    gbps = nbytes / timing.p50_ms / 1e6
    return {
        "status": how,
        **asdict(timing),
        "GBps": gbps,
        "pct_read_bw": 100 * gbps / read_gbps,
        "TFLOPs": flops / timing.p50_ms / 1e9,
    }


# --------------------------------------------------------------------------- tuning sweep


def sweep_configs(flush: _L2Flusher, read_gbps: float) -> dict[str, Any]:
    """Time candidate tile configs on representative shapes; returns the best per head count."""

    # Tile shapes around each default; the chunk layout and launch flags stay the default's.
    def tile(
        heads: int, block_h: int, block_n: int, warps: int, stages: int, ctas: int
    ) -> DecodeConfig:
        return dataclasses.replace(
            default_config(heads),
            block_h=block_h,
            block_n=block_n,
            num_warps=warps,
            num_stages=stages,
            ctas_per_sm=ctas,
        )

    candidates = {
        16: [
            tile(16, 16, bn, w, s, c)
            for bn in (32, 64)
            for w in (4, 8)
            for s in (2, 3)
            for c in (1, 2)
            if s == 3 or (w == 4 and c == 1)
        ],
        128: [tile(128, 64, bn, w, 2, 1) for bn in (32, 64) for w in (4, 8)]
        + [tile(128, 64, 64, 8, 1, 1), tile(128, 32, 64, 4, 2, 1)],
    }
    shapes = {16: [(1, 128 * K), (8, 32 * K), (64, 32 * K)], 128: [(8, 32 * K), (64, 32 * K)]}
    report: dict[str, Any] = {}
    for heads, configs in candidates.items():
        scores: dict[str, list[float]] = {}
        for batch, ctx in shapes[heads]:
            q_lat = torch.randn(batch, heads, KV_LORA_RANK, device="cuda", dtype=torch.bfloat16)
            q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
            cache = torch.randn(batch, ctx, LATENT_DIM, device="cuda", dtype=torch.bfloat16)
            lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
            for cfg in configs:
                call = partial(
                    mla_decode_triton, q_lat, q_pe, cache, lengths, SOFTMAX_SCALE, config=cfg
                )
                timing, how = time_any(call, flush)
                ms = timing.p50_ms if timing else math.inf
                scores.setdefault(json.dumps(asdict(cfg)), []).append(ms)
                print(f"sweep H={heads} B={batch} L={ctx} {cfg} {how} {ms:.4f} ms", flush=True)
            del call, q_lat, q_pe, cache
            torch.cuda.empty_cache()
        # Rank by the geometric mean of the time relative to each shape's best.
        best_per_shape = [min(ms[i] for ms in scores.values()) for i in range(len(shapes[heads]))]
        ranked = sorted(
            scores.items(),
            key=lambda kv: math.prod(t / b for t, b in zip(kv[1], best_per_shape, strict=True)),
        )
        report[str(heads)] = {
            "best": json.loads(ranked[0][0]),
            "default": asdict(default_config(heads)),
            "times_ms": {k: v for k, v in ranked},
            "shapes": shapes[heads],
        }
    return report


# --------------------------------------------------------------------------- norms and RoPE


def bench_norms(flush: _L2Flusher, read_gbps: float, copy_gbps: float) -> list[dict[str, Any]]:
    rows = []
    compiled_rms = torch.compile(rms_norm_ref)
    compiled_add = torch.compile(add_rms_norm_ref)
    compiled_rope = torch.compile(apply_rope_ref_)
    for m in NORM_ROWS:
        for width in NORM_WIDTHS:
            x = torch.randn(m, width, device="cuda", dtype=torch.bfloat16)
            res = torch.randn_like(x)
            w = torch.rand(width, device="cuda", dtype=torch.bfloat16) + 0.5
            rope_x = torch.randn(m, width // 64, 64, device="cuda", dtype=torch.bfloat16)
            rope_view = rope_x.transpose(0, 1)  # (heads, T=M, 64): cos/sin (M, 32) broadcast
            angles = torch.rand(m, 32, device="cuda")
            cos, sin = angles.cos(), angles.sin()
            elem = 2
            ops: dict[str, tuple[float, dict[str, Callable[[], Any]]]] = {
                "rms_norm": (
                    2 * m * width * elem,
                    {
                        "triton": partial(rms_norm_triton, x, w, 1e-6),
                        "eager": partial(rms_norm_ref, x, w, 1e-6),
                        "compile": partial(compiled_rms, x, w, 1e-6),
                    },
                ),
                "add_rms_norm": (
                    4 * m * width * elem,
                    {
                        "triton": partial(add_rms_norm_triton, x, res, w, 1e-6),
                        "eager": partial(add_rms_norm_ref, x, res, w, 1e-6),
                        "compile": partial(compiled_add, x, res, w, 1e-6),
                    },
                ),
                "rope": (
                    2 * m * width * elem + 2 * m * 32 * 4,
                    {
                        "triton": partial(apply_rope_triton_, rope_view, cos, sin),
                        "eager": partial(apply_rope_ref_, rope_view, cos, sin),
                        "compile": partial(compiled_rope, rope_view, cos, sin),
                    },
                ),
            }
            for op, (nbytes, variants) in ops.items():
                row: dict[str, Any] = {"op": op, "M": m, "width": width, "bytes": nbytes}
                for name, fn in variants.items():
                    timing, how = time_any(fn, flush)
                    row[name] = {"status": how}
                    if timing:
                        gbps = nbytes / timing.p50_ms / 1e6
                        row[name].update(
                            us=timing.p50_ms * 1e3, GBps=gbps, pct_copy_bw=100 * gbps / copy_gbps
                        )
                row["stream_us"] = _norm_stream_us(op, m, width, compiled_rms, flush)
                rows.append(row)
                print(_norm_line(row), flush=True)
    return rows


def _norm_stream_us(
    op: str, m: int, width: int, compiled_rms: Callable[..., Any], flush: _L2Flusher
) -> dict[str, float]:
    """Per-call µs of Triton and compile when one graph runs 8 calls on distinct inputs.

    A single replay of a few-µs kernel mostly times the graph launch; in a model the norms
    run back to back with other kernels, which this stream timing resembles (as for MLA).
    """
    if op != "rms_norm":
        return {}
    xs = [torch.randn(m, width, device="cuda", dtype=torch.bfloat16) for _ in range(8)]
    w = torch.rand(width, device="cuda", dtype=torch.bfloat16) + 0.5
    result = {}
    norms: dict[str, Callable[..., Any]] = {"triton": rms_norm_triton, "compile": compiled_rms}
    for name, norm in norms.items():
        timing, _ = time_per_call(partial(_norm_of, norm, w), xs, flush)
        if timing:
            result[name] = timing.p50_ms * 1e3
    return result


def _norm_of(norm: Callable[..., Any], weight: torch.Tensor, x: torch.Tensor) -> Any:
    return norm(x, weight, 1e-6)


def _norm_line(row: dict[str, Any]) -> str:
    def us(name: str) -> str:
        return f"{row[name].get('us', float('nan')):9.2f}"

    pct = row["triton"].get("pct_copy_bw", float("nan"))
    return (
        f"{row['op']:>13} M={row['M']:>6} W={row['width']:>5}  triton {us('triton')} us "
        f"({pct:5.1f}% copy BW)  eager {us('eager')}  compile {us('compile')}"
        + "".join(f"  stream {k} {v:.2f}" for k, v in row.get("stream_us", {}).items())
    )


# --------------------------------------------------------------------------- end to end

E2E_REPLAYS = 30
E2E_EAGER_STEPS = 10
E2E_MEMORY_CONTEXTS = (128 * K, 1024 * K)
E2E_SLACK_BYTES = 2 * GiB
"""Logits, MLA partials, cuBLAS workspaces and the allocator's rounding, on top of the cache."""


def bench_end_to_end(
    contexts: list[int],
    batches: list[int],
    replays: int = E2E_REPLAYS,
    memory_contexts: tuple[int, ...] = E2E_MEMORY_CONTEXTS,
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
    from infinitecontext.model.config import preset
    from infinitecontext.model.transformer import build

    started = time.perf_counter()
    cfg = preset("1b")
    model = build(cfg, seed=0, device="cuda").to(torch.bfloat16).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    _release()
    result: dict[str, Any] = {
        "preset": "1b",
        "dtype": "bfloat16",
        "weights_GiB": weights / GiB,
        "method": (
            f"CUDA graph of one decode step, median of {replays} replays after warm-up, "
            "CUDA events around each replay, no L2 flush (as in a decode loop); "
            f"eager: median of {E2E_EAGER_STEPS} model.decode calls"
        ),
        "decode": [],
        "memory": [],
    }
    for backend in ("triton", "reference"):
        for batch in batches:
            for ctx in contexts:
                entry: dict[str, Any] = {"backend": backend, "batch": batch, "context": ctx}
                free, _ = torch.cuda.mem_get_info()
                skip = _e2e_skip_reason(_e2e_bytes_needed(cfg, batch, ctx, backend), free)
                if skip:
                    entry["status"] = skip
                else:
                    try:
                        entry.update(_decode_tokens_per_s(model, batch, ctx, backend, replays))
                    except torch.OutOfMemoryError:
                        entry["status"] = "OOM"
                    _release()
                result["decode"].append(entry)
                print(f"e2e {json.dumps(entry)}", flush=True)
    for ctx in memory_contexts:
        _release()
        torch.cuda.reset_peak_memory_stats()
        entry = {"backend": "triton", "batch": 1, "context": ctx}
        free, _ = torch.cuda.mem_get_info()
        skip = _e2e_skip_reason(_e2e_bytes_needed(cfg, 1, ctx, "triton"), free)
        if skip:
            entry["status"] = skip
        else:
            try:
                timing = _decode_tokens_per_s(model, 1, ctx, "triton", replays, eager_steps=0)
                entry.update(
                    peak_GiB=torch.cuda.max_memory_allocated() / GiB,
                    weights_GiB=weights / GiB,
                    cache_GiB=ctx * _cache_bytes_per_token(cfg) / GiB,
                    tokens_per_s=timing.get("tokens_per_s"),
                    status=timing["status"],
                )
            except torch.OutOfMemoryError:
                entry["status"] = "OOM"
        result["memory"].append(entry)
        print(f"e2e memory {json.dumps(entry)}", flush=True)
    del model
    _release()
    result["wall_s"] = time.perf_counter() - started
    print(_e2e_table(result), flush=True)
    return result


@torch.no_grad()
def _decode_tokens_per_s(
    model: Any,
    batch: int,
    ctx: int,
    backend: str,
    replays: int = E2E_REPLAYS,
    eager_steps: int = E2E_EAGER_STEPS,
) -> dict[str, Any]:
    """Graph-replay (and eager) times of one decode step at a full context of `ctx` tokens."""
    from infinitecontext.model.graphs import CudaGraphDecoder

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
        _release()
        if eager_steps:
            eager = partial(model.decode, ids, cache, positions)
            row["eager"] = _step_stats(batch, _time_steps(eager, eager_steps, warmup=2))
    del cache
    return row


def _kernels(backend: str) -> Any:
    """ICX_KERNELS=backend inside the block, the previous value after."""
    import contextlib
    import os

    @contextlib.contextmanager
    def scoped() -> Any:
        before = os.environ.get("ICX_KERNELS")
        os.environ["ICX_KERNELS"] = backend
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("ICX_KERNELS", None)
            else:
                os.environ["ICX_KERNELS"] = before

    return scoped()


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


def _cache_bytes_per_token(cfg: Any, bytes_per_value: int = 2) -> int:
    from infinitecontext.model.memory import mla_bytes_per_token

    return mla_bytes_per_token(cfg, bytes_per_value)


def _e2e_bytes_needed(cfg: Any, batch: int, ctx: int, backend: str) -> int:
    """GPU memory a shape needs beyond the weights: the bf16 cache, the step's temporaries.

    The reference gathers one layer's cache to fp32 (576 × 4 B per token), masks a copy of
    it and einsums over slices of that (≈ 3 fp32 copies), plus fp32 scores per head (≈ 4);
    the eager warm-up and the graph's pool each hold one layer's worth.
    """
    need = batch * ctx * _cache_bytes_per_token(cfg) + E2E_SLACK_BYTES
    if backend == "reference":
        per_token = 3 * cfg.latent_dim * 4 + 4 * cfg.num_attention_heads * 4
        need += 2 * batch * ctx * per_token
    return need


def _e2e_skip_reason(need: int, free: int, margin: float = 0.9) -> str | None:
    if need <= margin * free:
        return None
    return f"skipped: needs {need / GiB:.1f} GiB, {free / GiB:.1f} GiB free"


def _release() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def _e2e_table(result: dict[str, Any]) -> str:
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


# --------------------------------------------------------------------------- report


def _mla_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'H':>4} {'B':>3} {'ctx':>8} | {'1 call':>7} {'triton ms':>9} {'GB/s':>6} {'%rdBW':>6}"
        f" {'TFLOP/s':>7} {'no-Hopper':>9}"
        f" | {'paged ms':>8} {'fp8 ms':>7} | {'eager ms':>8} {'compile':>8} {'naive ms':>9}"
        f" {'×naive':>7} | {'err':>7} {'fp8 err':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        t = r["triton"]

        def ms(key: str, r: dict[str, Any] = r) -> str:
            v = r.get(key, {})
            return f"{v['p50_ms']:.4f}" if "p50_ms" in v else v.get("status", "-")[:8]

        speedup = "-"
        if "p50_ms" in r.get("naive_decompress", {}) and "p50_ms" in t:
            speedup = f"{r['naive_decompress']['p50_ms'] / t['p50_ms']:.1f}"
        lines.append(
            f"{r['heads']:>4} {r['batch']:>3} {r['context']:>8} | {ms('triton_single_call'):>7}"
            f" {ms('triton'):>9}"
            f" {t.get('GBps', 0):6.0f} {t.get('pct_read_bw', 0):6.1f} {t.get('TFLOPs', 0):7.1f}"
            f" {ms('triton_split_kernel'):>9}"
            f" | {ms('triton_paged'):>8} {ms('triton_fp8'):>7} | {ms('eager'):>8}"
            f" {ms('compile'):>8} {ms('naive_decompress'):>9} {speedup:>7}"
            f" | {r['rel_err_vs_fp32_ref']:7.1e} {r['fp8_rel_err_vs_bf16_cache']:7.1e}"
        )
    return "\n".join(lines)


def plot_bandwidth(rows: list[dict[str, Any]], read_gbps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MLA_HEADS), figsize=(12, 4.5), sharey=True)
    for ax, heads in zip(axes, MLA_HEADS, strict=True):
        for batch in sorted({r["batch"] for r in rows}):
            pts = [
                (r["context"], r["triton"]["GBps"])
                for r in rows
                if r["heads"] == heads and r["batch"] == batch and "GBps" in r["triton"]
            ]
            if pts:
                xs, ys = zip(*sorted(pts), strict=True)
                ax.plot(xs, ys, marker="o", label=f"B={batch}")
        ax.axhline(read_gbps, color="k", linestyle="--", label="measured read BW")
        ax.axhline(0.85 * read_gbps, color="gray", linestyle=":", label="85% target")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (tokens)")
        ax.set_title(f"MLA decode, H={heads}, bf16 latent cache")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("GB/s (cache + q + out)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument(
        "--sections",
        default="sweep,mla,norms,e2e",
        help="comma-separated subset of sweep,mla,norms,e2e (bandwidth always runs)",
    )
    parser.add_argument("--quick", action="store_true", help="a few shapes, for a smoke test")
    parser.add_argument(
        "--use-sweep-best",
        action="store_true",
        help="time the grid with the sweep's best tiles instead of the shipped defaults",
    )
    parser.add_argument(
        "--no-baselines",
        action="store_true",
        help="time only the Triton kernel in the MLA grid (not eager, compile, naive)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    report: dict[str, Any] = {
        "gpu": props.name,
        "sm_count": props.multi_processor_count,
        "torch": torch.__version__,
        "triton": triton.__version__,
    }
    flush = _L2Flusher()
    bw = measure_bandwidth(flush)
    report["bandwidth"] = bw
    print(f"GPU {props.name}: {json.dumps(bw)}", flush=True)
    json_path = args.out / "kernels_bench.json"

    def save() -> None:
        json_path.write_text(json.dumps(report, indent=1))

    configs: dict[int, DecodeConfig | None] = {h: None for h in MLA_HEADS}
    sections = set(args.sections.split(","))
    if "sweep" in sections and not args.quick:
        report["sweep"] = sweep_configs(flush, bw["read_GBps"])
        if args.use_sweep_best:
            for heads in MLA_HEADS:
                configs[heads] = DecodeConfig(**report["sweep"][str(heads)]["best"])
        save()
    grid = MLA_GRID if not args.quick else [(1, 32 * K), (8, 32 * K)]
    rows: list[dict[str, Any]] = []
    for heads in MLA_HEADS if "mla" in sections else ():
        for batch, ctx in grid:
            if not _fits(batch * ctx * LATENT_DIM * 2 * 2.3):
                print(f"skip H={heads} B={batch} ctx={ctx}: cache would not fit", flush=True)
                continue
            # Each row starts from an empty caching allocator: carved out of the blocks the
            # B=64 rows leave behind, the 1M cache streamed 15% slower (470 vs 401 µs; after
            # empty_cache() 401 again: session 3 probe in BENCHMARKS.md). A server allocates
            # its cache once, at start.
            _release()
            row = bench_mla_shape(
                batch, ctx, heads, flush, bw["read_GBps"], configs[heads], not args.no_baselines
            )
            row["config"] = asdict(configs[heads] or default_config(heads))
            rows.append(row)
            print(_mla_table([row]).splitlines()[-1], flush=True)
            report["mla_decode"] = rows
            save()
    if rows:
        print(_mla_table(rows), flush=True)
        plot_bandwidth(rows, bw["read_GBps"], args.out / "mla_decode_bandwidth.png")
    if "norms" in sections:
        report["norms"] = bench_norms(flush, bw["read_GBps"], bw["copy_GBps"])
        save()
    if "e2e" in sections:
        try:
            contexts = [4 * K, 32 * K, 128 * K] if not args.quick else [4 * K]
            report["end_to_end"] = bench_end_to_end(contexts, [1, 8] if not args.quick else [1])
        except Exception as exc:
            report["end_to_end"] = {"error": repr(exc)}
            print(f"end-to-end failed: {exc!r}", flush=True)
        save()
    if rows:
        print(_mla_table(rows), flush=True)
    print(f"wrote {json_path}", flush=True)


if __name__ == "__main__":
    main()
