"""SDPA (cuDNN) on the 1b attention shape: BSHD views (the model's) vs contiguous BHSD."""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

B, T, H, DQK, DV = 1, 8192, 16, 192, 128


def timed(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def run(layout):
    q = torch.randn(B, T, H, DQK, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, T, H, DQK, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, T, H, DV, device="cuda", dtype=torch.bfloat16)
    if layout == "bhsd":
        q, k, v = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    else:
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    for t in (q, k, v):
        t.requires_grad_(True)
    grad = torch.randn(B, H, T, DV, device="cuda", dtype=torch.bfloat16)
    if layout != "bhsd":
        grad = grad.transpose(1, 2).contiguous().transpose(1, 2)

    def fwd():
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=DQK**-0.5)

    def fwd_bwd():
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=DQK**-0.5)
        out.backward(grad)

    flops = 2 * B * H * T * T * (DQK + DV) / 2
    f, fb = timed(fwd), timed(fwd_bwd)
    return {
        "layout": layout,
        "fwd_ms": f,
        "fwd_bwd_ms": fb,
        "fwd_tflops": flops / f / 1e9,
        "fwd_bwd_tflops": 3.5 * flops / fb / 1e9,
    }


rows = [run(layout) for layout in ("bshd_views", "bhsd", "bshd_views", "bhsd")]
for r in rows:
    print(json.dumps(r))
Path(sys.argv[1]).write_text(json.dumps(rows, indent=1))
