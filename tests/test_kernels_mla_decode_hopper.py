"""The Hopper (Gluon, warp-specialised) split kernel: compiled for sm_90 here, run on the GPU.

Gluon has no CPU interpreter, so on this machine the kernel is compiled to PTX and SASS for
an H100 (a broken kernel or a Triton API change fails here); the GPU tests run it against
the float64 reference with NaN past every length, poisoned outputs, ragged lengths, many
chunks, repeated calls (the claim counters must come back to zero) and a CUDA graph.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import torch
from test_kernels_mla_decode import TOLERANCE, make_inputs, rel_error

from infinitecontext.kernels.mla_decode import (
    HOPPER_MAX_BATCH,
    hopper_kernel_supports,
    hopper_kernel_takes,
    hopper_num_splits,
    mla_decode_triton,
)
from infinitecontext.kernels.mla_decode_ref import mla_decode_ref

COMPILE_FOR_H100 = """
import json
import triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
from infinitecontext.kernels import mla_decode_hopper as hopper

desc = f"tensordesc<bf16[{hopper.BLOCK_N.value}, 64],{hopper._box_layout()!r}>"
signature = {
    "q_lat_ptr": "*bf16", "q_pe_ptr": "*bf16", "desc": desc, "lengths_ptr": "*i32",
    "part_out_ptr": "*fp32", "part_lse_ptr": "*fp32", "counter_ptr": "*i32",
    "sm_scale_log2": "fp32", "heads": "i32", "num_splits": "i32", "seq_rows": "i32",
    "stride_q_b": "i32", "stride_q_h": "i32", "stride_pe_b": "i32", "stride_pe_h": "i32",
    "NUM_STAGES": "constexpr", "DYNAMIC_TILES": "constexpr", "WAIT_FOR_PREVIOUS": "constexpr",
}
constexprs = {"NUM_STAGES": hopper.NUM_STAGES, "DYNAMIC_TILES": hopper.DYNAMIC_TILES,
              "WAIT_FOR_PREVIOUS": True}
source = GluonASTSource(fn=hopper._ws_split_kernel, signature=signature, constexprs=constexprs,
                        attrs={})
kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                        options={"num_warps": 4, "maxnreg": hopper.MAX_REGISTERS})
print(json.dumps({"ptx": kernel.asm["ptx"], "cubin_bytes": len(kernel.asm["cubin"]),
                  "num_warps": kernel.metadata.num_warps, "shared": kernel.metadata.shared}))
"""


def _compile_for_h100() -> dict[str, Any]:
    """PTX and SASS for sm_90, in a process of its own: the kernel tests run Triton's
    interpreter (TRITON_INTERPRET=1), under which a Gluon kernel cannot be compiled."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", COMPILE_FOR_H100],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.slow
def test_compiles_for_the_h100_with_tma_mbarriers_and_a_producer_warp():
    kernel = _compile_for_h100()
    ptx = kernel["ptx"]
    assert ptx.count("cp.async.bulk.tensor.2d") >= 9  # nine boxes a tile
    assert "mbarrier.try_wait.parity" in ptx and "mbarrier.arrive.expect_tx" in ptx
    assert "setmaxnreg.dec.sync.aligned.u32 \t24" in ptx  # the producer warp gives registers up
    assert "griddepcontrol.wait" in ptx and "atom.global" in ptx  # PDL and the tile claims
    assert kernel["num_warps"] == 8  # four consumers, one producer (rounded to a group)
    # Two programs must not fit on one SM (no second wave) but the combine's must:
    assert 100_000 < kernel["shared"] <= 227 * 1024
    assert kernel["cubin_bytes"] > 0


def test_takes_what_it_supports_up_to_four_sequences_unless_turned_off(kernel_device, monkeypatch):
    q_lat, _, cache, _, _ = make_inputs(1, 16, [64], torch.bfloat16, kernel_device, False)
    monkeypatch.delenv("ICX_MLA_HOPPER", raising=False)
    if kernel_device.type == "cpu":
        assert not hopper_kernel_takes(q_lat, cache)  # no interpreter for Gluon
        return
    assert hopper_kernel_takes(q_lat, cache) == hopper_kernel_supports(q_lat, cache)
    many = HOPPER_MAX_BATCH + 1  # where the Triton kernel streams faster
    many_q = q_lat.expand(many, -1, -1).contiguous()
    assert not hopper_kernel_takes(many_q, cache.expand(many, -1, -1).contiguous())
    monkeypatch.setenv("ICX_MLA_HOPPER", "0")
    assert not hopper_kernel_takes(q_lat, cache)
    wide = torch.zeros(1, 32, 512, dtype=torch.bfloat16, device=kernel_device)
    assert not hopper_kernel_supports(wide, cache)  # more heads than one tile
    assert not hopper_kernel_supports(q_lat.float(), cache.float())  # bf16 only
    assert not hopper_kernel_supports(q_lat, cache[:, ::2])  # rows must be contiguous


