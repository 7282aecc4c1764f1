"""H100 probe (session 6): the warp-specialised Gluon split kernel (`mla_gluon_ws.py`)
beside the shipped one, timed as the benchmark times a call (read flush, 8 distinct inputs
in one graph), two repeats, outputs checked against the shipped kernel at the full and a
ragged length.

    probe_variants_ws.py smoke OUT.json [round]   each variant once on small shapes (run
                                                  under `timeout`: a wrong barrier hangs)
    probe_variants_ws.py time OUT.json [round]    the variants the smoke passed, timed
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_gluon_ws as mw
import mla_gluon_ws2 as mw2
from infinitecontext.kernels import bench as kb
from infinitecontext.kernels.mla_decode import default_config, default_num_splits, mla_decode_triton

K = 1024
MODE, out_path = sys.argv[1], Path(sys.argv[2])
ROUND = sys.argv[3] if len(sys.argv) > 3 else "1"
VARIANTS = {
    "shipped": None,
    "ws_b4": dict(num_buf=4),
    "ws_b4_rep": dict(num_buf=4, rep=True),
    "ws_b5_rep": dict(num_buf=5, rep=True),
    "ws_b4_alone": dict(num_buf=4, combine=False),
    "ws_b4_rep_alone": dict(num_buf=4, rep=True, combine=False),
    **{f"ws_b4_dyn{d}": dict(num_buf=4, dyn=d) for d in (2, 8, 99)},
    **{f"ws_b4_rep_dyn{d}": dict(num_buf=4, rep=True, dyn=d) for d in (2, 99)},
    "ws_b4_rep_dyn99_s132": dict(num_buf=4, rep=True, dyn=99, splits=132),
    "ws_b4_rep_dyn99_alone": dict(num_buf=4, rep=True, dyn=99, combine=False),
}
if ROUND == "2":  # registers capped (the next kernels' programs fit beside), q loaded late
    R = dict(maxnreg=128)
    Q = dict(maxnreg=128, q_in_consumer=True)
    VARIANTS = {
        "shipped": None,
        "ws_b4": dict(num_buf=4),
        "ws_b4_r128": dict(num_buf=4, **R),
        **{f"ws_b{b}_r128_qc": dict(num_buf=b, **Q) for b in (4, 3, 2)},
        "ws_b4_r128_qc_alone": dict(num_buf=4, combine=False, **Q),
        **{f"ws_b{b}_r128_qc_dyn99": dict(num_buf=b, dyn=99, **Q) for b in (4, 3, 2)},
        "ws_b4_r128_qc_dyn99_s132": dict(num_buf=4, dyn=99, splits=132, **Q),
        "ws_b3_r128_qc_dyn8": dict(num_buf=3, dyn=8, **Q),
        "ws_b4_r128_qc_rep_dyn99": dict(num_buf=4, dyn=99, rep=True, **Q),
    }
if ROUND == "3":  # claims, stage count, 16-row tiles, bf16 partials
    Q = dict(maxnreg=128, q_in_consumer=True)
    VARIANTS = {
        "shipped": None,
        **{f"ws_b2_dyn{d}": dict(num_buf=2, dyn=d, **Q) for d in (99, 16, 8, 4)},
        **{f"ws_b3_dyn{d}": dict(num_buf=3, dyn=d, **Q) for d in (16, 8, 4)},
        "ws_b3_dyn8_alone": dict(num_buf=3, dyn=8, combine=False, **Q),
        **{f"ws_b{b}_dyn8_bf16p": dict(num_buf=b, dyn=8, bf16_parts=True, **Q) for b in (2, 3)},
        **{
            f"ws_n16_b{b}_dyn{d}": dict(num_buf=b, dyn=d, block_n=16, **Q)
            for b, d in ((4, 16), (5, 16), (4, 32), (5, 99))
        },
    }
if ROUND == "4":  # split_ws2: waits inside the partitions, a first tile before the length
    Q = dict(maxnreg=128, q_in_consumer=True)
    VARIANTS = {
        "shipped": None,
        "ws_b2_dyn8": dict(num_buf=2, dyn=8, **Q),
        "ws_b2_dyn8_bf16p": dict(num_buf=2, dyn=8, bf16_parts=True, **Q),
        **{f"ws2_b2_dyn{d}": dict(v2=True, num_buf=2, dyn=d) for d in (0, 4, 8, 16, 99)},
        "ws2_b3_dyn8": dict(v2=True, num_buf=3, dyn=8),
        "ws2_b2_dyn8_bf16p": dict(v2=True, num_buf=2, dyn=8, bf16_parts=True),
        "ws2_b2_dyn4_bf16p": dict(v2=True, num_buf=2, dyn=4, bf16_parts=True),
        "ws2_b2_dyn8_alone": dict(v2=True, num_buf=2, dyn=8, combine=False),
    }
SHAPES = [(16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K), (16, 1, 1024 * K)]


def call_for(kw, q_lat, q_pe, lengths_default, splits):
    if kw is None:
        return lambda c, ln=lengths_default: mla_decode_triton(q_lat, q_pe, c, ln, 0.1352)
    kw = dict(kw)
    s = kw.pop("splits", splits)
    runner = mw2.run if kw.pop("v2", False) else mw.run
    return lambda c, ln=lengths_default: runner(q_lat, q_pe, c, ln, 0.1352, s, **kw)


def inputs(heads, batch, ctx):
    gen = torch.Generator(device="cuda").manual_seed(heads + batch + ctx)
    q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16, generator=gen)
    q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16, generator=gen)
    cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16, generator=gen)
    lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
    ragged = torch.randint(1, ctx, (batch,), dtype=torch.int32, device="cuda", generator=gen)
    return q_lat, q_pe, cache, lengths, ragged


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


if MODE == "smoke":
    passed = {}
    for name, kw in VARIANTS.items():
        if kw is None:
            continue
        errs = []
        try:
            for heads, batch, ctx in ((16, 2, 4 * K), (16, 1, 128 * K), (16, 3, 5000)):
                q_lat, q_pe, cache, lengths, ragged = inputs(heads, batch, ctx)
                splits = default_num_splits(batch, heads, ctx, 132, default_config(heads))
                for ln in (lengths, ragged, torch.ones_like(lengths)):
                    ref, ref_lse = mla_decode_triton(q_lat, q_pe, cache, ln, 0.1352)
                    call = call_for(kw, q_lat, q_pe, ln, splits)
                    if not kw.get("combine", True):
                        call(cache)
                        torch.cuda.synchronize()
                        continue
                    for _ in range(3):  # the claim counters must come back to zero
                        o, o_lse = call(cache)
                    torch.cuda.synchronize()
                    errs.append(max(rel(o, ref), rel(o_lse, ref_lse)))
            ok = all(e < 1e-2 for e in errs)
        except Exception as exc:
            ok, errs = False, [repr(exc)[:300]]
        passed[name] = ok
        print(name, "ok" if ok else "FAIL", errs, flush=True)
        out_path.write_text(json.dumps(passed))
    sys.exit(0)

if MODE == "timeline":  # %globaltimer stamps of every CTA, 8 calls in one graph
    import statistics

    Q = dict(maxnreg=128, q_in_consumer=True)
    TL = {
        "ws_b3_static": dict(num_buf=3, **Q),
        "ws_b3_dyn8": dict(num_buf=3, dyn=8, **Q),
        "ws_b2_dyn99": dict(num_buf=2, dyn=99, **Q),
    }
    if ROUND == "4":
        TL = {
            "ws2_b2_dyn8": dict(v2=True, num_buf=2, dyn=8),
            "ws2_b2_dyn8_bf16p": dict(v2=True, num_buf=2, dyn=8, bf16_parts=True),
        }
    flush = kb._L2Flusher()
    res = {}
    heads, batch, ctx = 16, 1, 128 * K
    q_lat, q_pe, cache, lengths, _ = inputs(heads, batch, ctx)
    caches = [cache] + [cache.clone() for _ in range(7)]
    splits = default_num_splits(batch, heads, ctx, 132, default_config(heads))
    for name, kw in TL.items():
        stamps = [
            (
                torch.zeros(splits * 6, dtype=torch.int64, device="cuda"),
                torch.zeros(16 * 8 * 3, dtype=torch.int64, device="cuda"),
            )
            for _ in caches
        ]

        def calls(kw=dict(kw)):
            runner = mw2.run if kw.pop("v2", False) else mw.run
            for c, st in zip(caches, stamps):
                runner(q_lat, q_pe, c, lengths, 0.1352, splits, stamps=st, **kw)

        calls()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            calls()
            with torch.cuda.graph(graph, stream=stream):
                calls()
        torch.cuda.current_stream().wait_stream(stream)
        for _ in range(5):
            flush()
            graph.replay()
        torch.cuda.synchronize()
        sp = [st[0].view(splits, 6).cpu() for st in stamps]
        cb = [st[1].view(-1, 3).cpu() for st in stamps]
        us = lambda ns: round(float(ns) / 1e3, 2)
        summary = []
        for k in range(1, 7):
            s, c, nxt = sp[k], cb[k], sp[k + 1]
            rel0 = s[:, 1].min()
            summary.append(
                dict(
                    call=k,
                    period=us(nxt[:, 1].min() - rel0),
                    entry_spread=us(s[:, 0].max() - s[:, 0].min()),
                    released_after_entry=us(rel0 - s[:, 0].min()),
                    first_tile_p50=us(statistics.median((s[:, 2] - rel0).tolist())),
                    first_tile_max=us(s[:, 2].max() - rel0),
                    loop_end_min=us(s[:, 3].min() - rel0),
                    loop_end_max=us(s[:, 3].max() - rel0),
                    split_end_max=us(s[:, 4].max() - rel0),
                    tiles_min=int(s[:, 5].min()),
                    tiles_max=int(s[:, 5].max()),
                    combine_entry_min=us(c[:, 0].min() - rel0),
                    combine_released=us(c[:, 1].min() - s[:, 4].max()),
                    combine_end=us(c[:, 2].max() - c[:, 1].min()),
                    next_released_after_combine=us(nxt[:, 1].min() - c[:, 2].max()),
                    next_entry_min=us(nxt[:, 0].min() - rel0),
                )
            )
        res[name] = dict(summary=summary, raw_split=sp[3].tolist(), raw_combine=cb[3].tolist())
        print(name, json.dumps(summary[2:4]), flush=True)
        out_path.write_text(json.dumps(res))
        del graph
    sys.exit(0)

ok = json.loads(Path(sys.argv[4]).read_text()) if len(sys.argv) > 4 else {}
VARIANTS = {n: kw for n, kw in VARIANTS.items() if kw is None or ok.get(n)}
flush = kb._L2Flusher()
bw = kb.measure_bandwidth(flush)
read = bw["read_GBps"]
print("bandwidth", bw, flush=True)
res = {"bandwidth": bw, "rows": []}
for heads, batch, ctx in SHAPES:
    q_lat, q_pe, cache, lengths, ragged = inputs(heads, batch, ctx)
    caches = [cache] + [cache.clone() for _ in range(kb._copies(cache.numel() * 2) - 1)]
    splits = default_num_splits(batch, heads, ctx, 132, default_config(heads))
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1352)
    ref_ragged, _ = mla_decode_triton(q_lat, q_pe, cache, ragged, 0.1352)
    for repeat in range(2):
        for name, kw in VARIANTS.items():
            call = call_for(kw, q_lat, q_pe, lengths, splits)
            row = dict(
                heads=heads, batch=batch, ctx=ctx, splits=splits, variant=name, repeat=repeat
            )
            try:
                if kw is None or kw.get("combine", True):
                    row["err_vs_shipped"] = rel(call(cache)[0], ref)
                    row["err_ragged"] = rel(call(cache, ragged)[0], ref_ragged)
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
