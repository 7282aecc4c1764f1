"""Session 7: split counts for the Hopper split kernel at small batches. `choose_num_splits`
cuts B = 1, 128k from 132 chunks to 128 (the Triton kernel's static chunks end with the
longest one, so fewer chunks cost nothing there); the Hopper kernel claims its last tiles
at run time, so 132 chunks could keep all 132 SMs busy. At 4k the 256-token floor leaves
16 chunks. Same timing as the benchmark (read flush, distinct caches in one graph), two
repeats, 16 heads; "default" is the launcher's own count.

    python ab_splits.py OUT.json
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import mla_decode_triton

K = 1024
# (batch, ctx): split counts to try with the Hopper kernel (None: the launcher's)
SHAPES = {
    (1, 128 * K): (None, 132),
    (1, 32 * K): (None, 132),
    (1, 1024 * K): (None, 128),
    (1, 4 * K): (None, 32, 64, 128),
    (8, 4 * K): (None, 8),
    (2, 128 * K): (None,),
}
out_path = Path(sys.argv[1])
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
print(torch.cuda.get_device_name(), "bandwidth", bw, flush=True)
res = {"gpu": torch.cuda.get_device_name(), "bandwidth": bw, "rows": []}
heads = 16
for (batch, ctx), split_counts in SHAPES.items():
    gen = torch.Generator(device="cuda").manual_seed(batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352, hopper=False)
    variants = [("hopper", True, s) for s in split_counts] + [("triton", False, None)]
    for repeat in range(2):
        for kernel, use, splits in variants:
            call = lambda c, h=use, s=splits: mla_decode_triton(
                q_lat, q_pe, c, lengths, 0.1352, num_splits=s, hopper=h
            )
            try:
                err = float((call(cache)[0].float() - ref.float()).norm() / ref.float().norm())
                timing, how = kb.time_per_call(call, caches, flush)
            except Exception as exc:
                print(kernel, splits, "failed", repr(exc)[:300], flush=True)
                continue
            r = kb._rates(
                timing,
                how,
                kb.mla_bytes(batch, ctx, heads),
                kb.mla_flops(batch, ctx, heads),
                bw["read_GBps"],
            )
            row = dict(
                batch=batch,
                ctx=ctx,
                kernel=kernel,
                splits=splits or "default",
                repeat=repeat,
                us=round(timing.p50_ms * 1e3, 2),
                pct=round(r["pct_read_bw"], 2),
                err=err,
            )
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
            out_path.write_text(json.dumps(res, indent=1))
    del caches, cache
    torch.cuda.empty_cache()
