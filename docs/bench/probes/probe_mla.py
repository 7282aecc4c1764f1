"""One-off A/B on the H100: split heuristic (126 vs new) and PDL on/off, stream timing."""
# ruff: noqa: B023  (one-off probe: the closures run inside the loop iteration that made them)

import json
import os
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
    (16, 1, 32 * K),
    (16, 1, 128 * K),
    (16, 1, 1024 * K),
    (16, 8, 32 * K),
    (16, 8, 128 * K),
    (128, 8, 32 * K),
    (128, 1, 128 * K),
    (128, 8, 128 * K),
]
for heads, batch, ctx in shapes:
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    copies = kb._copies(cache.numel() * 2)
    caches = [cache] + [cache.clone() for _ in range(copies - 1)]
    nbytes, flops = kb.mla_bytes(batch, ctx, heads), kb.mla_flops(batch, ctx, heads)
    variants = [(None, "1"), (None, "0")]
    if heads == 16 and batch == 1:
        variants += [(126, "0"), (126, "1"), (264, "1")]
    ref = None
    for splits, pdl in variants:
        os.environ["ICX_PDL"] = pdl

        def call(c, splits=splits):
            return mla_decode_triton(q_lat, q_pe, c, lengths, 0.1352, num_splits=splits)

        o, _ = call(cache)
        ref = o if ref is None else ref
        same = bool(torch.equal(o, ref))
        timing, how = kb.time_per_call(call, caches, flush)
        single, _ = kb.time_per_call(call, caches[:1], flush)
        r = kb._rates(timing, how, nbytes, flops, read)
        row = {
            "heads": heads,
            "batch": batch,
            "ctx": ctx,
            "splits": splits,
            "pdl": pdl,
            "us": timing.p50_ms * 1e3,
            "single_us": single.p50_ms * 1e3,
            "pct": r["pct_read_bw"],
            "tflops": r["TFLOPs"],
            "same_as_first": same,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    del caches, cache
    torch.cuda.empty_cache()
Path(out_path).write_text(json.dumps({"bandwidth": bw, "rows": rows}, indent=1))
