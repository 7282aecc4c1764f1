"""Session 7: where the packaged Hopper split kernel goes wrong, if its GPU tests fail. For
each test case and a few more, the error per (sequence, head) against the float64
reference, non-finite counts, and the claim counters after the call (all must be zero).

    python diag_hopper.py OUT.json
"""
# ruff: noqa

import json
import sys
from pathlib import Path

import torch

from infinitecontext.kernels import mla_decode_hopper as hopper
from infinitecontext.kernels.mla_decode import mla_decode_triton
from infinitecontext.kernels.mla_decode_ref import mla_decode_ref

LATENT = 576
CASES = [
    (16, [1, 200, 77], 3),
    (5, [64, 129, 3], 7),
    (3, [700, 20], 150),
    (16, [9000, 33, 4097], 5),
    (16, [64], 2),  # whole tiles, two chunks
    (16, [4096], 2),  # whole tiles, no claimed... (64 tiles over 2 chunks: 8 claimed each)
    (16, [4100], 4),  # ragged last tile
    (16, [300], 2),
]
results = []
for heads, lengths, splits in CASES:
    torch.manual_seed(0)
    batch = len(lengths)
    lengths_t = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    q_lat = torch.randn(batch, heads, 512, dtype=torch.bfloat16, device="cuda")
    q_pe = torch.randn(batch, heads, 64, dtype=torch.bfloat16, device="cuda")
    for poison in (False, True):
        cache = torch.randn(batch, max(lengths), LATENT, dtype=torch.bfloat16, device="cuda") * 0.5
        if poison:
            for b, n in enumerate(lengths):
                cache[b, n:] = float("nan")
        ref_out, ref_lse = mla_decode_ref(
            q_lat, q_pe, cache, lengths_t, 0.1352, compute_dtype=torch.float64
        )
        row = dict(heads=heads, lengths=lengths, splits=splits, poison=poison, calls=[])
        for call in range(2):
            try:
                out, lse = mla_decode_triton(
                    q_lat, q_pe, cache, lengths_t, 0.1352, num_splits=splits, hopper=True
                )
                torch.cuda.synchronize()
            except Exception as exc:  # a launch or compile error
                row["calls"].append(dict(error=repr(exc)[:2000]))
                break
            err = (out.double() - ref_out).norm(dim=-1) / ref_out.norm(dim=-1)  # [B, H]
            key = (0, torch.cuda.current_stream().cuda_stream)
            counters = hopper._counters.get(key)
            row["calls"].append(
                dict(
                    nonfinite_out=int((~torch.isfinite(out)).sum()),
                    nonfinite_lse=int((~torch.isfinite(lse)).sum()),
                    err_per_seq_head=[[round(float(e), 4) for e in r] for r in err.nan_to_num(9.0)],
                    lse_diff_max=float((lse.double() - ref_lse).abs().nan_to_num(99.0).max()),
                    counters_nonzero=int((counters != 0).sum()) if counters is not None else None,
                )
            )
        results.append(row)
        print(json.dumps(row), flush=True)
Path(sys.argv[1]).write_text(json.dumps(results, indent=1))
