"""PyTorch reference for RMSNorm and residual-add + RMSNorm: the specification of rms_norm.py.

Matches transformers' DeepseekV3RMSNorm: statistics in fp32, cast back to the input dtype,
then multiplied by the weight. Plain PyTorch, autograd-capable, imports no Triton.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rms_norm_ref(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """transformers' DeepseekV3RMSNorm.forward, plain PyTorch."""
    normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight * normed.to(x.dtype)


def add_rms_norm_ref(
    x: Tensor, residual: Tensor, weight: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """(rms_norm(x + residual), x + residual)."""
    summed = x + residual
    return rms_norm_ref(summed, weight, eps), summed
