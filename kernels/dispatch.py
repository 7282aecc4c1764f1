"""The one place that picks Triton or the PyTorch reference for each kernel op.

``ICX_KERNELS=auto`` (default) runs Triton on CUDA tensors and the reference elsewhere;
``ICX_KERNELS=triton`` forces Triton (on CPU that needs ``TRITON_INTERPRET=1``);
``ICX_KERNELS=reference`` forces the reference everywhere. The variable is read at every
call, so a test or benchmark can switch it with ``monkeypatch.setenv``. Under
``torch.compile``, ``auto`` picks the reference, which inductor compiles and fuses.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import Tensor

Backend = Literal["triton", "reference"]
ENV_VAR = "ICX_KERNELS"


def backend_for(tensor: Tensor) -> Backend:
    """The backend that runs an op whose main input is `tensor`."""
    choice = os.environ.get(ENV_VAR, "auto").strip().lower()
    if choice == "triton":
        return "triton"
    if choice == "reference":
        return "reference"
    if choice != "auto":
        raise ValueError(f"{ENV_VAR} must be auto, triton or reference, got {choice!r}")
    if torch.compiler.is_compiling():
        # Inside torch.compile, inductor fuses the reference into Triton code of its own;
        # our launchers' Python grids over symbolic shapes break dynamo (seen with the
        # 1b preset at 8k: "'SymNodeVariable' object has no attribute 'value'").
        return "reference"
    return "triton" if tensor.is_cuda else "reference"


def mla_decode(
    q_lat: Tensor,
    q_pe: Tensor,
    cache: Tensor,
    lengths: Tensor,
    softmax_scale: float,
    block_table: Tensor | None = None,
    cache_scale: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Absorbed MLA decode over the latent cache: out (B, H, 512) in q's dtype, lse (B, H) fp32.

    q_lat (B, H, 512) = q_nope·W_UK; q_pe (B, H, 64) rotated; cache contiguous (B, S_max, 576)
    or paged (num_pages, 64, 576) with block_table (B, max_pages) int32; lengths (B,) int32;
    cache_scale (B, S_max) or (num_pages, 64) float32 when the cache is float8_e4m3fn.
    """
    if backend_for(q_lat) == "triton":
        from infinitecontext.kernels.mla_decode import mla_decode_triton

        return mla_decode_triton(
            q_lat, q_pe, cache, lengths, softmax_scale, block_table, cache_scale
        )
    from infinitecontext.kernels.mla_decode_ref import mla_decode_ref

    return mla_decode_ref(q_lat, q_pe, cache, lengths, softmax_scale, block_table, cache_scale)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """weight · cast(x·rsqrt(mean(x²) + eps)) over the last dim, statistics in fp32."""
    if backend_for(x) == "triton":
        from infinitecontext.kernels.rms_norm import rms_norm_triton

        return rms_norm_triton(x, weight, eps)
    from infinitecontext.kernels.rms_norm_ref import rms_norm_ref

    return rms_norm_ref(x, weight, eps)


def add_rms_norm(x: Tensor, residual: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(rms_norm(x + residual), x + residual) in one pass."""
    if backend_for(x) == "triton":
        from infinitecontext.kernels.rms_norm import add_rms_norm_triton

        return add_rms_norm_triton(x, residual, weight, eps)
    from infinitecontext.kernels.rms_norm_ref import add_rms_norm_ref

    return add_rms_norm_ref(x, residual, weight, eps)


def apply_rope_(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of x (…, T, R) in place; cos/sin (T, R/2) or broadcastable."""
    if backend_for(x) == "triton":
        from infinitecontext.kernels.rope import apply_rope_triton_

        return apply_rope_triton_(x, cos, sin)
    from infinitecontext.kernels.rope_ref import apply_rope_ref_

    return apply_rope_ref_(x, cos, sin)
