"""Session 6, last call: the shipped MLA decode with the Hopper split kernel against the
same call on the Triton split kernel, side by side in one process, the benchmark's way
(read flush, 8 distinct caches in one graph), two repeats, 16 heads.

    python ab_hopper.py OUT.json
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import mla_decode_triton

K = 1024
out_path = Path(sys.argv[1])
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
print(torch.cuda.get_device_name(), "bandwidth", bw, flush=True)
res = {"gpu": torch.cuda.get_device_name(), "bandwidth": bw, "rows": []}
for heads, batch, ctx in ((16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K), (16, 1, 1024 * K)):
    gen = torch.Generator(device="cuda").manual_seed(batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352, hopper=False)
    for repeat in range(2):
        for hopper in (True, False):
            call = lambda c, h=hopper: mla_decode_triton(q_lat, q_pe, c, lengths, 0.1352, hopper=h)
            err = float((call(cache)[0].float() - ref.float()).norm() / ref.float().norm())
            timing, how = kb.time_per_call(call, caches, flush)
            r = kb._rates(
                timing,
                how,
                kb.mla_bytes(batch, ctx, heads),
                kb.mla_flops(batch, ctx, heads),
                bw["read_GBps"],
            )
            row = dict(
                heads=heads,
                batch=batch,
                ctx=ctx,
                split_kernel="hopper" if hopper else "triton",
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
