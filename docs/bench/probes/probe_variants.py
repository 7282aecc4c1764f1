"""H100 A/B of split-kernel variants at H=16, B=1 (scratch/mla_variants.py), stream timing,
plus a per-program timeline (%globaltimer) of one call."""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_variants as mv
from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import mla_decode_triton

K = 1024
out_path = Path(sys.argv[1])
contexts = [int(c) * K for c in (sys.argv[2] if len(sys.argv) > 2 else "128,32,1024").split(",")]
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
rows: list = []
timelines: dict = {}


def save() -> None:
    out_path.write_text(
        json.dumps({"bandwidth": bw, "rows": rows, "timelines": timelines}, indent=1)
    )


VARIANTS = {
    "shipped": None,
    "base": {},
    "interleave": dict(interleave=True),
    "evict": dict(evict=True),
    "stages4": dict(num_stages=4),
    "fused": dict(fused=True),
    "fused_evict": dict(fused=True, evict=True),
    "fused_interleave": dict(fused=True, interleave=True),
}
SPLITS = 128
scale = 0.1352
for ctx in contexts:
    heads, batch = 16, 1
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    copies = kb._copies(cache.numel() * 2)
    caches = [cache] + [cache.clone() for _ in range(copies - 1)]
    nbytes, flops = kb.mla_bytes(batch, ctx, heads), kb.mla_flops(batch, ctx, heads)
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, scale)
    for repeat in range(2):
        for name, kw in VARIANTS.items():
            if kw is None:
                call = lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, scale)
            else:
                call = lambda c, kw=kw: mv.run(q_lat, q_pe, c, lengths, scale, SPLITS, **kw)
            try:
                o, _ = call(cache)
                torch.cuda.synchronize()
                err = float((o.float() - ref.float()).norm() / ref.float().norm())
                timing, how = kb.time_per_call(call, caches, flush)
                r = kb._rates(timing, how, nbytes, flops, read)
                row = {
                    "ctx": ctx,
                    "variant": name,
                    "repeat": repeat,
                    "copies": copies,
                    "us": round(timing.p50_ms * 1e3, 2),
                    "pct": r["pct_read_bw"],
                    "rel_to_shipped": err,
                }
            except Exception as exc:  # noqa: BLE001
                row = {"ctx": ctx, "variant": name, "repeat": repeat, "error": repr(exc)[:300]}
            rows.append(row)
            print(json.dumps(row), flush=True)
            save()
    # One call after an L2 flush, each program's start / partial-written / done times (ns).
    for name in ("base", "fused", "interleave"):
        stamps = torch.zeros(SPLITS, 4, dtype=torch.int64, device="cuda")
        for _ in range(3):
            flush()
            mv.run(q_lat, q_pe, cache, lengths, scale, SPLITS, stamps=stamps, **VARIANTS[name])
        torch.cuda.synchronize()
        s = stamps.cpu()
        t0 = int(s[:, 0].min())
        rel = (s[:, :3] - t0).tolist()
        starts, parts, ends = s[:, 0] - t0, s[:, 1] - t0, s[:, 2] - t0
        summary = {
            "start_max_us": float(starts.max()) / 1e3,
            "partial_min_us": float(parts.min()) / 1e3,
            "partial_median_us": float(parts.median()) / 1e3,
            "partial_max_us": float(parts.max()) / 1e3,
            "end_max_us": float(ends.max()) / 1e3,
        }
        timelines[f"{ctx // K}k/{name}"] = {
            "summary": summary,
            "rel_ns": rel,
            "smid": s[:, 3].tolist(),
        }
        print(f"timeline {ctx // K}k {name}: {summary}", flush=True)
        save()
    del caches, cache
    torch.cuda.empty_cache()
save()
