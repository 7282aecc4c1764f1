"""H100 probe 5 (session 5): the split kernel's tiles by TMA (`mla_variants5.py`) beside the
shipped kernel in one process: read flush, stream timing, two repeats.

    probe_variants5.py OUT.json [round]
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_variants5 as mv
from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import choose_num_splits, default_config, mla_decode_triton

K = 1024
out_path = Path(sys.argv[1])
ROUND = sys.argv[2] if len(sys.argv) > 2 else "1"
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
res = {"bandwidth": bw, "rows": []}

H16 = {
    "tma_n32_s3": dict(block_n=32, num_stages=3),
    "tma_n32_s4": dict(block_n=32, num_stages=4),
    "tma_n32_s5": dict(block_n=32, num_stages=5),
    "tma_n64_s2": dict(block_n=64, num_stages=2),
    "tma_n64_s3": dict(block_n=64, num_stages=3),
    "tma_n16_s6": dict(block_n=16, num_stages=6),
    "tma_n32_s3_w8": dict(block_n=32, num_stages=3, num_warps=8),
    "tma_n32_s3_contig": dict(block_n=32, num_stages=3, interleave=False),
}
H128 = {
    "tma_h64_n64_s2": dict(block_h=64, block_n=64, num_stages=2, num_warps=8, launch_early=False),
    "tma_h64_n64_s2_early": dict(block_h=64, block_n=64, num_stages=2, num_warps=8),
    "tma_h64_n32_s4": dict(block_h=64, block_n=32, num_stages=4, num_warps=8, launch_early=False),
}
SHAPES = [(16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K), (16, 1, 1024 * K), (16, 8, 128 * K)]
SHAPES += [(128, 8, 32 * K), (128, 1, 128 * K), (128, 64, 4 * K)]

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
    variants = {"shipped": None, **(H16 if heads == 16 else H128)}
    for repeat in range(2):
        for name, kw in variants.items():
            if kw is None:
                call = lambda c, ln=lengths: mla_decode_triton(q_lat, q_pe, c, ln, 0.1352)
                n_splits = None
            else:
                kw = {
                    "block_h": config.block_h,
                    "num_warps": config.num_warps,
                    "interleave": config.interleave,
                    **kw,
                }
                memory_bound = kw["block_h"] <= 16
                n_splits = choose_num_splits(
                    batch,
                    -(-heads // kw["block_h"]),
                    ctx,
                    132,
                    1,
                    kw["block_n"] if memory_bound else None,
                )
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
