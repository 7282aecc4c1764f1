"""Triton RMSNorm and residual-add + RMSNorm, forward and backward, against float64 references."""

from __future__ import annotations

import pytest
import torch

from infinitecontext.kernels.rms_norm import add_rms_norm_triton, rms_norm_triton
from infinitecontext.kernels.rms_norm_ref import add_rms_norm_ref, rms_norm_ref

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1.5e-2}
# Odd widths and row counts; 1101 rows take several rows per program (slow in the interpreter).
SHAPES = [
    (1, 512),
    (5, 3, 300),
    (7, 1536),
    (2, 2048),
    pytest.param((1101, 256), marks=pytest.mark.slow),
]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm())


def leaf(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_(True)


def as_float64(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [leaf(t.double()) for t in tensors]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_rms_norm_forward_and_gradients(shape, dtype, kernel_device, poison_outputs):
    x = leaf(torch.randn(shape, dtype=dtype, device=kernel_device) * 3)
    weight = leaf(torch.randn(shape[-1], dtype=dtype, device=kernel_device))
    y = rms_norm_triton(x, weight, 1e-6)
    dy = torch.randn_like(y)
    y.backward(dy)

    x64, w64 = as_float64(x, weight)
    y64 = rms_norm_ref(x64, w64, 1e-6)
    y64.backward(dy.double())
    assert y.dtype == dtype and y.shape == x.shape
    assert rel_error(y, y64) < TOLERANCE[dtype]
    assert rel_error(x.grad, x64.grad) < TOLERANCE[dtype]
    assert rel_error(weight.grad, w64.grad) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_add_rms_norm_forward_and_gradients(dtype, kernel_device, poison_outputs):
    x = leaf(torch.randn(6, 5, 576, dtype=dtype, device=kernel_device))
    residual = leaf(torch.randn(6, 5, 576, dtype=dtype, device=kernel_device))
    weight = leaf(torch.rand(576, dtype=dtype, device=kernel_device) + 0.5)
    normed, summed = add_rms_norm_triton(x, residual, weight, 1e-5)
    d_normed, d_summed = torch.randn_like(normed), torch.randn_like(summed)
    torch.autograd.backward([normed, summed], [d_normed, d_summed])

    x64, r64, w64 = as_float64(x, residual, weight)
    normed64, summed64 = add_rms_norm_ref(x64, r64, w64, 1e-5)
    torch.autograd.backward([normed64, summed64], [d_normed.double(), d_summed.double()])
    assert rel_error(normed, normed64) < TOLERANCE[dtype]
    assert rel_error(summed, summed64) < TOLERANCE[dtype]
    for grad, grad64 in [(x.grad, x64.grad), (residual.grad, r64.grad), (weight.grad, w64.grad)]:
        assert rel_error(grad, grad64) < TOLERANCE[dtype]


def test_non_contiguous_rows(kernel_device, poison_outputs):
    wide = torch.randn(4, 1024, device=kernel_device)
    x = wide[:, 256:768]  # row stride 1024, width 512
    weight = torch.randn(512, device=kernel_device)
    assert (
        rel_error(rms_norm_triton(x, weight, 1e-6), rms_norm_ref(x.double(), weight.double(), 1e-6))
        < 1e-5
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_inference_path_matches_the_reference(dtype, kernel_device, poison_outputs):
    """Without autograd the kernels run with no rstd store and no graph node."""
    x = torch.randn(9, 1536, dtype=dtype, device=kernel_device)
    residual = torch.randn(9, 1536, dtype=dtype, device=kernel_device)
    weight = torch.randn(1536, dtype=dtype, device=kernel_device)
    with torch.no_grad():
        y = rms_norm_triton(x, weight, 1e-6)
        normed, summed = add_rms_norm_triton(x, residual, weight, 1e-6)
    x64, r64, w64 = x.double(), residual.double(), weight.double()
    assert y.grad_fn is None and normed.grad_fn is None
    assert rel_error(y, rms_norm_ref(x64, w64, 1e-6)) < TOLERANCE[dtype]
    normed64, summed64 = add_rms_norm_ref(x64, r64, w64, 1e-6)
    assert rel_error(normed, normed64) < TOLERANCE[dtype]
    assert rel_error(summed, summed64) < TOLERANCE[dtype]
