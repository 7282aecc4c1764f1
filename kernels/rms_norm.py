"""RMSNorm and fused residual-add + RMSNorm in Triton, forward and backward (ref: rms_norm_ref.py).

Forward, as transformers' DeepseekV3RMSNorm computes it (fp32 statistics, cast back to the
input dtype, then the weight):

    r = rsqrt(mean(x²) + eps),   n = x·r,   y = w · cast(n).

Backward (Liger-Kernel `ops/rms_norm.py`; the cast is treated as identity), with g = dy·w:

    dx = r · (g − n · mean(g·n)),   dw = Σ_rows dy · n.

The fused variant adds the residual first, s = x + residual, returns (norm(s), s), and its
backward adds the gradient arriving at s to the norm's dx.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl
from torch import Tensor

from infinitecontext.kernels import runtime
from infinitecontext.kernels.runtime import device_sm_count


def _block_size(width: int) -> int:
    return triton.next_power_of_2(width)


@triton.jit
def _rms_norm_fwd_kernel(  # type: ignore[no-untyped-def]
    x_ptr,
    residual_ptr,
    weight_ptr,
    y_ptr,
    summed_ptr,
    rstd_ptr,
    rows,
    width,
    eps,
    stride_x,
    stride_r,
    stride_y,
    stride_s,
    BLOCK_M: tl.constexpr,
    BLOCK: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    STORE_RSTD: tl.constexpr,
):
    """BLOCK_M rows per program, so narrow rows (512) still give each program enough bytes.

    rstd is stored only for a backward pass; inference skips the store."""
    row = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK)
    row_mask = row < rows
    mask = row_mask[:, None] & (cols < width)[None, :]
    r2, c2 = row[:, None], cols[None, :]
    x = tl.load(x_ptr + r2 * stride_x + c2, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(residual_ptr + r2 * stride_r + c2, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)  # rounded like torch's x + r
        tl.store(summed_ptr + r2 * stride_s + c2, x, mask=mask)
    xf = x.to(tl.float32)
    rstd = tl.math.rsqrt(tl.sum(xf * xf, axis=1) / width + eps)
    if STORE_RSTD:
        tl.store(rstd_ptr + row, rstd, mask=row_mask)
    normed = (xf * rstd[:, None]).to(x.dtype).to(tl.float32)
    w = tl.load(weight_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
    y = (normed * w[None, :]).to(y_ptr.dtype.element_ty)
    tl.store(y_ptr + r2 * stride_y + c2, y, mask=mask)


@triton.jit
def _rms_norm_bwd_kernel(  # type: ignore[no-untyped-def]
    dy_ptr,
    x_ptr,
    weight_ptr,
    rstd_ptr,
    dsummed_ptr,
    dx_ptr,
    dw_partial_ptr,
    rows,
    width,
    rows_per_program,
    stride_dy,
    stride_x,
    stride_ds,
    stride_dx,
    BLOCK: tl.constexpr,
    HAS_DSUMMED: tl.constexpr,
):
    """Each program walks `rows_per_program` rows and writes one partial dw row."""
    program = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < width
    w = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    first = program.to(tl.int64) * rows_per_program
    for i in range(0, rows_per_program):
        row = first + i
        row_mask = mask & (row < rows)  # the last program may run past the end
        dy = tl.load(dy_ptr + row * stride_dy + cols, mask=row_mask, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + row * stride_x + cols, mask=row_mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + row, mask=row < rows, other=0.0)
        normed = x * rstd
        g = dy * w
        dx = rstd * (g - normed * (tl.sum(g * normed, axis=0) / width))
        if HAS_DSUMMED:
            dsummed = tl.load(dsummed_ptr + row * stride_ds + cols, mask=row_mask, other=0.0)
            dx += dsummed.to(tl.float32)
        tl.store(dx_ptr + row * stride_dx + cols, dx.to(dx_ptr.dtype.element_ty), mask=row_mask)
        dw += dy * normed
    tl.store(dw_partial_ptr + program * width + cols, dw, mask=mask)


def _as_rows(t: Tensor) -> Tensor:
    """(…, N) → (M, N) with a contiguous last dimension (a view when possible)."""
    if t.stride(-1) != 1:
        t = t.contiguous()
    return t.reshape(-1, t.shape[-1])


def _num_warps(block: int) -> int:
    return min(max(block // 256, 1), 16)


SMALL_ROWS = 8192
"""Below this many rows the forward is one wave, bound by a single memory round trip."""


def _rows_per_program(rows: int, block: int, sm_count: int) -> int:
    """Up to 4096 elements per program, while keeping at least two programs per SM.

    Few rows (one wave): at most two rows per program, as inductor picks; the H100 sweep
    (rows 2048, widths 512–2048) found 1–2 rows on one warp fastest there."""
    by_size = max(1, 4096 // block)
    if rows < SMALL_ROWS:
        by_size = 2 if 2 * block <= 4096 else 1
    by_occupancy = max(1, rows // (2 * sm_count))
    return min(by_size, 1 << (by_occupancy.bit_length() - 1))


def _forward_warps(rows: int, block: int, block_m: int) -> int:
    if rows < SMALL_ROWS:
        return max(1, block // 2048)
    return min(max(block * block_m // 512, 1), 8)


def rms_norm_forward(
    x: Tensor,
    weight: Tensor,
    eps: float,
    residual: Tensor | None = None,
    block_m: int | None = None,
    num_warps: int | None = None,
    store_rstd: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton forward: (y, summed, rstd); summed is x itself when there is no residual.

    With store_rstd=False (no backward to follow) rstd is left unwritten. `block_m` (rows
    per program) and `num_warps` override the heuristics (the benchmark sweeps them)."""
    x2 = _as_rows(x)
    rows, width = x2.shape
    out_dtype = torch.promote_types(x.dtype, weight.dtype)
    y = runtime.empty((rows, width), x, out_dtype)
    rstd = runtime.empty((rows,) if store_rstd else (1,), x, torch.float32)
    r2 = _as_rows(residual) if residual is not None else x2
    summed = runtime.empty(x2.shape, x2) if residual is not None else x2
    block = _block_size(width)
    block_m = block_m or _rows_per_program(rows, block, device_sm_count(x.device))
    num_warps = num_warps or _forward_warps(rows, block, block_m)
    _rms_norm_fwd_kernel[(triton.cdiv(rows, block_m),)](
        x2, r2, weight, y, summed, rstd, rows, width, eps,
        x2.stride(0), r2.stride(0), y.stride(0), summed.stride(0),
        BLOCK_M=block_m, BLOCK=block, HAS_RESIDUAL=residual is not None,
        STORE_RSTD=store_rstd, num_warps=num_warps,
    )  # fmt: skip
    return y.view(x.shape), summed.view(x.shape), rstd


