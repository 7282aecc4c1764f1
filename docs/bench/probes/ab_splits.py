"""Session 7: split counts for the Hopper split kernel at small batches. `choose_num_splits`
cuts B = 1, 128k from 132 chunks to 128 (the Triton kernel's static chunks end with the
longest one, so fewer chunks cost nothing there); the Hopper kernel claims its last tiles
at run time, so 132 chunks could keep all 132 SMs busy. At 4k the 256-token floor leaves
16 chunks. Timed the benchmark's way (ab_common.py), two repeats, 16 heads; "default" is
the launcher's own count (at the time: the Triton kernel's rules).

    python ab_splits.py OUT.json
"""
# ruff: noqa

import sys
from pathlib import Path

import torch
from ab_common import K, SOFTMAX_SCALE, Probe

from infinitecontext.kernels.mla_decode import mla_decode_triton

# (batch, ctx): split counts to try with the Hopper kernel (None: the launcher's)
SHAPES = {
    (1, 128 * K): (None, 132),
    (1, 32 * K): (None, 132),
    (1, 1024 * K): (None, 128),
    (1, 4 * K): (None, 32, 64, 128),
    (8, 4 * K): (None, 8),
    (2, 128 * K): (None,),
}
probe = Probe(Path(sys.argv[1]))
heads = 16
for (batch, ctx), split_counts in SHAPES.items():
    q_lat, q_pe, cache, lengths, caches = probe.inputs(batch, ctx, heads)
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, SOFTMAX_SCALE, hopper=False)
    variants = [("hopper", True, s) for s in split_counts] + [("triton", False, None)]
    for repeat in range(2):
        for kernel, use, splits in variants:
            call = lambda c, h=use, s=splits: mla_decode_triton(
                q_lat, q_pe, c, lengths, SOFTMAX_SCALE, num_splits=s, hopper=h
            )
            labels = dict(
                batch=batch, ctx=ctx, kernel=kernel, splits=splits or "default", repeat=repeat
            )
            try:
                probe.time(call, cache, caches, ref, batch, ctx, heads, labels)
            except Exception as exc:
                print(kernel, splits, "failed", repr(exc)[:300], flush=True)
    del caches, cache
    torch.cuda.empty_cache()
