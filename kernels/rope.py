"""In-place interleaved RoPE on the decoupled rope slice in Triton (reference: rope_ref.py).

Convention (GPT-J / transformers' DeepseekV3 with ``rope_interleave=True`` up to the fixed
de-interleaving permutation it applies to both q and k): for pair i = (2i, 2i+1) of the last
dimension and angle θ = pos·inv_freq[i], with YaRN's attention factor already folded into
the tables,

    out[2i]   = x[2i]·cos θ − x[2i+1]·sin θ,
    out[2i+1] = x[2i+1]·cos θ + x[2i]·sin θ.

Shapes: x is (…, T, R) with at most 4 leading dimensions before T and any strides with a
contiguous last dimension (a slice such as ``q[..., 128:]`` works in place); cos and sin are
(T, R/2) or anything that broadcasts to x.shape[:-1] + (R/2,), e.g. (B, 1, T, R/2) for
per-sequence positions. The backward is the inverse rotation (sin → −sin); gradients do not
flow into cos and sin in the Triton path (they are tables, not parameters).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from infinitecontext.kernels import runtime

MAX_DIMS = 5  # four leading dimensions plus T


@triton.jit
def _rope_kernel(  # type: ignore[no-untyped-def]
    x_ptr,
    out_ptr,
    cos_ptr,
    sin_ptr,
    rows,
    size1,
    size2,
    size3,
    size4,
    sx0, sx1, sx2, sx3, sx4,
    so0, so1, so2, so3, so4,
    sc0, sc1, sc2, sc3, sc4,
    ss0, ss1, ss2, ss3, ss4,
    HALF: tl.constexpr,
    BLOCK_M: tl.constexpr,
    INVERSE: tl.constexpr,
):  # fmt: skip
    """BLOCK_M rows of R = 2·HALF values; a row index is unravelled over 5 dims (last is T)."""
    row = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = row < rows
    r = row.to(tl.int64)
    i4 = r % size4
    r = r // size4
    i3 = r % size3
    r = r // size3
    i2 = r % size2
    r = r // size2
    i1 = r % size1
    i0 = r // size1
    x_row = i0 * sx0 + i1 * sx1 + i2 * sx2 + i3 * sx3 + i4 * sx4
    o_row = i0 * so0 + i1 * so1 + i2 * so2 + i3 * so3 + i4 * so4
    c_row = i0 * sc0 + i1 * sc1 + i2 * sc2 + i3 * sc3 + i4 * sc4
    s_row = i0 * ss0 + i1 * ss1 + i2 * ss2 + i3 * ss3 + i4 * ss4

    cols = tl.arange(0, 2 * HALF)
    x = tl.load(x_ptr + x_row[:, None] + cols[None, :], mask=mask[:, None], other=0.0)
    even, odd = tl.split(tl.reshape(x.to(tl.float32), (BLOCK_M, HALF, 2)))
    half = tl.arange(0, HALF)
    cos = tl.load(cos_ptr + c_row[:, None] + half[None, :], mask=mask[:, None], other=0.0)
    sin = tl.load(sin_ptr + s_row[:, None] + half[None, :], mask=mask[:, None], other=0.0)
    cos = cos.to(tl.float32)
    sin = sin.to(tl.float32)
    if INVERSE:
        sin = -sin
    out = tl.reshape(tl.join(even * cos - odd * sin, odd * cos + even * sin), (BLOCK_M, 2 * HALF))
    tl.store(
        out_ptr + o_row[:, None] + cols[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=mask[:, None],
    )


def _padded_strides(t: Tensor) -> list[int]:
    return [0] * (MAX_DIMS - (t.dim() - 1)) + list(t.stride()[:-1])


def rope_launch(x: Tensor, out: Tensor, cos: Tensor, sin: Tensor, inverse: bool) -> Tensor:
    """Rotate x into out (out may be x) with the Triton kernel."""
    rotary = x.shape[-1]
    if rotary % 2 or x.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError(f"x needs an even, contiguous last dimension, got {x.shape} {x.stride()}")
    if x.dim() < 2 or x.dim() > MAX_DIMS + 1:
        raise ValueError(f"x must be (…, T, R) with at most {MAX_DIMS - 1} leading dims")
    table_shape = (*x.shape[:-1], rotary // 2)
    cos = (cos if cos.stride(-1) == 1 else cos.contiguous()).expand(table_shape)
    sin = (sin if sin.stride(-1) == 1 else sin.contiguous()).expand(table_shape)
    sizes = [1] * (MAX_DIMS - (x.dim() - 1)) + list(x.shape[:-1])
    rows = x.numel() // rotary
    if rows == 0:
        return out
    block_m = 16
    _rope_kernel[(triton.cdiv(rows, block_m),)](
        x, out, cos, sin, rows, *sizes[1:],
        *_padded_strides(x), *_padded_strides(out), *_padded_strides(cos), *_padded_strides(sin),
        HALF=rotary // 2, BLOCK_M=block_m, INVERSE=inverse, num_warps=4,
    )  # fmt: skip
    return out


class RopeFunction(torch.autograd.Function):
    """In-place rotation with a Triton backward (the inverse rotation of the gradient)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        rope_launch(x, x, cos, sin, inverse=False)
        ctx.mark_dirty(x)
        ctx.save_for_backward(cos, sin)
        return x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        if grad.stride(-1) != 1:
            grad = grad.contiguous()
        return (
            rope_launch(grad, runtime.empty(grad.shape, grad), cos, sin, inverse=True),
            None,
            None,
        )


def apply_rope_triton_(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return RopeFunction.apply(x, cos, sin)
    return rope_launch(x, x, cos, sin, inverse=False)