def rms_norm_backward(
    dy: Tensor, summed: Tensor, weight: Tensor, rstd: Tensor, dsummed: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Triton backward: (dx, dw). `dsummed` is the gradient arriving at the residual sum."""
    dy2, x2 = _as_rows(dy), _as_rows(summed)
    rows, width = x2.shape
    dx = runtime.empty((rows, width), x2)
    programs = max(1, min(rows, 4 * device_sm_count(x2.device)))
    rows_per_program = triton.cdiv(rows, programs)
    programs = triton.cdiv(rows, rows_per_program)
    dw_partial = runtime.empty((programs, width), x2, torch.float32)
    ds2 = _as_rows(dsummed) if dsummed is not None else dy2
    block = _block_size(width)
    _rms_norm_bwd_kernel[(programs,)](
        dy2, x2, weight, rstd, ds2, dx, dw_partial, rows, width, rows_per_program,
        dy2.stride(0), x2.stride(0), ds2.stride(0), dx.stride(0),
        BLOCK=block, HAS_DSUMMED=dsummed is not None, num_warps=_num_warps(block),
    )  # fmt: skip
    return dx.view(summed.shape), dw_partial.sum(0).to(weight.dtype)


class RMSNormFunction(torch.autograd.Function):
    """y = rms_norm(x)·w with the Triton forward and backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        y, _, rstd = rms_norm_forward(x, weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor, Tensor, None]:
        x, weight, rstd = ctx.saved_tensors
        dx, dw = rms_norm_backward(dy, x, weight, rstd, None)
        return dx, dw, None


class AddRMSNormFunction(torch.autograd.Function):
    """(rms_norm(x + residual)·w, x + residual) in one pass over the rows."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, residual: Tensor, weight: Tensor, eps: float
    ) -> tuple[Tensor, Tensor]:
        y, summed, rstd = rms_norm_forward(x, weight, eps, residual=residual)
        ctx.save_for_backward(summed, weight, rstd)
        return y, summed

    @staticmethod
    def backward(
        ctx: Any, dy: Tensor, dsummed: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, None]:
        summed, weight, rstd = ctx.saved_tensors
        dx, dw = rms_norm_backward(dy, summed, weight, rstd, dsummed)
        return dx, dx.clone(), dw, None


def _needs_backward(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def rms_norm_triton(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    if not _needs_backward(x, weight):  # inference: no autograd node, no rstd to keep
        return rms_norm_forward(x, weight, eps, store_rstd=False)[0]
    return RMSNormFunction.apply(x, weight, eps)


def add_rms_norm_triton(
    x: Tensor, residual: Tensor, weight: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    if not _needs_backward(x, residual, weight):
        y, summed, _ = rms_norm_forward(x, weight, eps, residual=residual, store_rstd=False)
        return y, summed
    return AddRMSNormFunction.apply(x, residual, weight, eps)
