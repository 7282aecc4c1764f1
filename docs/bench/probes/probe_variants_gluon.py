"""H100 probe (session 5): the Gluon split kernel (`mla_gluon.py`) beside the shipped one,
timed as the benchmark times a call (read flush, 8 distinct inputs in one graph), two
repeats, outputs checked against the shipped kernel at the full and a ragged length.

    probe_variants_gluon.py OUT.json [round]
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_gluon as mg
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

VARIANTS = {
    "shipped": None,
    **{f"gluon_b{n}": dict(num_buf=n) for n in (2, 3, 4, 5)},
    **{f"gluon_b{n}_alone": dict(num_buf=n, combine=False) for n in (3, 4)},
}
if ROUND == "2":  # q in shared memory, K-sliced scores, four accumulator pieces; dynamic tail
    VARIANTS = {
        "shipped": None,
        "gluon_b3": dict(num_buf=3),
        **{f"gluon_k_b{n}": dict(num_buf=n, chunked=True) for n in (3, 4)},
        "gluon_k_b3_alone": dict(num_buf=3, chunked=True, combine=False),
        **{f"gluon_k_dyn{d}": dict(num_buf=3, chunked=True, dyn=d) for d in (1, 2, 4, 8)},
        "gluon_k_dyn2_alone": dict(num_buf=3, chunked=True, dyn=2, combine=False),
    }
if ROUND == "3":  # the claims requested an iteration before they are used
    VARIANTS = {
        "shipped": None,
        "gluon_k_b3": dict(num_buf=3, chunked=True),
        "gluon_k_b3_alone": dict(num_buf=3, chunked=True, combine=False),
        "gluon_k_dyn2": dict(num_buf=3, chunked=True, dyn=2),
        **{
            f"gluon_k_dyn{d}_la": dict(num_buf=3, chunked=True, dyn=d, lookahead=True)
            for d in (1, 2, 4, 8)
        },
        "gluon_k_dyn4_la_alone": dict(
            num_buf=3, chunked=True, dyn=4, lookahead=True, combine=False
        ),
    }
SHAPES = [(16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K), (16, 1, 1024 * K), (16, 8, 128 * K)]
for heads, batch, ctx in SHAPES:
    gen = torch.Generator(device="cuda").manual_seed(heads + batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    splits = default_num_splits(batch, heads, ctx, 132, default_config(heads))
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352)
    ragged = torch.randint(1, ctx, (batch,), dtype=torch.int32, device="cuda", generator=gen)
    ref_ragged, _ = mla_decode_triton(q_lat, q_pe, cache, ragged, 0.1352)
    for repeat in range(2):
        for name, kw in VARIANTS.items():
            if kw is None:
                call = lambda c, ln=lengths: mla_decode_triton(q_lat, q_pe, c, ln, 0.1352)
            else:
                call = lambda c, ln=lengths, kw=kw: mg.run(q_lat, q_pe, c, ln, 0.1352, splits, **kw)
            row = {
                "heads": heads,
                "batch": batch,
                "ctx": ctx,
                "splits": splits,
                "variant": name,
                "repeat": repeat,
            }
            try:
                if kw is None or kw.get("combine", True):
                    o, _ = call(cache)
                    row["err_vs_shipped"] = float(
                        (o.float() - ref.float()).norm() / ref.float().norm()
                    )
                    o2, _ = call(cache, ragged)
                    row["err_ragged"] = float(
                        (o2.float() - ref_ragged.float()).norm() / ref_ragged.float().norm()
                    )
                timing, how = kb.time_per_call(call, caches, flush)
                r = kb._rates(
                    timing,
                    how,
                    kb.mla_bytes(batch, ctx, heads),
                    kb.mla_flops(batch, ctx, heads),
                    read,
                )
                row.update(us=round(timing.p50_ms * 1e3, 2), pct=round(r["pct_read_bw"], 2))
            except Exception as exc:
                row["error"] = repr(exc)[:400]
            res["rows"].append(row)
            print(json.dumps(row), flush=True)
            out_path.write_text(json.dumps(res, indent=1))
    del caches, cache
    torch.cuda.empty_cache()
