"""H100 probe 3 (session 3): tile height, pipeline depth and programs per SM for the
interleaved 16-head split kernel at B=1 (read flush, stream timing, two repeats)."""
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
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
res = {"bandwidth": bw, "rows": []}
VARIANTS = {  # name: (splits, kwargs)
    "shipped": (None, None),
    "il_128_n32_s3": (128, dict(interleave=1)),
    "il_132_n32_s3": (132, dict(interleave=1)),
    "il_128_n16_s4": (128, dict(interleave=1, block_n=16, num_stages=4)),
    "il_128_n16_s6": (128, dict(interleave=1, block_n=16, num_stages=6)),
    "il_132_n16_s6": (132, dict(interleave=1, block_n=16, num_stages=6)),
    "il_256_n32_s2": (256, dict(interleave=1, num_stages=2)),
    "il_256_n16_s3": (256, dict(interleave=1, block_n=16, num_stages=3)),
    "il_128_n32_s3_w8": (128, dict(interleave=1, num_warps=8)),
    "il_128_n64_s2": (128, dict(interleave=1, block_n=64, num_stages=2)),
}
for ctx in (128 * K, 32 * K):
    q_lat = torch.randn(1, 16, 512, device="cuda", dtype=torch.bfloat16)
    q_pe = torch.randn(1, 16, 64, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(1, ctx, 576, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((1,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352)
    for repeat in range(2):
        for name, (splits, kw) in VARIANTS.items():
            if kw is None:
                call = lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, 0.1352)
            else:
                call = lambda c, s=splits, kw=kw: mv.run(q_lat, q_pe, c, lengths, 0.1352, s, **kw)
            try:
                o, _ = call(cache)
                err = float((o.float() - ref.float()).norm() / ref.float().norm())
                timing, how = kb.time_per_call(call, caches, flush)
                r = kb._rates(timing, how, kb.mla_bytes(1, ctx, 16), kb.mla_flops(1, ctx, 16), read)
                row = {
                    "ctx": ctx,
                    "variant": name,
                    "repeat": repeat,
                    "us": round(timing.p50_ms * 1e3, 2),
                    "pct": round(r["pct_read_bw"], 2),
                    "err": err,
                }
            except Exception as exc:
                row = {"ctx": ctx, "variant": name, "repeat": repeat, "error": repr(exc)[:200]}
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
            out_path.write_text(json.dumps(res, indent=1))
    del caches, cache
    torch.cuda.empty_cache()
