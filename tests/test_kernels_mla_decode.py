"""The Triton MLA decode kernel against a float64 reference (interpreter on CPU, compiled on GPU).

Fresh random inputs per test, outputs NaN-poisoned, cache rows past each length NaN-poisoned
too (a kernel that reads them fails), variable lengths in one batch including 1 and lengths
that are not a multiple of the tile, heuristic / single / many splits, contiguous and paged.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from infinitecontext.kernels.mla_decode import (
    DecodeConfig,
    choose_num_splits,
    default_config,
    default_num_splits,
    mla_decode_triton,
)
from infinitecontext.kernels.mla_decode_ref import (
    LATENT_DIM,
    PAGE_SIZE,
    mla_decode_ref,
    quantize_latent_fp8,
)

TOLERANCE = {torch.float32: 2e-3, torch.bfloat16: 1.5e-2}  # tf32 dots on GPU; bf16 probs/out


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).norm() / expected.norm())


def make_inputs(batch, heads, lengths, dtype, device, paged, capacity=None):
    lengths_t = torch.tensor(lengths, dtype=torch.int32, device=device)
    capacity = capacity or max(lengths)
    q_lat = torch.randn(batch, heads, 512, dtype=dtype, device=device)
    q_pe = torch.randn(batch, heads, 64, dtype=dtype, device=device)
    dense = torch.randn(batch, capacity, LATENT_DIM, dtype=dtype, device=device) * 0.5
    for b, length in enumerate(lengths):
        dense[b, length:] = float("nan")  # must never be read
    if not paged:
        return q_lat, q_pe, dense, lengths_t, None
    pages_per_seq = -(-capacity // PAGE_SIZE)
    dense = torch.nn.functional.pad(
        dense, (0, 0, 0, pages_per_seq * PAGE_SIZE - capacity), value=float("nan")
    )
    # Scatter the pages in a random order through a pool with spare (NaN) pages.
    num_pages = batch * pages_per_seq + 3
    order = torch.randperm(num_pages, device=device)[: batch * pages_per_seq]
    pool = torch.full((num_pages, PAGE_SIZE, LATENT_DIM), float("nan"), dtype=dtype, device=device)
    pool[order] = dense.reshape(-1, PAGE_SIZE, LATENT_DIM)
    block_table = order.reshape(batch, pages_per_seq).to(torch.int32)
    return q_lat, q_pe, pool, lengths_t, block_table


CASES = [
    # heads, lengths (variable; 1; not multiples of the tile), num_splits
    (16, [1, 200, 77], None),
    (16, [130, 1], 1),
    (5, [64, 129, 3], 7),
    (20, [300, 45], 16),  # two head groups of a 32-head tile, more splits than tiles
    (3, [700, 20], 150),  # the combine's widest chunk tile (256 chunks × 32 columns), most empty
    (64, [130, 64, 7], 3),  # the 64-head tile: whole tiles unmasked, ragged last tiles masked
]


@pytest.mark.parametrize("paged", [False, True], ids=["contiguous", "paged"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("heads", "lengths", "num_splits"), CASES)
def test_matches_float64_reference(
    heads, lengths, num_splits, dtype, paged, kernel_device, poison_outputs
):
    q_lat, q_pe, cache, lengths_t, block_table = make_inputs(
        len(lengths), heads, lengths, dtype, kernel_device, paged
    )
    scale = 0.1352
    out, lse = mla_decode_triton(
        q_lat, q_pe, cache, lengths_t, scale, block_table=block_table, num_splits=num_splits
    )
    ref_out, ref_lse = mla_decode_ref(
        q_lat, q_pe, cache, lengths_t, scale, block_table, compute_dtype=torch.float64
    )
    assert out.dtype == dtype and out.shape == (len(lengths), heads, 512)
    assert torch.isfinite(out).all() and torch.isfinite(lse).all()
    assert rel_error(out, ref_out) < TOLERANCE[dtype]
    assert (lse.double() - ref_lse.double()).abs().max() < 50 * TOLERANCE[dtype]


@pytest.mark.parametrize("paged", [False, True], ids=["contiguous", "paged"])
@pytest.mark.parametrize("interleave", [True, False], ids=["interleaved", "runs"])
@pytest.mark.parametrize("mask_only_last_tile", [False, True], ids=["all-masked", "last-masked"])
def test_both_chunk_layouts_match_the_reference(
    interleave, mask_only_last_tile, paged, kernel_device, poison_outputs
):
    """Chunks as every S-th tile (16-head default) or as contiguous runs (many-head default),
    every tile masked (16-head default) or only the ragged last one (many-head default), on
    the same small-head tile: ragged lengths, a chunk count that divides nothing. The rows
    past each length are NaN, so a whole-tile path that reads one fails."""
    config = dataclasses.replace(
        default_config(16, 2), interleave=interleave, mask_only_last_tile=mask_only_last_tile
    )
    q_lat, q_pe, cache, lengths_t, block_table = make_inputs(
        4, 16, [1, 200, 77, 517], torch.bfloat16, kernel_device, paged
    )
    out, lse = mla_decode_triton(
        q_lat, q_pe, cache, lengths_t, 0.1, block_table, num_splits=7, config=config
    )
    ref_out, ref_lse = mla_decode_ref(
        q_lat, q_pe, cache, lengths_t, 0.1, block_table, compute_dtype=torch.float64
    )
    assert rel_error(out, ref_out) < TOLERANCE[torch.bfloat16]
    assert (lse.double() - ref_lse).abs().max() < 0.5


@pytest.mark.slow
def test_many_heads_tile(kernel_device, poison_outputs):
    """DeepSeek-V3's 128 heads: two 64-head tiles that share every latent tile."""
    q_lat, q_pe, cache, lengths_t, _ = make_inputs(
        2, 128, [70, 5], torch.bfloat16, kernel_device, paged=False
    )
    out, lse = mla_decode_triton(q_lat, q_pe, cache, lengths_t, 0.07, num_splits=3)
    ref_out, ref_lse = mla_decode_ref(
        q_lat, q_pe, cache, lengths_t, 0.07, compute_dtype=torch.float64
    )
    assert rel_error(out, ref_out) < TOLERANCE[torch.bfloat16]
    assert (lse.double() - ref_lse).abs().max() < 0.5


