"""Session 6, last call (run in session 7 as part of run 12): the shipped MLA decode with
the Hopper split kernel against the same call on the Triton split kernel, side by side in
one process, the benchmark's way (ab_common.py), two repeats, 16 heads.

    python ab_hopper.py OUT.json
"""
# ruff: noqa

import sys
from pathlib import Path

import torch
from ab_common import K, SOFTMAX_SCALE, Probe

from infinitecontext.kernels.mla_decode import mla_decode_triton

probe = Probe(Path(sys.argv[1]))
for heads, batch, ctx in ((16, 1, 128 * K), (16, 1, 32 * K), (16, 8, 32 * K), (16, 1, 1024 * K)):
    q_lat, q_pe, cache, lengths, caches = probe.inputs(batch, ctx, heads)
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, SOFTMAX_SCALE, hopper=False)
    for repeat in range(2):
        for hopper in (True, False):
            call = lambda c, h=hopper: mla_decode_triton(
                q_lat, q_pe, c, lengths, SOFTMAX_SCALE, hopper=h
            )
            labels = dict(
                heads=heads,
                batch=batch,
                ctx=ctx,
                split_kernel="hopper" if hopper else "triton",
                repeat=repeat,
            )
            probe.time(call, cache, caches, ref, batch, ctx, heads, labels)
    del caches, cache
    torch.cuda.empty_cache()
