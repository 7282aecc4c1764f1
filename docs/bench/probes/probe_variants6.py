"""H100 probe 6 (session 5): a dynamic tail inside the pipelined loop (`mla_variants6.py`)
beside the shipped kernel in one process: read flush, stream timing, two repeats.

    probe_variants6.py OUT.json [round]
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_variants6 as mv
from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import default_config, default_num_splits, mla_decode_triton

K = 1024
out_path = Path(sys.argv[1])
ROUND = sys.argv[2] if len(sys.argv) > 2 else "1"
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
res = {"bandwidth": bw, "rows": []}

H16 = {
    "dyn0_x1": dict(dyn=0, extra=1),
    "dyn1_x1": dict(dyn=1, extra=1),
    "dyn2_x1": dict(dyn=2, extra=1),
    "dyn3_x1": dict(dyn=3, extra=1),
    "dyn4_x1": dict(dyn=4, extra=1),
    "dyn2_x2": dict(dyn=2, extra=2),
}
if ROUND == "2":  # the loop form alone; each claim an iteration ahead of its tile
    H16 = {
        "static": dict(dyn=0, extra=0),
        "dyn0_x1": dict(dyn=0, extra=1),
        **{
            f"la_dyn{d}_x{x}": dict(dyn=d, extra=x, lookahead=True)
            for d, x in ((0, 1), (1, 1), (2, 1), (3, 1), (2, 2))
        },
    }
SHAPES = [(16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K), (16, 1, 1024 * K), (16, 8, 128 * K)]

for heads, batch, ctx in SHAPES:
    gen = torch.Generator(device="cuda").manual_seed(heads + batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    config = default_config(heads)
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352)
    ragged = torch.full((batch,), ctx - 37, dtype=torch.int32, device="cuda")
    ref_ragged, _ = mla_decode_triton(q_lat, q_pe, cache, ragged, 0.1352)
    variants = {"shipped": None, **H16}
    for repeat in range(2):
        for name, kw in variants.items():
            if kw is None:
                call = lambda c, ln=lengths: mla_decode_triton(q_lat, q_pe, c, ln, 0.1352)
                n_splits = None
            else:
                n_splits = default_num_splits(batch, heads, ctx, 132, config)
                call = lambda c, ln=lengths, kw=kw, n=n_splits: mv.run(
                    q_lat, q_pe, c, ln, 0.1352, n, **kw
                )
            try:
                o, _ = call(cache)
                err = float((o.float() - ref.float()).norm() / ref.float().norm())
                o2, _ = call(cache, ragged)
                err2 = float((o2.float() - ref_ragged.float()).norm() / ref_ragged.float().norm())
                timing, how = kb.time_per_call(call, caches, flush)
                r = kb._rates(
                    timing,
                    how,
                    kb.mla_bytes(batch, ctx, heads),
                    kb.mla_flops(batch, ctx, heads),
                    read,
                )
                row = {
                    "heads": heads,
                    "batch": batch,
                    "ctx": ctx,
                    "splits": n_splits,
                    "variant": name,
                    "repeat": repeat,
                    "us": round(timing.p50_ms * 1e3, 2),
                    "pct": round(r["pct_read_bw"], 2),
                    "tflops": round(r["TFLOPs"], 1),
                    "err_vs_shipped": err,
                    "err_ragged": err2,
                }
            except Exception as exc:
                row = {
                    "heads": heads,
                    "batch": batch,
                    "ctx": ctx,
                    "variant": name,
                    "repeat": repeat,
                    "error": repr(exc)[:300],
                }
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
            out_path.write_text(json.dumps(res, indent=1))
    del caches, cache
    torch.cuda.empty_cache()
