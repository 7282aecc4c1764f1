"""Session 7: the shipped MLA decode with the Hopper split kernel at 3 (shipped), 4 and 5
shared-memory stages, and at 4 stages with 16 claimed tiles, beside the Triton split
kernel, in one process, the benchmark's way (ab_common.py), two repeats, 16 heads. Run 12's
grid had the Hopper kernel 1-3.5% behind the Triton kernel at B >= 8 from 32k on (a lower
steady-state streaming rate per SM); deeper stages keep more bytes in flight.

    python ab_stages.py OUT.json
"""
# ruff: noqa

import sys
from pathlib import Path

import torch
from ab_common import K, SOFTMAX_SCALE, Probe

from infinitecontext.kernels import mla_decode_hopper as hopper
from infinitecontext.kernels.mla_decode import mla_decode_triton

VARIANTS = {"s3": (3, 8), "s4": (4, 8), "s5": (5, 8), "s4_dyn16": (4, 16), "triton": None}
SHAPES = (
    (1, 128 * K),
    (8, 32 * K),
    (8, 128 * K),
    (64, 128 * K),
    (1, 1024 * K),
    (1, 32 * K),
    (2, 128 * K),
    (4, 128 * K),
)
probe = Probe(Path(sys.argv[1]))
heads = 16
for batch, ctx in SHAPES:
    q_lat, q_pe, cache, lengths, caches = probe.inputs(batch, ctx, heads)
    ref, _ = mla_decode_triton(q_lat, q_pe, cache, lengths, SOFTMAX_SCALE, hopper=False)
    for repeat in range(2):
        for name, variant in VARIANTS.items():
            if variant is not None:
                hopper.NUM_STAGES, hopper.DYNAMIC_TILES = variant
            use = variant is not None
            call = lambda c, h=use: mla_decode_triton(
                q_lat, q_pe, c, lengths, SOFTMAX_SCALE, hopper=h
            )
            try:
                probe.time(
                    call,
                    cache,
                    caches,
                    ref,
                    batch,
                    ctx,
                    heads,
                    dict(batch=batch, ctx=ctx, variant=name, repeat=repeat),
                )
            except Exception as exc:
                print(name, "failed", repr(exc)[:300], flush=True)
    hopper.NUM_STAGES, hopper.DYNAMIC_TILES = VARIANTS["s3"]
    del caches, cache
    torch.cuda.empty_cache()
