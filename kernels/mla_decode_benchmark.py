"""MLA decode benchmark: `python -m infinitecontext.kernels.mla_decode_benchmark --out DIR`.

Times `mla_decode_triton` over a grid of heads × batch × context (contiguous bf16, paged and
fp8 caches) against eager absorbed attention, `torch.compile` of it and the naive path that
decompresses the latent cache every step; checks each output against the fp32 reference.
Writes DIR/mla_decode.json and DIR/mla_decode_bandwidth.png and prints the table.
`--sweep` also times candidate tile configs (how `default_config`'s tiles were picked).

Timing (`benchmark_timing`): "1 call" is one call per CUDA graph replay after an L2 flush;
the headline "stream" time is per call when one graph runs the call over up to 8 distinct
caches back to back, as a model's layers do. Rates are against the bandwidth this run
measures (`roofline`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch

from infinitecontext.kernels.benchmark_timing import (
    GiB,
    L2Flusher,
    Timing,
    environment,
    release,
    time_any,
    time_per_call,
)
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
from infinitecontext.kernels.roofline import measure_bandwidth

K = 1024
GRID = [(b, ctx) for b in (1, 8, 32, 64) for ctx in (4 * K, 32 * K, 128 * K)] + [(1, 1024 * K)]
HEADS = (16, 128)
SOFTMAX_SCALE = 0.1352  # DeepSeek-V3's 192^-0.5 · mscale²


def absorbed_eager(
    q_lat: torch.Tensor, q_pe: torch.Tensor, cache: torch.Tensor, scale: float
) -> torch.Tensor:
    """DeepSeek-V3 `inference/model.py` absorb path over a full cache: bf16 einsums."""
    c_kv, k_pe = cache[..., :KV_LORA_RANK], cache[..., KV_LORA_RANK:]
    scores = torch.einsum("bhc,btc->bht", q_lat, c_kv) + torch.einsum("bhr,btr->bht", q_pe, k_pe)
    probs = (scores.float() * scale).softmax(dim=-1).to(q_lat.dtype)
    return torch.einsum("bht,btc->bhc", probs, c_kv)


@functools.cache
def _absorbed_compiled() -> Callable[..., torch.Tensor]:
    return torch.compile(absorbed_eager, dynamic=True)


def mla_bytes(batch: int, ctx: int, heads: int, cache_bytes: int = 2) -> int:
    """FlashMLA's count: the cache once, q in, out out (bf16 q and out)."""
    return batch * ctx * LATENT_DIM * cache_bytes + batch * heads * (LATENT_DIM + KV_LORA_RANK) * 2


def mla_flops(batch: int, ctx: int, heads: int) -> int:
    return 2 * batch * ctx * heads * (LATENT_DIM + KV_LORA_RANK)


def _fits(nbytes: float, margin: float = 0.85) -> bool:
    free, _ = torch.cuda.mem_get_info()
    return nbytes < margin * free


def _copies(nbytes: int) -> int:
    """How many distinct caches a stream of calls rotates through (1.5 GiB in all, ≤ 8)."""
    return max(1, min(8, int(1.5 * GiB) // max(nbytes, 1)))


def time_shape(
    batch: int,
    ctx: int,
    heads: int,
    flush: L2Flusher,
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
    for name, fn in (("eager", absorbed_eager), ("compile", _absorbed_compiled())):
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


def sweep_configs(flush: L2Flusher, read_gbps: float) -> dict[str, Any]:
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


def table(rows: list[dict[str, Any]]) -> str:
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

    fig, axes = plt.subplots(1, len(HEADS), figsize=(12, 4.5), sharey=True)
    for ax, heads in zip(axes, HEADS, strict=True):
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


def run_grid(
    flush: L2Flusher,
    read_gbps: float,
    grid: list[tuple[int, int]],
    configs: dict[int, DecodeConfig | None],
    baselines: bool,
    save: Callable[[list[dict[str, Any]]], None],
) -> list[dict[str, Any]]:
    """Every heads × (batch, context) point of `grid` that fits; `save(rows)` after each."""
    rows: list[dict[str, Any]] = []
    for heads in HEADS:
        for batch, ctx in grid:
            if not _fits(batch * ctx * LATENT_DIM * 2 * 2.3):
                print(f"skip H={heads} B={batch} ctx={ctx}: cache would not fit", flush=True)
                continue
            # Each row starts from an empty caching allocator: carved out of the blocks the
            # B=64 rows leave behind, the 1M cache streamed 15% slower (470 vs 401 µs; 401
            # again after empty_cache()). A server allocates its cache once, at start.
            release()
            row = time_shape(batch, ctx, heads, flush, read_gbps, configs[heads], baselines)
            row["config"] = asdict(configs[heads] or default_config(heads))
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
            save(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--quick", action="store_true", help="two shapes, for a smoke test")
    parser.add_argument("--sweep", action="store_true", help="also time candidate tile configs")
    parser.add_argument(
        "--use-sweep-best",
        action="store_true",
        help="time the grid with the sweep's best tiles instead of the shipped defaults",
    )
    parser.add_argument(
        "--no-baselines",
        action="store_true",
        help="time only the Triton kernel (not eager, compile, naive)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    flush = L2Flusher()
    report: dict[str, Any] = environment() | {"bandwidth": measure_bandwidth(flush)}
    read_gbps = report["bandwidth"]["read_GBps"]
    print(f"GPU {report['gpu']}: {json.dumps(report['bandwidth'])}", flush=True)
    json_path = args.out / "mla_decode.json"

    def save(rows: list[dict[str, Any]] | None = None) -> None:
        if rows is not None:
            report["mla_decode"] = rows
        json_path.write_text(json.dumps(report, indent=1))

    configs: dict[int, DecodeConfig | None] = {h: None for h in HEADS}
    if (args.sweep or args.use_sweep_best) and not args.quick:
        report["sweep"] = sweep_configs(flush, read_gbps)
        if args.use_sweep_best:
            for heads in HEADS:
                configs[heads] = DecodeConfig(**report["sweep"][str(heads)]["best"])
        save()
    grid = GRID if not args.quick else [(1, 32 * K), (8, 32 * K)]
    rows = run_grid(flush, read_gbps, grid, configs, not args.no_baselines, save)
    if rows:
        print(table(rows), flush=True)
        plot_bandwidth(rows, read_gbps, args.out / "mla_decode_bandwidth.png")
    save()
    print(f"wrote {json_path}", flush=True)


if __name__ == "__main__":
    main()