@pytest.mark.parametrize("paged", [False, True], ids=["contiguous", "paged"])
@pytest.mark.parametrize("mask_only_last_tile", [False, True], ids=["all-masked", "last-masked"])
def test_fp8_cache_matches_its_reference_and_stays_near_bf16(
    paged, mask_only_last_tile, kernel_device, poison_outputs
):
    q_lat, q_pe, cache, lengths_t, block_table = make_inputs(
        2, 16, [150, 33], torch.bfloat16, kernel_device, paged
    )
    cache_fp8, cache_scale = quantize_latent_fp8(cache.nan_to_num(0.0))
    config = dataclasses.replace(default_config(16), mask_only_last_tile=mask_only_last_tile)
    out, _ = mla_decode_triton(
        q_lat, q_pe, cache_fp8, lengths_t, 0.1, block_table, cache_scale, 2, config
    )
    ref_fp8, _ = mla_decode_ref(
        q_lat, q_pe, cache_fp8, lengths_t, 0.1, block_table, cache_scale, torch.float64
    )
    ref_bf16, _ = mla_decode_ref(
        q_lat, q_pe, cache, lengths_t, 0.1, block_table, compute_dtype=torch.float64
    )
    assert rel_error(out, ref_fp8) < TOLERANCE[torch.bfloat16]
    assert rel_error(out, ref_bf16) < 0.1  # e4m3 keeps 3 mantissa bits


def test_output_is_consistent_across_split_counts(kernel_device):
    q_lat, q_pe, cache, lengths_t, _ = make_inputs(
        1, 16, [257], torch.float32, kernel_device, paged=False
    )
    outs = [mla_decode_triton(q_lat, q_pe, cache, lengths_t, 0.1, num_splits=s)[0] for s in (1, 5)]
    assert rel_error(outs[1], outs[0]) < 1e-5


def test_rejects_wrong_shapes(kernel_device):
    q_lat, q_pe, cache, lengths_t, _ = make_inputs(1, 16, [4], torch.float32, kernel_device, False)
    with pytest.raises(ValueError, match="lengths"):
        mla_decode_triton(q_lat, q_pe, cache, lengths_t.long(), 0.1)
    with pytest.raises(ValueError, match="cache_scale"):
        mla_decode_triton(q_lat, q_pe, cache.to(torch.float8_e4m3fn), lengths_t, 0.1)


def test_split_heuristic_fills_the_gpu_at_small_batch_and_long_context():
    splits = choose_num_splits(batch=1, head_groups=1, max_len=1 << 20, sm_count=132, ctas_per_sm=2)
    assert splits >= 132  # one sequence of one head group still covers every SM
    assert choose_num_splits(64, 2, 131072, 132, 1) == 1  # 128 programs already fill 132 SMs
    few = choose_num_splits(8, 1, 32768, 132, 1)
    assert 8 * few / 132 >= 0.95  # at most one wave, nearly every SM busy
    assert choose_num_splits(1, 1, 300, 132, 2) == 1  # chunks never shorter than 256 tokens


def test_split_heuristic_takes_the_fewest_chunks_with_the_same_longest_chunk():
    # 128k of 32-row tiles: 132 chunks are 31 or 32 tiles long, 128 chunks all 32: same wave
    assert choose_num_splits(1, 1, 131072, 132, 1, block_n=32) == 128
    assert choose_num_splits(1, 1, 1 << 20, 132, 1, block_n=32) == 132  # 248 or 249 tiles
    assert choose_num_splits(1, 2, 131072, 132, 1) == 66  # compute-bound tiles: every SM
    # the launcher trims only the memory-bound (≤ 16-head) tiles
    assert default_num_splits(1, 16, 131072, 132, default_config(16)) == 128
    assert default_num_splits(1, 128, 131072, 132, default_config(128)) == 66
    assert choose_num_splits(1, 1, 4096, 132, 1, block_n=32) == 16  # ≥ 256 tokens a chunk


def test_default_config_uses_a_wgmma_sized_tile_for_many_heads():
    assert default_config(16).block_h == 16
    assert default_config(16).interleave and not default_config(128).interleave
    assert default_config(128) == DecodeConfig(64, 64, 8, 2, 1, mask_only_last_tile=True)
    assert default_config(16).launch_early and not default_config(128).launch_early
    assert default_config(128, element_size=4).block_n == 16  # fp32 tiles fit shared memory