@pytest.mark.parametrize(
    ("batch", "max_len", "splits"),
    [
        (1, 4096, 64),  # chunks of two tiles (the Triton kernel's floor of 256 tokens: 16)
        (1, 32 * 1024, 132),  # every SM: claimed tiles even out the longer chunks
        (1, 128 * 1024, 132),
        (2, 4096, 64),
        (4, 128 * 1024, 33),
        (1, 100, 1),  # too short to split: the Triton kernel's single pass
    ],
)
def test_hopper_split_count_fills_every_sm_with_chunks_of_two_tiles_or_more(batch, max_len, splits):
    assert hopper_num_splits(batch, max_len, sm_count=132) == splits


def test_forcing_it_where_it_does_not_apply_is_a_clear_error(kernel_device):
    q_lat, q_pe, cache, lengths, _ = make_inputs(1, 16, [64], torch.float32, kernel_device, False)
    with pytest.raises(ValueError, match="Hopper split kernel needs"):
        mla_decode_triton(q_lat, q_pe, cache, lengths, 0.1, num_splits=2, hopper=True)


def _needs_hopper(kernel_device: torch.device) -> None:
    if kernel_device.type != "cuda":
        pytest.skip("the Gluon kernel runs only on a GPU (no interpreter)")
    probe = torch.zeros(1, 16, 512, dtype=torch.bfloat16, device=kernel_device)
    cache = torch.zeros(1, 64, 576, dtype=torch.bfloat16, device=kernel_device)
    if not hopper_kernel_supports(probe, cache):
        pytest.skip("needs an sm_90 GPU and Triton's Gluon")


CASES = [
    # heads, lengths (variable; 1; ragged; long enough for claimed tiles), num_splits
    (16, [1, 200, 77], 3),  # (the heuristic would give one chunk here: the Triton kernel)
    (5, [64, 129, 3], 7),
    (3, [700, 20], 150),  # more chunks than tiles: most programs' first tile lies past the end
    (16, [9000, 33, 4097], 5),  # 282 tiles over 5 chunks: the last 8 of each are claimed
    (16, [4000], None),  # the launcher's count: 62 chunks of two tiles, the rest claimed
    (16, [130, 64], None),
]


@pytest.mark.parametrize(("heads", "lengths", "num_splits"), CASES)
def test_matches_float64_reference(heads, lengths, num_splits, kernel_device, poison_outputs):
    _needs_hopper(kernel_device)
    q_lat, q_pe, cache, lengths_t, _ = make_inputs(
        len(lengths), heads, lengths, torch.bfloat16, kernel_device, paged=False
    )
    ref_out, ref_lse = mla_decode_ref(
        q_lat, q_pe, cache, lengths_t, 0.1352, compute_dtype=torch.float64
    )
    for _ in range(3):  # each call starts from counters the previous one's combine reset
        out, lse = mla_decode_triton(
            q_lat, q_pe, cache, lengths_t, 0.1352, num_splits=num_splits, hopper=True
        )
        assert torch.isfinite(out).all() and torch.isfinite(lse).all()
        assert rel_error(out, ref_out) < TOLERANCE[torch.bfloat16]
        assert (lse.double() - ref_lse).abs().max() < 0.5


def test_agrees_with_the_triton_split_kernel_and_replays_in_a_graph(kernel_device):
    _needs_hopper(kernel_device)
    q_lat, q_pe, cache, lengths_t, _ = make_inputs(
        2, 16, [20000, 3000], torch.bfloat16, kernel_device, paged=False
    )
    triton_out, _ = mla_decode_triton(q_lat, q_pe, cache, lengths_t, 0.1, hopper=False)
    eager_out, _ = mla_decode_triton(q_lat, q_pe, cache, lengths_t, 0.1, hopper=True)
    assert rel_error(eager_out, triton_out) < 5e-3

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        mla_decode_triton(q_lat, q_pe, cache, lengths_t, 0.1, hopper=True)  # warm-up, this stream
        with torch.cuda.graph(graph, stream=stream):
            graph_out, _ = mla_decode_triton(q_lat, q_pe, cache, lengths_t, 0.1, hopper=True)
    torch.cuda.current_stream().wait_stream(stream)
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        assert rel_error(graph_out, triton_out) < 5e-3
