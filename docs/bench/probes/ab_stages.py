"""Session 7: the shipped MLA decode with the Hopper split kernel at 3 (shipped), 4 and 5
shared-memory stages, and at 4 stages with 16 claimed tiles, beside the Triton split
kernel, in one process, the benchmark's way (read flush, 8 distinct caches in one graph),
two repeats, 16 heads. Run 12's grid had the Hopper kernel 1-3.5% behind the Triton kernel
at B >= 8 from 32k on (a lower steady-state streaming rate per SM); deeper stages keep
more bytes in flight.

    python ab_stages.py OUT.json
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

from infinitecontext.kernels import bench as kb
from infinitecontext.kernels import mla_decode_hopper as hopper
from infinitecontext.kernels.mla_decode import mla_decode_triton

K = 1024
VARIANTS = {"s3": (3, 8), "s4": (4, 8), "s5": (5, 8), "s4_dyn16": (4, 16), "triton": None}
SHAPES = (
    (1, 128 * K),
    (8, 32 * K),
    (8, 128 * K),
    (64, 128 * K),
    (1, 1024 * K),
    (1, 32 * K),
    (2, 128 * K),
    (4, 128 * K),
)
out_path = Path(sys.argv[1])
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
print(torch.cuda.get_device_name(), "bandwidth", bw, flush=True)
res = {"gpu": torch.cuda.get_device_name(), "bandwidth": bw, "rows": []}
heads = 16
for batch, ctx in SHAPES:
    gen = torch.Generator(device="cuda").manual_seed(batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352, hopper=False)
    for repeat in range(2):
        for name, variant in VARIANTS.items():
            if variant is not None:
                hopper.NUM_STAGES, hopper.DYNAMIC_TILES = variant
            use = variant is not None
            call = lambda c, h=use: mla_decode_triton(q_lat, q_pe, c, lengths, 0.1352, hopper=h)
            try:
                err = float((call(cache)[0].float() - ref.float()).norm() / ref.float().norm())
                timing, how = kb.time_per_call(call, caches, flush)
            except Exception as exc:
                print(name, "failed", repr(exc)[:300], flush=True)
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
                variant=name,
                repeat=repeat,
                us=round(timing.p50_ms * 1e3, 2),
                pct=round(r["pct_read_bw"], 2),
                err=err,
            )
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
            out_path.write_text(json.dumps(res, indent=1))
    hopper.NUM_STAGES, hopper.DYNAMIC_TILES = VARIANTS["s3"]
    del caches, cache
    torch.cuda.empty_cache()
