"""MLA decode plans: which split kernel the default dispatch picks, and the per-shape cache.

The dispatch table is pinned to what the H100 measured (BENCHMARKS.md, "MLA decode"): the
Hopper kernel at B <= 4, <= 16 heads, dense bf16 cache on sm_90; the Triton kernel
elsewhere. The cache tests run the kernels (the interpreter on CPU, the GPU where there is
one) and count the look-ups a repeated call would otherwise redo.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from test_kernels_mla_decode import TOLERANCE, make_inputs, rel_error

from infinitecontext.kernels import mla_decode
from infinitecontext.kernels.mla_decode import (
    DecodePlan,
    PlanCache,
    default_split_kernel,
    mla_decode_triton,
    plan_cache,
    plan_key,
)
from infinitecontext.kernels.mla_decode_ref import mla_decode_ref

BF16, FP32 = torch.bfloat16, torch.float32


@pytest.mark.parametrize(
    ("arch", "heads", "batch", "dtype", "paged", "fp8", "kernel"),
    [
        (9, 16, 1, BF16, False, False, "hopper"),  # B = 1, 4k: twice as fast
        (9, 16, 4, BF16, False, False, "hopper"),  # 1-3% faster from 32k on
        (9, 5, 2, BF16, False, False, "hopper"),  # fewer heads, same 16-head tile
        (9, 16, 5, BF16, False, False, "triton"),  # from B = 8 the Triton kernel streams faster
        (9, 16, 8, BF16, False, False, "triton"),
        (9, 16, 1, BF16, True, False, "triton"),  # paged: no Hopper form
        (9, 16, 1, BF16, False, True, "triton"),  # fp8 cache: no Hopper form
        (9, 32, 1, BF16, False, False, "triton"),  # more heads than one 16-head tile
        (9, 128, 1, BF16, False, False, "triton"),  # compute-bound 64-head tiles
        (9, 16, 1, FP32, False, False, "triton"),  # bf16 only
        (8, 16, 1, BF16, False, False, "triton"),  # A100: no TMA or warp specialisation
        (10, 16, 1, BF16, False, False, "triton"),  # Blackwell: the kernel is built for sm_90
    ],
)
def test_default_dispatch_picks_the_measured_fastest_split_kernel(
    arch, heads, batch, dtype, paged, fp8, kernel
):
    assert default_split_kernel(arch, heads, batch, dtype, paged, fp8) == kernel


def test_default_dispatch_on_this_gpu_follows_the_table(kernel_device, monkeypatch):
    """`mla_decode_triton`'s plan runs the kernel that `default_split_kernel` names, where the
    Hopper kernel is available at all."""
    monkeypatch.delenv(mla_decode.HOPPER_ENV_VAR, raising=False)
    for batch in (1, 8):
        q_lat, q_pe, cache, lengths, _ = make_inputs(
            batch, 16, [4096] * batch, BF16, kernel_device, paged=False
        )
        plan = DecodePlan(q_lat, q_pe, cache, lengths, None, None, None, None, None)
        expected = mla_decode.hopper_kernel_supports(q_lat, cache) and batch <= 4
        assert plan.hopper == expected


class _Counted:
    """Wraps a function and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_a_repeated_call_shape_skips_the_checks_and_look_ups(kernel_device, monkeypatch):
    plan_cache().clear()
    spies = {
        name: _Counted(getattr(mla_decode, name))
        for name in ("_check_inputs", "device_sm_count", "supports_pdl", "hopper_kernel_takes")
    }
    for name, spy in spies.items():
        monkeypatch.setattr(mla_decode, name, spy)

    def calls() -> dict[str, int]:
        return {name: spy.calls for name, spy in spies.items()}

    q_lat, q_pe, cache, lengths, _ = make_inputs(2, 16, [300, 45], FP32, kernel_device, False)
    mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1)
    assert calls() == dict.fromkeys(spies, 1)
    # Same shapes, other values, scale and lengths: the plan is found, nothing is looked up.
    q_lat2, q_pe2, cache2, lengths2, _ = make_inputs(2, 16, [7, 300], FP32, kernel_device, False)
    out, _ = mla_decode_triton(q_lat2, q_pe2, cache2, lengths2, 0.2)
    assert calls() == dict.fromkeys(spies, 1)
    ref, _ = mla_decode_ref(q_lat2, q_pe2, cache2, lengths2, 0.2, compute_dtype=torch.float64)
    assert rel_error(out, ref) < TOLERANCE[FP32]
    # Another batch is another plan.
    q_lat3, q_pe3, cache3, lengths3, _ = make_inputs(1, 16, [300], FP32, kernel_device, False)
    mla_decode_triton(q_lat3, q_pe3, cache3, lengths3, 0.1)
    assert calls() == dict.fromkeys(spies, 2)
    assert len(plan_cache().plans) == 2


