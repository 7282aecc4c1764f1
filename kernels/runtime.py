"""Small facts about where kernels run, shared by the Triton launchers."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch

INTERPRET_ENV_VAR = "TRITON_INTERPRET"
PDL_ENV_VAR = "ICX_PDL"
DIRECT_LAUNCH_ENV_VAR = "ICX_MLA_DIRECT_LAUNCH"


def direct_launch() -> bool:
    """Whether a plan's later launches call the compiled kernel directly (opt-in with
    `ICX_MLA_DIRECT_LAUNCH=1` until that path has passed the kernel tests on a GPU)."""
    return os.environ.get(DIRECT_LAUNCH_ENV_VAR, "0") == "1" and not triton_interpreting()


def triton_interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get(INTERPRET_ENV_VAR, "0") not in ("", "0")


@functools.cache
def sm_count(device_index: int) -> int:
    """Streaming multiprocessors of a CUDA device."""
    return int(torch.cuda.get_device_properties(device_index).multi_processor_count)


def device_sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 132  # the interpreter's stand-in: an H100 SXM
    return sm_count(device.index or 0)


def supports_pdl(device: torch.device) -> bool:
    """Programmatic dependent launch (Hopper and later; `ICX_PDL=0` turns it off)."""
    if device.type != "cuda" or triton_interpreting() or os.environ.get(PDL_ENV_VAR) == "0":
        return False
    return torch.cuda.get_device_capability(device)[0] >= 9


def check_last_dim_contiguous(name: str, tensor: torch.Tensor) -> None:
    if tensor.stride(-1) != 1:
        raise ValueError(f"{name} must have a contiguous last dimension, got {tensor.stride()}")


def empty(
    shape: Sequence[int], like: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """An uninitialised buffer on `like`'s device; the tests swap in a NaN-filled one."""
    return torch.empty(tuple(shape), device=like.device, dtype=dtype or like.dtype)
