"""H100 probe (session 4): per-program %globaltimer stamps of the split and combine kernels in a
CUDA graph of 8 back-to-back calls (H=16, B=1, 128k, distinct caches, read flush before each
replay), for the shipped launch (split launched early, PDL) and without the early launch.

Stamps: split program start (before its PDL wait), after the wait, after its partial store;
combine program start, after its wait, after its store. Times in µs from the first split
program of the replay."""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

import mla_variants4 as mv
from infinitecontext.kernels import bench as kb

K = 1024
out_path = Path(sys.argv[1])
flush = kb._L2Flusher()
heads, batch, ctx, splits = 16, 1, 128 * K, 128
q_lat = torch.randn(batch, heads, 512, device="cuda", dtype=torch.bfloat16)
q_pe = torch.randn(batch, heads, 64, device="cuda", dtype=torch.bfloat16)
cache = torch.randn(batch, ctx, 576, device="cuda", dtype=torch.bfloat16)
lengths = torch.full((batch,), ctx, dtype=torch.int32, device="cuda")
caches = [cache] + [cache.clone() for _ in range(7)]
base = dict(
    block_h=16, block_n=32, num_warps=4, num_stages=3, interleave=True, hoist=True, trigger=True
)
VARIANTS = {"early": dict(pdl_wait=True), "not_early": dict(pdl_wait=False)}
res = {}
for name, kw in VARIANTS.items():
    stamps = [
        (
            torch.zeros(splits * 3, dtype=torch.int64, device="cuda"),
            torch.zeros(heads * 8 * 3, dtype=torch.int64, device="cuda"),
        )
        for _ in caches
    ]

    def run_all():
        for c, st in zip(caches, stamps):
            mv.run(q_lat, q_pe, c, lengths, 0.1352, splits, **base, **kw, stamps=st)

    run_all()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run_all()
        with torch.cuda.graph(graph, stream=stream):
            run_all()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    replays = []
    for rep in range(6):
        flush()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        total_us = start.elapsed_time(end) * 1e3
        split_s = [st[0].view(-1, 3).double().cpu() for st in stamps]
        comb_s = [st[1].view(-1, 3).double().cpu() for st in stamps]
        t_ref = split_s[0][:, 0].min()
        calls = []
        for n in range(len(caches)):
            sp = (split_s[n] - t_ref) / 1e3
            cb = (comb_s[n] - t_ref) / 1e3
            q = lambda x, p: float(torch.quantile(x, p))
            calls.append(
                {
                    "split_start": [q(sp[:, 0], 0), q(sp[:, 0], 1)],
                    "split_after_wait": [q(sp[:, 1], 0), q(sp[:, 1], 1)],
                    "split_end": [
                        q(sp[:, 2], 0),
                        q(sp[:, 2], 0.1),
                        q(sp[:, 2], 0.5),
                        q(sp[:, 2], 0.9),
                        q(sp[:, 2], 1),
                    ],
                    "combine_start": [q(cb[:, 0], 0), q(cb[:, 0], 1)],
                    "combine_after_wait": [q(cb[:, 1], 0), q(cb[:, 1], 1)],
                    "combine_end": [q(cb[:, 2], 0), q(cb[:, 2], 1)],
                }
            )
        replays.append({"total_us": total_us, "calls": calls})
        if rep == 5:
            for n, c in enumerate(calls):
                print(
                    name,
                    n,
                    json.dumps({k: [round(v, 2) for v in vs] for k, vs in c.items()}),
                    flush=True,
                )

    # Summary: mean over replays and over calls 1..7 (calls after a combine).
    def mean(f):
        vals = [f(r["calls"], n) for r in replays for n in range(1, len(caches))]
        return round(sum(vals) / len(vals), 3)

    summary = {
        "per_call_us": round(sum(r["total_us"] for r in replays) / len(replays) / len(caches), 2),
        "split_start_before_prev_combine_end": mean(
            lambda c, n: c[n - 1]["combine_end"][1] - c[n]["split_start"][0]
        ),
        "prev_combine_end_to_split_released": mean(
            lambda c, n: c[n]["split_after_wait"][0] - c[n - 1]["combine_end"][1]
        ),
        "split_released_spread": mean(
            lambda c, n: c[n]["split_after_wait"][1] - c[n]["split_after_wait"][0]
        ),
        "split_released_to_first_end": mean(
            lambda c, n: c[n]["split_end"][0] - c[n]["split_after_wait"][0]
        ),
        "split_released_to_last_end": mean(
            lambda c, n: c[n]["split_end"][4] - c[n]["split_after_wait"][0]
        ),
        "split_end_spread_p10_p90": mean(lambda c, n: c[n]["split_end"][3] - c[n]["split_end"][1]),
        "split_end_spread_all": mean(lambda c, n: c[n]["split_end"][4] - c[n]["split_end"][0]),
        "last_split_end_to_combine_released": mean(
            lambda c, n: c[n]["combine_after_wait"][0] - c[n]["split_end"][4]
        ),
        "combine_released_to_end": mean(
            lambda c, n: c[n]["combine_end"][1] - c[n]["combine_after_wait"][0]
        ),
        "combine_start_before_split_end": mean(
            lambda c, n: c[n]["split_end"][4] - c[n]["combine_start"][0]
        ),
    }
    print(name, json.dumps(summary), flush=True)
    res[name] = {"summary": summary, "replays": replays}
    out_path.write_text(json.dumps(res, indent=1))
    del graph
