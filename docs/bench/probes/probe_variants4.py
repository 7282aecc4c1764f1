"""H100 probe 4 (session 4): PDL on the split kernel, the combine's load order, the folded
softmax scale, unmasked full tiles and L2 prefetch before the PDL wait (`mla_variants4.py`),
beside the shipped kernel in one process: read flush, stream timing, two repeats.

    probe_variants4.py OUT.json [round]   round 1: the flags one by one; round 2: prefetch
    depth at 16 heads, unmasked tiles over more 128-head shapes; round 3: warps, stages,
    combine tiles, split counts; round 4: a dynamic tail (the last tiles claimed from a
    counter)
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_variants4 as mv
from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import default_config, default_num_splits, mla_decode_triton

K = 1024
out_path = Path(sys.argv[1])
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
res = {"bandwidth": bw, "rows": []}
COMMON = {
    "v4": {},
    "pdl": dict(pdl_wait=True, trigger=True),
    "hoist": dict(hoist=True),
    "fold": dict(fold=True),
    "tail": dict(split_tail=True),
    "fold_tail": dict(fold=True, split_tail=True),
    "pdl_hoist": dict(pdl_wait=True, trigger=True, hoist=True),
    "all": dict(pdl_wait=True, trigger=True, hoist=True, fold=True, split_tail=True),
}
H16_ONLY = {
    "static": dict(static=True),
    "pdl_hoist_static": dict(pdl_wait=True, trigger=True, hoist=True, static=True),
}
SHAPES = [(16, 1, 128 * K), (128, 8, 32 * K), (16, 1, 32 * K), (16, 8, 32 * K), (128, 1, 128 * K)]
ROUND = sys.argv[2] if len(sys.argv) > 2 else "1"
if ROUND == "2":
    PDL = dict(pdl_wait=True, trigger=True, hoist=True)
    COMMON = {}
    H16_ONLY = {
        "pdl_hoist": PDL,
        **{f"pdl_hoist_pf{n}": dict(PDL, prefetch=n) for n in (1, 2, 3, 4, 6)},
    }
    H128_ONLY = {
        "tail": dict(split_tail=True),
        "fold_tail": dict(fold=True, split_tail=True),
        "fold_tail_pdl_hoist": dict(PDL, fold=True, split_tail=True),
    }
    SHAPES = [
        (16, 1, 128 * K),
        (16, 1, 32 * K),
        (16, 8, 32 * K),
        (16, 1, 1024 * K),
        (16, 8, 128 * K),
    ]
    SHAPES += [
        (128, b, c * K)
        for b, c in ((8, 32), (1, 128), (1, 32), (8, 128), (32, 32), (64, 4), (1, 4))
    ]
elif ROUND == "3":
    PDL = dict(pdl_wait=True, trigger=True, hoist=True)
    COMMON = {}
    H16_ONLY = {
        "pdl_hoist": PDL,
        "pdl_hoist_w2": dict(PDL, num_warps=2),
        "pdl_hoist_s4": dict(PDL, num_stages=4),
        "pdl_hoist_cd32": dict(PDL, combine_d=32),
        "pdl_hoist_cd128": dict(PDL, combine_d=128),
        "pdl_hoist_cw8": dict(PDL, combine_warps=8),
        "pdl_hoist_132": dict(PDL, num_splits=132),
        "pdl_hoist_120": dict(PDL, num_splits=120),
    }
    H128_ONLY = {
        "tail": dict(split_tail=True),
        "tail_s3": dict(split_tail=True, num_stages=3),
        "tail_n32_s3": dict(split_tail=True, block_n=32, num_stages=3),
        "tail_n32_s4": dict(split_tail=True, block_n=32, num_stages=4),
        "tail_pdl": dict(split_tail=True, pdl_wait=True, trigger=True),
        "tail_splits_x2": dict(split_tail=True, splits_factor=2),
    }
    SHAPES = [(16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K)]
    SHAPES += [(128, b, c * K) for b, c in ((8, 32), (1, 128), (64, 4))]
elif ROUND == "4":
    PDL = dict(pdl_wait=True, trigger=True, hoist=True)
    COMMON = {}
    H16_ONLY = {
        "pdl_hoist": PDL,
        **{f"dyn{n}": dict(PDL, dyn=n) for n in (1, 2, 4)},
        **{f"dyn{n}_132": dict(PDL, dyn=n, num_splits=132) for n in (1, 2)},
    }
    if len(sys.argv) > 3:  # round 4b: without the register prefetch
        H16_ONLY = {
            "pdl_hoist": PDL,
            **{f"dyn{n}_nopf": dict(PDL, dyn=n, dyn_prefetch=False) for n in (1, 2)},
            "dyn1_nopf_132": dict(PDL, dyn=1, dyn_prefetch=False, num_splits=132),
        }
    H128_ONLY = {}
    SHAPES = [(16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K), (16, 1, 1024 * K)]
else:
    H128_ONLY = {}
for heads, batch, ctx in SHAPES:
    gen = torch.Generator(device="cuda").manual_seed(heads + batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    config = default_config(heads)
    splits = default_num_splits(batch, heads, ctx, 132, config)
    base = dict(
        block_h=config.block_h,
        block_n=config.block_n,
        num_warps=config.num_warps,
        num_stages=config.num_stages,
        interleave=config.interleave,
    )
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352)
    # A ragged length too, for the error check of the tail path.
    ragged = torch.full((batch,), ctx - 37, dtype=torch.int32, device="cuda")
    ref_ragged, _ = mla_decode_triton(q_lat, q_pe, cache, ragged, 0.1352)
    variants = {"shipped": None, **COMMON, **(H16_ONLY if heads == 16 else H128_ONLY)}
    for repeat in range(2):
        for name, kw in variants.items():
            if kw is None:
                call = lambda c, ln=lengths: mla_decode_triton(q_lat, q_pe, c, ln, 0.1352)
            else:
                kw = dict(kw)
                n_splits = kw.pop("num_splits", splits) * kw.pop("splits_factor", 1)
                call = lambda c, ln=lengths, kw=kw, n=n_splits: mv.run(
                    q_lat, q_pe, c, ln, 0.1352, n, **{**base, **kw}
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
                    "splits": splits if kw is None else n_splits,
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
