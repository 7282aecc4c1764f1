"""Decoupled RoPE on the rope slice of queries and keys, with YaRN frequencies.

Pairs are interleaved (dims 2i and 2i+1 rotate together by angle pos·inv_freq[i]),
the GPT-J layout that DeepSeek-V3 checkpoints use: transformers' DeepseekV3 with
`rope_interleave=True` computes the same rotation after permuting both q and k (so
every q·k product is identical), and vLLM builds DeepSeek's rope with
`is_neox_style=False`, which is this layout exactly.

YaRN (arXiv 2309.00071) follows transformers' `_compute_yarn_parameters`: frequencies
blend interpolation (÷factor) and extrapolation over a ramp between the dims that
rotate beta_fast and beta_slow times in the original context, and cos/sin are
scaled by the attention factor mscale(s, mscale)/mscale(s, mscale_all_dim).
"""

from __future__ import annotations

import math

import torch

from infinitecontext.kernels import dispatch
from infinitecontext.model.config import MLAConfig, yarn_mscale


def inv_frequencies(cfg: MLAConfig) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (R/2,) in fp32 and the factor that scales cos and sin."""
    dim, base, yarn = cfg.qk_rope_head_dim, cfg.rope_theta, cfg.yarn
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    extrapolation = 1.0 / pos_freqs
    if not yarn.enabled:
        return extrapolation, 1.0
    interpolation = 1.0 / (yarn.factor * pos_freqs)
    low, high = _correction_range(
        yarn.beta_fast, yarn.beta_slow, dim, base, yarn.original_max_position_embeddings
    )
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: keep the trained frequency; 0: fully interpolate
    inv_freq = interpolation * (1 - keep) + extrapolation * keep
    attention_factor = yarn_mscale(yarn.factor, yarn.mscale) / yarn_mscale(
        yarn.factor, yarn.mscale_all_dim
    )
    return inv_freq, attention_factor


def _correction_range(
    beta_fast: float, beta_slow: float, dim: int, base: float, original: int
) -> tuple[float, float]:
    """Dims [low, high] between which YaRN ramps from extrapolation to interpolation."""

    def dim_for(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = float(max(math.floor(dim_for(beta_fast)), 0))
    high = float(min(math.ceil(dim_for(beta_slow)), dim - 1))
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    return low, high


def cos_sin(
    positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for `positions` (...,) → two (..., R/2) fp32 tensors."""
    angles = positions.to(torch.float32)[..., None] * inv_freq.to(positions.device)
    return angles.cos() * attention_factor, angles.sin() * attention_factor


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (B, T, H, R) by cos/sin (B, T, R/2); returns a new tensor."""
    # The kernel rotates in place; x is often a split view of q, so rotate a copy.
    return dispatch.apply_rope_(x.clone(), cos[:, :, None, :], sin[:, :, None, :])