def test_partials_are_reused_by_the_next_call_and_stay_correct(kernel_device):
    plan_cache().clear()
    results = []
    for _ in range(2):
        q_lat, q_pe, cache, lengths, block_table = make_inputs(
            2, 16, [200, 77], BF16, kernel_device, paged=True
        )
        out, lse = mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1, block_table, num_splits=3)
        ref, ref_lse = mla_decode_ref(
            q_lat, q_pe, cache, lengths, 0.1, block_table, compute_dtype=torch.float64
        )
        results.append(out)
        assert rel_error(out, ref) < TOLERANCE[BF16]
        assert (lse.double() - ref_lse).abs().max() < 0.5
    (plan,) = plan_cache().plans.values()
    assert len(plan.partials) == 1  # one stream, one set of partials
    assert results[0].data_ptr() != results[1].data_ptr()  # outputs are the caller's


@dataclass
class _FakeTensor:
    """What `plan_key` reads of a tensor."""

    device: int
    address: int = 1 << 20
    shape: tuple[int, ...] = (1, 16, 512)
    dtype: torch.dtype = BF16

    def stride(self) -> tuple[int, ...]:
        return (self.shape[1] * self.shape[2], self.shape[2], 1)

    def data_ptr(self) -> int:
        return self.address

    def get_device(self) -> int:
        return self.device


def _key(q_lat: _FakeTensor) -> tuple[object, ...]:
    other = _FakeTensor(q_lat.device)
    return plan_key(q_lat, other, other, other, None, None, None, None, None)  # type: ignore[arg-type]


def test_plan_key_tells_devices_alignment_and_shapes_apart():
    base = _key(_FakeTensor(0))
    assert _key(_FakeTensor(0, address=(1 << 20) + 512)) == base  # another aligned address
    assert _key(_FakeTensor(1)) != base  # another GPU
    assert _key(_FakeTensor(0, address=(1 << 20) + 2)) != base  # Triton specialises on it
    assert _key(_FakeTensor(0, shape=(2, 16, 512))) != base
    assert _key(_FakeTensor(0, dtype=FP32)) != base


def test_plan_key_follows_the_environment_switches(monkeypatch):
    monkeypatch.delenv(mla_decode.HOPPER_ENV_VAR, raising=False)
    base = _key(_FakeTensor(0))
    monkeypatch.setenv(mla_decode.HOPPER_ENV_VAR, "0")
    assert _key(_FakeTensor(0)) != base


def test_direct_launch_is_opt_in_until_it_has_run_on_a_gpu(monkeypatch):
    from infinitecontext.kernels import runtime

    monkeypatch.delenv(runtime.DIRECT_LAUNCH_ENV_VAR, raising=False)
    monkeypatch.delenv(runtime.INTERPRET_ENV_VAR, raising=False)
    base = _key(_FakeTensor(0))
    assert not runtime.direct_launch()
    monkeypatch.setenv(runtime.DIRECT_LAUNCH_ENV_VAR, "1")
    assert runtime.direct_launch() and _key(_FakeTensor(0)) != base


def test_plan_cache_drops_the_oldest_beyond_its_capacity():
    plans = PlanCache(capacity=2)
    for key in ("a", "b", "c"):
        plans.add((key,), object())  # type: ignore[arg-type]
    assert plans.get(("a",)) is None
    assert plans.get(("b",)) is not None and plans.get(("c",)) is not None
