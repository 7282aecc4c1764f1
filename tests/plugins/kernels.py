"""Kernel-test set-up: Triton's CPU interpreter when there is no GPU, and NaN-poisoned outputs.

TRITON_INTERPRET must be set before any `@triton.jit` runs, so it is set here, when pytest
loads its plugins, before the test modules import the kernels. On a CUDA machine the same
tests run the compiled kernels on the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def kernel_device() -> torch.device:
    """The device the kernels under test run on: the GPU if there is one, else the interpreter."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def poison_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffer a launcher allocates starts as NaN, so an unwritten element fails the test.

    The MLA decode plans are dropped first: their partials, kept from earlier calls, would
    otherwise skip the poisoned allocation."""
    from infinitecontext.kernels import runtime
    from infinitecontext.kernels.mla_decode import plan_cache

    plan_cache().clear()

    def nan_empty(
        shape: Sequence[int], like: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        return torch.full(tuple(shape), float("nan"), device=like.device, dtype=dtype or like.dtype)

    monkeypatch.setattr(runtime, "empty", nan_empty)
