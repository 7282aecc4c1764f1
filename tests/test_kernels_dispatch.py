"""The dispatcher: Triton on CUDA, the reference elsewhere, ICX_KERNELS forcing either."""

from __future__ import annotations

import pytest
import torch

from infinitecontext.kernels import dispatch
from infinitecontext.kernels.mla_decode_ref import mla_decode_ref
from infinitecontext.kernels.rms_norm_ref import rms_norm_ref


def test_auto_picks_by_device(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    assert dispatch.backend_for(torch.zeros(1)) == "reference"
    if torch.cuda.is_available():
        assert dispatch.backend_for(torch.zeros(1, device="cuda")) == "triton"


@pytest.mark.parametrize("choice", ["triton", "reference"])
def test_environment_forces_a_backend(choice, monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, choice)
    assert dispatch.backend_for(torch.zeros(1)) == choice


def test_unknown_choice_is_an_error(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "cuda")
    with pytest.raises(ValueError, match="ICX_KERNELS"):
        dispatch.backend_for(torch.zeros(1))


@pytest.mark.parametrize("choice", ["triton", "reference"])
def test_both_backends_agree_through_the_dispatcher(choice, monkeypatch, kernel_device):
    monkeypatch.setenv(dispatch.ENV_VAR, choice)
    x = torch.randn(3, 512, device=kernel_device)
    w = torch.randn(512, device=kernel_device)
    assert torch.allclose(dispatch.rms_norm(x, w, 1e-6), rms_norm_ref(x, w, 1e-6), atol=1e-5)
    normed, summed = dispatch.add_rms_norm(x, x, w, 1e-6)
    assert torch.allclose(normed, rms_norm_ref(2 * x, w, 1e-6), atol=1e-5)
    assert torch.allclose(summed, 2 * x)

    q_lat = torch.randn(2, 16, 512, device=kernel_device)
    q_pe = torch.randn(2, 16, 64, device=kernel_device)
    cache = torch.randn(2, 40, 576, device=kernel_device)
    lengths = torch.tensor([40, 9], dtype=torch.int32, device=kernel_device)
    out, lse = dispatch.mla_decode(q_lat, q_pe, cache, lengths, 0.1)
    ref_out, ref_lse = mla_decode_ref(q_lat, q_pe, cache, lengths, 0.1)
    assert torch.allclose(out, ref_out, atol=2e-3, rtol=2e-3)
    assert torch.allclose(lse, ref_lse, atol=2e-3)

    x_pe = torch.randn(2, 5, 64, device=kernel_device)
    cos, sin = torch.rand(5, 32, device=kernel_device), torch.rand(5, 32, device=kernel_device)
    rotated = dispatch.apply_rope_(x_pe.clone(), cos, sin)
    assert rotated.shape == x_pe.shape and not torch.allclose(rotated, x_pe)
