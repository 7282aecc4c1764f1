"""H100 probe 7 (session 5): the shipped 16-head call taken apart (`mla_variants7.py`): the
split kernel with and without its arithmetic, with and without the combine, and the
bandwidth kernel over a buffer of the cache's size, all timed as the benchmark times a
call (read flush, 8 distinct inputs in one graph), two repeats.

    probe_variants7.py OUT.json [round]   round 2: the split kernel alone, tile shapes
"""
# ruff: noqa

import json
import sys
from functools import partial
from pathlib import Path

import torch
import triton

import mla_variants7 as mv
from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import default_config, default_num_splits, mla_decode_triton

K = 1024
out_path = Path(sys.argv[1])
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
res = {"bandwidth": bw, "rows": []}


def read_stream(buf, block=4096, iters=8, warps=8):
    n = buf.numel()
    programs = triton.cdiv(n, block * iters)
    sink = torch.empty(programs, device="cuda")
    kb._read_kernel[(programs,)](buf, sink, n, BLOCK=block, ITERS=iters, num_warps=warps)


VARIANTS = {
    "shipped": None,
    "v7_compute": dict(compute=True),
    "v7_split_only": dict(compute=True, combine=False),
    "v7_dots_only": dict(compute=False),
    "v7_dots_only_no_combine": dict(compute=False, combine=False),
}
SHAPES = [(16, 1, 128 * K), (16, 1, 1024 * K), (16, 1, 32 * K)]
READS = True
if len(sys.argv) > 2 and sys.argv[2] == "2":  # the split kernel's tile shape and depth, alone
    VARIANTS = {"shipped": None, "v7_compute": dict(compute=True)}
    for n, st, w, sp in (
        (32, 3, 4, None),
        (32, 4, 4, None),
        (32, 5, 4, None),
        (16, 6, 4, None),
        (16, 8, 4, None),
        (64, 2, 4, None),
        (64, 3, 4, None),
        (32, 3, 8, None),
        (64, 3, 8, None),
        (32, 3, 4, 256),
        (16, 4, 4, 256),
        (16, 4, 4, 384),
    ):
        for compute in (True, False):
            name = f"{'split' if compute else 'dots'}_n{n}_s{st}_w{w}" + (f"_x{sp}" if sp else "")
            VARIANTS[name] = dict(
                compute=compute, combine=False, block_n=n, num_stages=st, num_warps=w, splits=sp
            )
    SHAPES = [(16, 1, 128 * K), (16, 1, 32 * K)]
    READS = False
for heads, batch, ctx in SHAPES:
    gen = torch.Generator(device="cuda").manual_seed(heads + batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    flat = [c.view(-1).view(torch.float32) for c in caches]
    splits = default_num_splits(batch, heads, ctx, 132, default_config(heads))
    nbytes = kb.mla_bytes(batch, ctx, heads)
    for repeat in range(2):
        rows = {}
        for name, kw in VARIANTS.items():
            if kw is None:
                call = lambda c: mla_decode_triton(q_lat, q_pe, c, lengths, 0.1352)
            else:
                kw = dict(kw)
                n = kw.pop("splits", None) or splits
                call = lambda c, kw=kw, n=n: mv.run(q_lat, q_pe, c, lengths, 0.1352, n, **kw)
            try:
                rows[name] = kb.time_per_call(call, caches, flush)
            except Exception as exc:  # e.g. out of shared memory
                print(name, repr(exc)[:200], flush=True)
        for warps in (4, 8) if READS else ():
            for iters in (8, 32):
                rows[f"read_kernel_w{warps}_i{iters}"] = kb.time_per_call(
                    partial(read_stream, iters=iters, warps=warps), flat, flush
                )
        if READS:
            rows["torch_sum"] = kb.time_per_call(torch.sum, flat, flush)
        for name, (timing, how) in rows.items():
            us = timing.p50_ms * 1e3
            row = {
                "heads": heads,
                "batch": batch,
                "ctx": ctx,
                "splits": splits,
                "variant": name,
                "repeat": repeat,
                "us": round(us, 2),
                "pct": round(100 * nbytes / (us * 1e-6) / 1e9 / read, 2),
                "how": how,
            }
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
        out_path.write_text(json.dumps(res, indent=1))
    del caches, cache, flat
    torch.cuda.empty_cache()
