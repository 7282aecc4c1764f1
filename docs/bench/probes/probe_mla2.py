"""Run 6 probe (H100, stream timing): partial outputs fp32 vs bf16, and tiles × splits at
H=16, B=1, 128k. It ran on commit 2022e2d, whose launcher had a `partial_dtype` argument
(bf16 by default); that option was removed after this probe measured bf16 slower."""
# ruff: noqa: B023  (one-off probe: the closures run inside the loop iteration that made them)

import json
import sys
from pathlib import Path

import torch

from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import mla_decode_triton

K = 1024
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
rows = []
shapes = [(16, 1, 128 * K), (16, 8, 32 * K), (128, 8, 32 * K), (128, 1, 128 * K), (128, 32, 32 * K)]
for heads, batch, ctx in shapes:
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    copies = kb._copies(cache.numel() * 2)
    caches = [cache] + [cache.clone() for _ in range(copies - 1)]
    nbytes, flops = kb.mla_bytes(batch, ctx, heads), kb.mla_flops(batch, ctx, heads)
    ref, _ = kb._reference_in_chunks(q_lat, q_pe, cache, lengths)
    for rep in range(2):
        for dtype in (torch.float32, torch.bfloat16):

            def call(c, dtype=dtype):
                return mla_decode_triton(
                    q_lat, q_pe, c, lengths, kb.SOFTMAX_SCALE, partial_dtype=dtype
                )

            o, _ = call(cache)
            err = float((o.float() - ref).norm() / ref.norm())
            timing, how = kb.time_per_call(call, caches, flush)
            r = kb._rates(timing, how, nbytes, flops, read)
            row = {
                "heads": heads,
                "batch": batch,
                "ctx": ctx,
                "partials": str(dtype),
                "rep": rep,
                "us": timing.p50_ms * 1e3,
                "pct": r["pct_read_bw"],
                "tflops": r["TFLOPs"],
                "rel_err_vs_fp32_ref": err,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    del caches, cache
    torch.cuda.empty_cache()

# H=16, B=1, 128k: splits and tiles around the shipped choice.
from infinitecontext.kernels.mla_decode import DecodeConfig  # noqa: E402

batch, heads, ctx = 1, 16, 128 * K
q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16)
lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
nbytes, flops = kb.mla_bytes(batch, ctx, heads), kb.mla_flops(batch, ctx, heads)
sweep = []
for splits in (None, 128, 120):
    for cfg in (
        None,
        DecodeConfig(16, 64, 4, 3, 1),
        DecodeConfig(16, 64, 8, 3, 1),
        DecodeConfig(16, 32, 4, 4, 1),
        DecodeConfig(16, 32, 8, 3, 1),
    ):

        def call(c, splits=splits, cfg=cfg):
            return mla_decode_triton(
                q_lat, q_pe, c, lengths, kb.SOFTMAX_SCALE, num_splits=splits, config=cfg
            )

        timing, how = kb.time_per_call(call, caches, flush)
        r = kb._rates(timing, how, nbytes, flops, read)
        row = {
            "splits": splits,
            "config": str(cfg),
            "us": timing.p50_ms * 1e3,
            "pct": r["pct_read_bw"],
        }
        sweep.append(row)
        print(json.dumps(row), flush=True)
Path(sys.argv[1]).write_text(
    json.dumps({"bandwidth": bw, "rows": rows, "sweep_h16_b1_128k": sweep}, indent=1)
)
