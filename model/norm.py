"""RMSNorm (Zhang & Sennrich 2019), computed in fp32 as DeepSeek-V3 and transformers do.

The math lives in kernels/: the Triton kernel on CUDA, `rms_norm_ref` elsewhere.
"""

from __future__ import annotations

import torch
from torch import nn

from infinitecontext.kernels import dispatch


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dispatch.rms_norm(x, self.weight, self.eps)
