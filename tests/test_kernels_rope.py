"""Triton in-place interleaved RoPE against float64 references and transformers' DeepseekV3."""

from __future__ import annotations

import pytest
import torch
from plugins.prerequisites import require_module

from infinitecontext.kernels.rope import apply_rope_triton_
from infinitecontext.kernels.rope_ref import apply_rope_ref_

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2}


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm())


def tables(positions: torch.Tensor, half: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000 ** (torch.arange(half, device=positions.device) / half))
    angles = positions.double()[..., None] * inv_freq  # (…, T, R/2)
    return angles.cos().float() * 1.1, angles.sin().float() * 1.1  # a YaRN-like factor


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_in_place_on_a_strided_slice(dtype, kernel_device):
    q = torch.randn(2, 7, 5, 192, dtype=dtype, device=kernel_device)  # (B, T, H, 128 + 64)
    q_pe = q[..., 128:].transpose(1, 2)  # (B, H, T, 64), not contiguous
    untouched = q[..., :128].clone()
    cos, sin = tables(torch.arange(7, device=kernel_device), 32)
    expected = apply_rope_ref_(q_pe.double().clone(), cos.double(), sin.double())
    returned = apply_rope_triton_(q_pe, cos, sin)
    assert returned.data_ptr() == q_pe.data_ptr()
    assert rel_error(q_pe, expected) < TOLERANCE[dtype]
    assert torch.equal(q[..., :128], untouched)


def test_per_sequence_positions_broadcast(kernel_device):
    x = torch.randn(3, 16, 1, 64, device=kernel_device)  # decode: (B, H, T=1, R)
    positions = torch.tensor([[0], [4095], [131071]], device=kernel_device)  # (B, T)
    cos, sin = tables(positions, 32)
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, R/2)
    expected = apply_rope_ref_(x.double().clone(), cos.double(), sin.double())
    assert rel_error(apply_rope_triton_(x, cos, sin), expected) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_backward_matches_reference_gradients(dtype, kernel_device, poison_outputs):
    x = torch.randn(4, 9, 64, dtype=dtype, device=kernel_device, requires_grad=True)
    cos, sin = tables(torch.arange(9, device=kernel_device), 32)
    y = x * 1.0  # in-place ops need a non-leaf
    apply_rope_triton_(y, cos, sin)
    dy = torch.randn_like(y)
    y.backward(dy)

    x64 = x.detach().double().requires_grad_(True)
    y64 = x64 * 1.0
    apply_rope_ref_(y64, cos.double(), sin.double())
    y64.backward(dy.double())
    assert rel_error(y, y64) < TOLERANCE[dtype]
    assert rel_error(x.grad, x64.grad) < TOLERANCE[dtype]


@pytest.mark.slow  # imports transformers
def test_scores_equal_transformers_deepseek_v3_interleaved_rope(kernel_device):
    """Same q·k as DeepseekV3's rope_interleave path, which permutes q and k alike."""
    modeling = require_module(
        "transformers.models.deepseek_v3.modeling_deepseek_v3",
        "transformers >= 5, in the train extra",
    )
    q = torch.randn(1, 4, 6, 64, device=kernel_device)
    k = torch.randn(1, 1, 6, 64, device=kernel_device)
    cos, sin = tables(torch.arange(6, device=kernel_device), 32)
    hf_q, hf_k = modeling.apply_rotary_pos_emb_interleave(
        q, k, torch.cat([cos, cos], -1)[None], torch.cat([sin, sin], -1)[None]
    )
    ours_q = apply_rope_triton_(q.clone(), cos, sin)
    ours_k = apply_rope_triton_(k.clone(), cos, sin)
    de_interleave = torch.cat([torch.arange(0, 64, 2), torch.arange(1, 64, 2)]).to(kernel_device)
    assert torch.allclose(ours_q[..., de_interleave], hf_q, atol=1e-5)
    assert torch.allclose(
        ours_q @ ours_k.transpose(-1, -2), hf_q @ hf_k.transpose(-1, -2), atol=1e-4
    )
