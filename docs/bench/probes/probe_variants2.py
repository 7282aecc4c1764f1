"""H100 probe 2 (session 3): does the benchmark's L2 flush (a 256 MB memset, which leaves
~50 MB of dirty lines for the next kernel to write back) slow short calls? Stream
timelines; interleaved tiles (groups of 1, 2, 4) at H=16 and H=128; and the 1M cache
carved out of a large allocation at several offsets."""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_variants as mv
from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import default_config, mla_decode_triton

K = 1024
out_path = Path(sys.argv[1])
zero_flush = kb._L2Flusher()


class ReadFlush:
    """Evict L2 by reading 256 MB: the lines left behind are clean."""

    def __init__(self) -> None:
        self.buffer = zero_flush.buffer
        self.buffer.fill_(1)

    def __call__(self) -> None:
        torch.sum(self.buffer, dtype=torch.int32)


read_flush = ReadFlush()
FLUSHES = {"zero": zero_flush, "read": read_flush}
bw = kb.measure_bandwidth(zero_flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
res: dict = {"bandwidth": bw, "rows": [], "timelines": {}, "alloc": []}


def save() -> None:
    out_path.write_text(json.dumps(res, indent=1))


def inputs(heads, batch, ctx):
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    return q_lat, q_pe, cache, lengths


def time_row(tag, heads, batch, ctx, call, caches, ref, flush_name):
    o, _ = call(caches[0])
    err = float((o.float() - ref.float()).norm() / ref.float().norm())
    timing, how = kb.time_per_call(call, caches, FLUSHES[flush_name])
    r = kb._rates(
        timing, how, kb.mla_bytes(batch, ctx, heads), kb.mla_flops(batch, ctx, heads), read
    )
    row = {
        "tag": tag,
        "heads": heads,
        "batch": batch,
        "ctx": ctx,
        "flush": flush_name,
        "copies": len(caches),
        "us": round(timing.p50_ms * 1e3, 2),
        "pct": round(r["pct_read_bw"], 2),
        "tflops": round(r["TFLOPs"], 1),
        "err": err,
    }
    res["rows"].append(row)
    print(json.dumps(row), flush=True)
    save()


# 1. H=16: shipped vs interleave groups, both flushes.
SCALE = 0.1352
for heads, batch, ctx in (
    (16, 1, 128 * K),
    (16, 1, 32 * K),
    (16, 1, 1024 * K),
    (16, 8, 32 * K),
    (16, 64, 32 * K),
):
    q_lat, q_pe, cache, lengths = inputs(heads, batch, ctx)
    copies = kb._copies(cache.numel() * 2)
    caches = [cache] + [cache.clone() for _ in range(copies - 1)]
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, SCALE)
    from infinitecontext.kernels.mla_decode import default_num_splits

    splits = default_num_splits(
        batch,
        heads,
        ctx,
        torch.cuda.get_device_properties(0).multi_processor_count,
        default_config(heads),
    )
    for flush_name in ("zero", "read"):
        time_row(
            "shipped",
            heads,
            batch,
            ctx,
            lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, SCALE),
            caches,
            ref,
            flush_name,
        )
        for g in (1, 2, 4):
            if splits == 1:
                continue
            time_row(
                f"interleave{g}",
                heads,
                batch,
                ctx,
                lambda c, g=g: mv.run(q_lat, q_pe, c, lengths, SCALE, splits, interleave=g),
                caches,
                ref,
                flush_name,
            )
    if (batch, ctx) == (1, 128 * K):
        # Stream timeline: one flush, then the 8 calls back to back, per-program stamps (ns).
        for flush_name in ("zero", "read"):
            for g in (0, 1):
                stamps = [torch.zeros(splits, 4, dtype=torch.int64, device="cuda") for _ in caches]
                for _ in range(3):
                    FLUSHES[flush_name]()
                    for c, st in zip(caches, stamps):
                        mv.run(q_lat, q_pe, c, lengths, SCALE, splits, interleave=g, stamps=st)
                torch.cuda.synchronize()
                s = torch.stack([st.cpu() for st in stamps])  # (calls, programs, 4)
                t0 = int(s[:, :, 0].min())
                calls = []
                for i in range(len(caches)):
                    st = s[i]
                    calls.append(
                        {
                            "start_min": (int(st[:, 0].min()) - t0) / 1e3,
                            "start_max": (int(st[:, 0].max()) - t0) / 1e3,
                            "part_p50": (float(st[:, 1].double().median()) - t0) / 1e3,
                            "part_max": (int(st[:, 1].max()) - t0) / 1e3,
                        }
                    )
                res["timelines"][f"{flush_name}/interleave{g}"] = calls
                print(
                    f"timeline {flush_name} interleave{g}:",
                    [(round(c["start_min"], 1), round(c["part_max"], 1)) for c in calls],
                    flush=True,
                )
                save()
    del caches, cache
    torch.cuda.empty_cache()

# 2. H=128: interleave vs shipped (config of the shipped kernel).
for heads, batch, ctx in ((128, 8, 32 * K), (128, 1, 128 * K)):
    q_lat, q_pe, cache, lengths = inputs(heads, batch, ctx)
    copies = kb._copies(cache.numel() * 2)
    caches = [cache] + [cache.clone() for _ in range(copies - 1)]
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, SCALE)
    cfg = default_config(heads)
    from infinitecontext.kernels.mla_decode import default_num_splits

    splits = default_num_splits(
        batch, heads, ctx, torch.cuda.get_device_properties(0).multi_processor_count, cfg
    )
    for flush_name in ("zero", "read"):
        time_row(
            "shipped",
            heads,
            batch,
            ctx,
            lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, SCALE),
            caches,
            ref,
            flush_name,
        )
        for g in (0, 1):
            time_row(
                f"interleave{g}",
                heads,
                batch,
                ctx,
                lambda c, g=g: mv.run(
                    q_lat,
                    q_pe,
                    c,
                    lengths,
                    SCALE,
                    splits,
                    interleave=g,
                    block_h=cfg.block_h,
                    block_n=cfg.block_n,
                    num_warps=cfg.num_warps,
                    num_stages=cfg.num_stages,
                ),
                caches,
                ref,
                flush_name,
            )
    del caches, cache
    torch.cuda.empty_cache()

# 3. The 1M cache inside one 10 GiB allocation, at several offsets, vs its own allocation.
q_lat, q_pe, cache, lengths = inputs(16, 1, 1024 * K)
ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, SCALE)
n = cache.numel()
for tag in ("fresh",):
    time_row(
        "alloc fresh",
        16,
        1,
        1024 * K,
        lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, SCALE),
        [cache],
        ref,
        "zero",
    )
    time_row(
        "alloc fresh",
        16,
        1,
        1024 * K,
        lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, SCALE),
        [cache],
        ref,
        "read",
    )
big = torch.empty(10 * 2**30 // 2, device="cuda", dtype=torch.bfloat16)
for offset_gib in (0.0, 1.5, 4.0, 8.5):
    start = int(offset_gib * 2**30 // 2)
    view = big[start : start + n].view_as(cache)
    view.copy_(cache)
    for flush_name in ("zero", "read"):
        time_row(
            f"inside 10 GiB at {offset_gib} GiB",
            16,
            1,
            1024 * K,
            lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, SCALE),
            [view],
            ref,
            flush_name,
        )
save()
