"""One-off A/B on the H100: split counts (None = the shipped rule), stream timing."""
# ruff: noqa: B023

import json
import sys
from pathlib import Path

import torch

from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import mla_decode_triton

K = 1024
out_path = sys.argv[1]
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
rows = []
shapes = [
    (16, 1, 128 * K, [None, 128, 132, 120, 96, 64]),
    (16, 1, 1024 * K, [None, 128, 132]),
    (16, 1, 32 * K, [None, 128, 132]),
    (16, 8, 32 * K, [None, 16, 12]),
    (128, 1, 128 * K, [None, 64, 66]),
    (128, 8, 32 * K, [None, 8]),
]
for heads, batch, ctx, variants in shapes:
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    copies = kb._copies(cache.numel() * 2)
    caches = [cache] + [cache.clone() for _ in range(copies - 1)]
    nbytes, flops = kb.mla_bytes(batch, ctx, heads), kb.mla_flops(batch, ctx, heads)
    ref = None
    for repeat in range(2):
        for splits in variants:

            def call(c, splits=splits):
                return mla_decode_triton(q_lat, q_pe, c, lengths, 0.1352, num_splits=splits)

            o, _ = call(cache)
            ref = o if ref is None else ref
            err = float((o.float() - ref.float()).norm() / ref.float().norm())
            timing, how = kb.time_per_call(call, caches, flush)
            r = kb._rates(timing, how, nbytes, flops, read)
            row = {
                "heads": heads, "batch": batch, "ctx": ctx, "splits": splits,
                "repeat": repeat, "us": round(timing.p50_ms * 1e3, 2),
                "pct": r["pct_read_bw"], "tflops": r["TFLOPs"], "rel_to_first": err,
            }  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    del caches, cache
    torch.cuda.empty_cache()
Path(out_path).write_text(json.dumps({"bandwidth": bw, "rows": rows}, indent=1))
