"""PyTorch reference for in-place interleaved RoPE: the specification of rope.py.

out[2i] = x[2i]·cos − x[2i+1]·sin; out[2i+1] = x[2i+1]·cos + x[2i]·sin (see rope.py for the
shapes). Plain PyTorch, autograd-capable (cos and sin too), imports no Triton.
"""

from __future__ import annotations

import torch
from torch import Tensor


def apply_rope_ref_(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of x in place (computed in fp32 or wider); autograd-capable."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    # A copy, so that the in-place write below cannot clobber what autograd saved.
    pairs = x.to(dtype, copy=True).unflatten(-1, (-1, 2))  # (…, T, R/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos.to(dtype), sin.to(dtype)
    rotated = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1)
    x.copy_(rotated.flatten(-2))
    return x
