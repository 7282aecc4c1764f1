"""Triton flash-decoding for absorbed MLA over the latent cache (contiguous or paged, bf16 or fp8).

Math (reference: mla_decode_ref.py; DeepSeek-V2 §2.1.3 absorption, FlashMLA's layout): each
cached row is ``[c_KV (512) | k_pe (64)]`` and is both key and value. For head h and token t

    s[h, t] = scale · (q_lat[h]·c_KV[t] + q_pe[h]·k_pe[t]),
    out[h]  = Σ_t softmax(s[h])_t · c_KV[t],   lse[h] = log Σ_t exp(s[h, t]).

Flash-decoding (Dao et al., "Flash-Decoding for long-context inference", 2023): the context
of each sequence is cut into `num_splits` chunks handled by separate programs. A program owns
BLOCK_H heads of one sequence and one chunk; it streams BLOCK_N-row tiles of the latent cache
from HBM once (a chunk is a contiguous run of tiles or, for memory-bound tiles, every
num_splits-th tile, so that all programs sweep the cache side by side), uses the same tile
for the scores and for the values, and keeps a running max and sum (online softmax, fp32,
base 2). Each chunk writes a normalised partial output and its log-sum-exp;
`_combine_kernel` merges the chunks. Nothing of size B×L×H is written to HBM.

On Hopper (sm_90), calls of at most HOPPER_MAX_BATCH sequences with at most 16 heads over a
dense bf16 cache run the split step in `mla_decode_hopper.py` instead: the same partials
and combine from a warp-specialised Gluon kernel (a TMA producer warp, the last tiles of each
chunk claimed at run time), with more and shorter chunks (`hopper_num_splits`). On the H100
it is 1-3% faster than the Triton split kernel at B <= 4 from 32k on and twice as fast at
B = 1, 4k; from B = 8 at 32k on it streams 1-3% slower, so those calls stay on the Triton
kernel. ICX_MLA_HOPPER=0 keeps every call on the Triton kernel.

FP8: the cache may be float8_e4m3fn with one float32 scale per token row. The tile is
converted to bf16 exactly (e4m3 ⊂ bf16) and the scale is applied to the BLOCK_H×BLOCK_N
scores and probabilities instead of the 576-wide rows.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.compiler import CompiledKernel
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from infinitecontext.kernels import runtime
from infinitecontext.kernels.mla_decode_ref import KV_LORA_RANK, LATENT_DIM, ROPE_DIM
from infinitecontext.kernels.runtime import (
    check_last_dim_contiguous,
    device_sm_count,
    supports_pdl,
    triton_interpreting,
)

LOG2E = 1.4426950408889634
MAX_SPLITS = 256
MIN_TOKENS_PER_SPLIT = 256
"""A chunk shorter than this spends more on its partial write and the combine than it saves."""
MEMORY_BOUND_BLOCK_H = 16
"""Tiles of this many heads or fewer are bound by the cache read, more by the dots."""
HOPPER_MAX_BATCH = 4
"""The Hopper split kernel takes calls of at most this many sequences. On the H100 it was
1-3% slower than the Triton kernel from B = 8 at 32k on (a lower streaming rate per SM,
deeper stages no help) and 1-3% faster at B = 1, 2, 4."""
HOPPER_MIN_TOKENS_PER_SPLIT = 64
"""Two tiles: the Hopper kernel's fixed costs are lower, and B = 1, 4k ran in 8.0-8.2 µs in
64 chunks against 16.0 µs in the 16 chunks that 256 tokens a chunk allow."""


@dataclass(frozen=True)
class DecodeConfig:
    """Tile shape and launch settings of the split kernel."""

    block_h: int
    """Heads per program; they share every latent tile read (≥ 16 for tl.dot)."""
    block_n: int
    """Cache rows per tile."""
    num_warps: int
    num_stages: int
    ctas_per_sm: int
    """Programs one SM keeps resident at once; the split heuristic fills this many slots."""
    interleave: bool = False
    """Chunk s takes tiles s, s + S, s + 2S, … of its sequence (S chunks) instead of one
    contiguous run: the programs then read neighbouring tiles at the same time. On the H100
    that streams 1.3-3.1% faster with 16-head tiles; with 64-head tiles it was 3-8% slower
    than contiguous chunks, so only memory-bound tiles use it."""
    mask_only_last_tile: bool = False
    """Whole tiles skip the row mask (no predicated loads, no select on the scores); only a
    sequence's ragged last tile is masked. 10-12% faster with 64-head tiles on the H100, 25%
    slower with 16-head tiles."""
    launch_early: bool = False
    """Launch the split kernel with programmatic dependent launch (Hopper): its programs
    become resident while the previous kernel finishes and wait for it before their first
    load. 2% faster with 16-head tiles at B = 1 beside the combine's early trigger; 0.5-1.5%
    slower with 64-head tiles."""


def default_config(heads: int, element_size: int = 2) -> DecodeConfig:
    """Tiles picked by the H100 sweep (`mla_decode_benchmark.py --sweep`, docs/kernels.md).

    Few heads: memory-bound, small 32-row tiles three stages deep, one program per SM,
    interleaved chunks, launched early.
    Many heads: one 64-head tile (the wgmma M) that shares each 64-row latent tile; whole
    tiles unmasked.
    4-byte inputs (fp32 tests) get 16-row single-stage tiles to fit in shared memory.
    """
    if heads <= MEMORY_BOUND_BLOCK_H:
        config = DecodeConfig(
            block_h=16,
            block_n=32,
            num_warps=4,
            num_stages=3,
            ctas_per_sm=1,
            interleave=True,
            launch_early=True,
        )
    elif heads <= 32:
        config = DecodeConfig(block_h=32, block_n=64, num_warps=4, num_stages=2, ctas_per_sm=1)
    else:
        config = DecodeConfig(
            block_h=64,
            block_n=64,
            num_warps=8,
            num_stages=2,
            ctas_per_sm=1,
            mask_only_last_tile=True,
        )
    if element_size >= 4:
        config = dataclasses.replace(config, block_n=16, num_stages=1)
    return config


def choose_num_splits(
    batch: int,
    head_groups: int,
    max_len: int,
    sm_count: int,
    ctas_per_sm: int,
    block_n: int | None = None,
    min_tokens_per_split: int = MIN_TOKENS_PER_SPLIT,
    max_splits: int = MAX_SPLITS,
) -> int:
    """How many chunks to cut each sequence into so that one wave fills the GPU.

    With `slots` programs resident at once, a grid that already fills 80% of them is not
    split (FlashAttention-2's rule); otherwise each (sequence, head group) gets up to
    slots // programs chunks, never shorter than `min_tokens_per_split`. One wave and no
    more: a second, partial wave would leave SMs idle for a whole chunk. The chunks are
    whole tiles dealt out evenly (in `_split_kernel`), so B = 1 fills all 132 SMs of an
    H100.

    Given the tile height `block_n` (the launcher passes it for memory-bound tiles), the
    count is then cut to the fewest chunks with the same longest chunk: the wave ends with
    its longest chunk, and fewer chunks write and combine fewer partials. At 16 heads,
    B = 1, 128k (4096 tiles) that is 128 chunks of 32 tiles rather than 132 of 31 or 32:
    0.9% faster on the H100. At 128 heads, compute-bound, every SM's arithmetic counts:
    cutting 66 chunks a head group to 64 was 4% slower there.
    """
    slots = sm_count * ctas_per_sm
    programs = batch * head_groups
    if programs >= 0.8 * slots:
        return 1
    splits = max(1, min(slots // programs, max_len // min_tokens_per_split, max_splits))
    if block_n is None:
        return splits
    tiles = triton.cdiv(max_len, block_n)
    return triton.cdiv(tiles, triton.cdiv(tiles, splits))


def hopper_num_splits(batch: int, max_len: int, sm_count: int) -> int:
    """The Hopper kernel's split count: one program per SM, chunks of at least two tiles,
    and no trimming to the fewest chunks of the longest length (`choose_num_splits`): its
    claimed tiles keep every program busy to the end, so all SMs count (B = 1, 32k: 132
    chunks 0.9% faster than 128)."""
    return choose_num_splits(
        batch, 1, max_len, sm_count, 1, min_tokens_per_split=HOPPER_MIN_TOKENS_PER_SPLIT
    )


def default_num_splits(
    batch: int, heads: int, max_len: int, sm_count: int, config: DecodeConfig
) -> int:
    """The launcher's split count for `config`'s tiles (`choose_num_splits`)."""
    memory_bound = config.block_h <= MEMORY_BOUND_BLOCK_H
    return choose_num_splits(
        batch,
        triton.cdiv(heads, config.block_h),
        max_len,
        sm_count,
        config.ctas_per_sm,
        config.block_n if memory_bound else None,
    )


@triton.jit
def _attend_tile(  # type: ignore[no-untyped-def]
    q_lat,
    q_pe,
    m_i,
    l_i,
    acc,
    tile_start,
    limit,
    seq,
    cache_ptr,
    scale_ptr,
    block_table_ptr,
    sm_scale_log2,
    stride_c_outer,
    stride_c_tok,
    stride_s_outer,
    stride_s_tok,
    stride_bt_b,
    D_LAT: tl.constexpr,
    D_PE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    PAGED: tl.constexpr,
    FP8: tl.constexpr,
    IEEE_FP32: tl.constexpr,
    MASKED: tl.constexpr,
):
    """One BLOCK_N-row latent tile into the running (max, sum, accumulator) of BLOCK_H heads.

    MASKED: rows at or past `limit` are neither read nor counted. An unmasked tile must be
    whole: no predicates on its loads and no select on its scores.
    """
    offs_d = tl.arange(0, D_LAT)
    offs_r = tl.arange(0, D_PE)
    offs_t = tile_start + tl.arange(0, BLOCK_N)
    if PAGED:
        # Tiles start at multiples of BLOCK_N, which divides PAGE_SIZE: one page per tile,
        # so the rows stay contiguous and the loads vectorise as in the dense case.
        page = tl.load(block_table_ptr + seq * stride_bt_b + tile_start // PAGE_SIZE)
        page = page.to(tl.int64)
        in_page = tile_start % PAGE_SIZE + tl.arange(0, BLOCK_N)
        rows = page * stride_c_outer + in_page * stride_c_tok
        scale_rows = page * stride_s_outer + in_page * stride_s_tok
    else:
        rows = seq.to(tl.int64) * stride_c_outer + offs_t.to(tl.int64) * stride_c_tok
        scale_rows = seq.to(tl.int64) * stride_s_outer + offs_t.to(tl.int64) * stride_s_tok
    c_kv_ptrs = cache_ptr + rows[:, None] + offs_d[None, :]
    k_pe_ptrs = cache_ptr + rows[:, None] + D_LAT + offs_r[None, :]
    if MASKED:
        mask_t = offs_t < limit
        c_kv = tl.load(c_kv_ptrs, mask=mask_t[:, None], other=0.0)
        k_pe = tl.load(k_pe_ptrs, mask=mask_t[:, None], other=0.0)
    else:
        c_kv = tl.load(c_kv_ptrs)
        k_pe = tl.load(k_pe_ptrs)
    c_kv = c_kv.to(q_lat.dtype)
    k_pe = k_pe.to(q_pe.dtype)

    if IEEE_FP32:  # fp32 inputs: exact fp32 products, not tf32
        scores = tl.dot(q_lat, tl.trans(c_kv), input_precision="ieee")
        scores += tl.dot(q_pe, tl.trans(k_pe), input_precision="ieee")
    else:
        scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))  # (BLOCK_H, N)
    if FP8:
        if MASKED:
            token_scale = tl.load(scale_ptr + scale_rows, mask=mask_t, other=0.0)
        else:
            token_scale = tl.load(scale_ptr + scale_rows)
        scores = scores * token_scale[None, :]
    scores = scores * sm_scale_log2
    if MASKED:
        scores = tl.where(mask_t[None, :], scores, float("-inf"))

    m_new = tl.maximum(m_i, tl.max(scores, axis=1))
    alpha = tl.exp2(m_i - m_new)
    probs = tl.exp2(scores - m_new[:, None])
    l_i = l_i * alpha + tl.sum(probs, axis=1)
    if FP8:
        probs = probs * token_scale[None, :]
    if IEEE_FP32:
        acc = acc * alpha[:, None] + tl.dot(probs, c_kv, input_precision="ieee")
    else:
        acc = acc * alpha[:, None] + tl.dot(probs.to(c_kv.dtype), c_kv)
    return m_new, l_i, acc


@triton.jit
def _split_kernel(  # type: ignore[no-untyped-def]
    q_lat_ptr,
    q_pe_ptr,
    cache_ptr,
    scale_ptr,
    block_table_ptr,
    lengths_ptr,
    part_out_ptr,
    part_lse_ptr,
    out_ptr,
    lse_ptr,
    sm_scale_log2,
    heads,
    num_splits,
    stride_q_b,
    stride_q_h,
    stride_pe_b,
    stride_pe_h,
    stride_c_outer,
    stride_c_tok,
    stride_s_outer,
    stride_s_tok,
    stride_bt_b,
    stride_o_b,
    stride_o_h,
    D_LAT: tl.constexpr,
    D_PE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    PAGED: tl.constexpr,
    FP8: tl.constexpr,
    SINGLE_SPLIT: tl.constexpr,
    DOT_FP32: tl.constexpr,
    IEEE_FP32: tl.constexpr,
    INTERLEAVE: tl.constexpr,
    MASK_ONLY_LAST_TILE: tl.constexpr,
    WAIT_FOR_PREVIOUS: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    # Head group fastest: the programs sharing a latent tile run together and share it in L2.
    head_group = tl.program_id(0)
    split = tl.program_id(1)
    seq = tl.program_id(2)
    if WAIT_FOR_PREVIOUS:
        # Launched early (programmatic dependent launch): the previous kernel may still be
        # writing q, the cache or the lengths, so wait for it before the first load.
        gdc_wait()
    if USE_PDL:
        # Let the combine kernel's programs launch now; they wait (gdc_wait) until this grid
        # has finished and its partials are visible, so only their launch latency is hidden.
        gdc_launch_dependents()

    seq_len = tl.load(lengths_ptr + seq)
    # Whole tiles dealt out evenly: chunk sizes differ by at most one tile.
    if INTERLEAVE:  # tiles split, split + S, split + 2S, …
        start = split * BLOCK_N
        end = seq_len
        stride = num_splits * BLOCK_N
    else:  # one contiguous run of tiles
        tiles = tl.cdiv(seq_len, BLOCK_N)
        start = (split * tiles // num_splits) * BLOCK_N
        end = tl.minimum(((split + 1) * tiles // num_splits) * BLOCK_N, seq_len)
        stride = BLOCK_N

    offs_h = head_group * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < heads
    offs_d = tl.arange(0, D_LAT)
    offs_r = tl.arange(0, D_PE)
    q_lat = tl.load(
        q_lat_ptr + seq * stride_q_b + offs_h[:, None] * stride_q_h + offs_d[None, :],
        mask=mask_h[:, None],
        other=0.0,
    )
    q_pe = tl.load(
        q_pe_ptr + seq * stride_pe_b + offs_h[:, None] * stride_pe_h + offs_r[None, :],
        mask=mask_h[:, None],
        other=0.0,
    )
    if DOT_FP32:
        q_lat = q_lat.to(tl.float32)
        q_pe = q_pe.to(tl.float32)

    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, D_LAT], dtype=tl.float32)
    if MASK_ONLY_LAST_TILE:
        # Every tile that starts before `whole_end` is whole; at most one ragged tile follows.
        whole_end = (seq_len // BLOCK_N) * BLOCK_N
        for tile_start in range(start, tl.minimum(end, whole_end), stride):
            m_i, l_i, acc = _attend_tile(
                q_lat, q_pe, m_i, l_i, acc, tile_start, end, seq,
                cache_ptr, scale_ptr, block_table_ptr, sm_scale_log2,
                stride_c_outer, stride_c_tok, stride_s_outer, stride_s_tok, stride_bt_b,
                D_LAT, D_PE, BLOCK_N, PAGE_SIZE, PAGED, FP8, IEEE_FP32, MASKED=False,
            )  # fmt: skip
        owns_ragged = (whole_end >= start) & (whole_end < end) & ((whole_end - start) % stride == 0)
        if owns_ragged:
            m_i, l_i, acc = _attend_tile(
                q_lat, q_pe, m_i, l_i, acc, whole_end, end, seq,
                cache_ptr, scale_ptr, block_table_ptr, sm_scale_log2,
                stride_c_outer, stride_c_tok, stride_s_outer, stride_s_tok, stride_bt_b,
                D_LAT, D_PE, BLOCK_N, PAGE_SIZE, PAGED, FP8, IEEE_FP32, MASKED=True,
            )  # fmt: skip
    else:
        for tile_start in range(start, end, stride):
            m_i, l_i, acc = _attend_tile(
                q_lat, q_pe, m_i, l_i, acc, tile_start, end, seq,
                cache_ptr, scale_ptr, block_table_ptr, sm_scale_log2,
                stride_c_outer, stride_c_tok, stride_s_outer, stride_s_tok, stride_bt_b,
                D_LAT, D_PE, BLOCK_N, PAGE_SIZE, PAGED, FP8, IEEE_FP32, MASKED=True,
            )  # fmt: skip

    has_rows = l_i > 0.0
    out = acc / tl.where(has_rows, l_i, 1.0)[:, None]
    lse_log2 = tl.where(has_rows, m_i + tl.log2(tl.where(has_rows, l_i, 1.0)), float("-inf"))
    if SINGLE_SPLIT:
        o_ptrs = out_ptr + seq * stride_o_b + offs_h[:, None] * stride_o_h + offs_d[None, :]
        tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_h[:, None])
        lse = lse_log2 * 0.6931471805599453  # × ln 2: back to the natural log
        tl.store(lse_ptr + seq * heads + offs_h, lse, mask=mask_h)
    else:
        # Partials are (B, H, splits, D_LAT) and (B, H, splits), contiguous.
        part = (seq * heads + offs_h) * num_splits + split
        tl.store(
            part_out_ptr + part[:, None].to(tl.int64) * D_LAT + offs_d[None, :],
            out,
            mask=mask_h[:, None],
        )
        tl.store(part_lse_ptr + part, lse_log2, mask=mask_h)


@triton.jit
def _combine_kernel(  # type: ignore[no-untyped-def]
    part_out_ptr,
    part_lse_ptr,
    out_ptr,
    lse_ptr,
    heads,
    num_splits,
    stride_o_b,
    stride_o_h,
    D_LAT: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
    USE_PDL: tl.constexpr,
    counter_ptr=None,
    RESET_COUNTERS: tl.constexpr = False,
    CLAIM_BLOCK_H: tl.constexpr = 1,
):
    """Merge the chunks of one (sequence, head), BLOCK_D columns: out = Σ_s 2^(lse_s − lse)·out_s.

    One load brings every chunk's BLOCK_D columns at once (BLOCK_S × BLOCK_D ≤ 8k values), so
    each program makes a single round trip to memory. A loop over chunks made this kernel
    latency-bound: Nsight Compute timed it at 17 µs beside a 61 µs split kernel (H=16, B=1,
    128k, 126 chunks).
    """
    row = tl.program_id(0)  # seq * heads + head
    column_block = tl.program_id(1)
    seq = row // heads
    head = row % heads
    offs_s = tl.arange(0, BLOCK_S)
    mask_s = offs_s < num_splits
    offs_d = column_block * BLOCK_D + tl.arange(0, BLOCK_D)
    if USE_PDL:
        gdc_wait()  # launched early (programmatic dependent launch): wait for the partials
        # Whatever comes next (the next layer's split kernel) may launch now and wait in turn.
        gdc_launch_dependents()
    lse_all = tl.load(part_lse_ptr + row * num_splits + offs_s, mask=mask_s, other=float("-inf"))
    # Both loads in flight before any arithmetic: one memory round trip, not two.
    parts = tl.load(
        part_out_ptr + (row.to(tl.int64) * num_splits + offs_s[:, None]) * D_LAT + offs_d[None, :],
        mask=mask_s[:, None],
        other=0.0,
    )
    m_i = tl.max(lse_all, axis=0)
    m_safe = tl.where(m_i == float("-inf"), 0.0, m_i)  # every chunk empty
    weight = tl.exp2(lse_all - m_safe)
    l_i = tl.sum(weight, axis=0)
    acc = tl.sum(weight[:, None] * parts, axis=0)
    has_rows = l_i > 0.0
    out = acc / tl.where(has_rows, l_i, 1.0)
    o_ptrs = out_ptr + seq * stride_o_b + head * stride_o_h + offs_d
    tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty))
    lse = tl.where(
        has_rows, (m_i + tl.log2(tl.where(has_rows, l_i, 1.0))) * 0.6931471805599453, float("-inf")
    )
    tl.store(lse_ptr + row, lse, mask=column_block == 0)
    if RESET_COUNTERS:  # noqa: SIM102 (compile-time branch around a run-time one)
        # Every split program is done (the wait above, or stream order without PDL): zero the
        # Hopper kernel's tile claims of this (sequence, head group) for the next call.
        if (column_block == 0) & (head % CLAIM_BLOCK_H == 0):
            groups = tl.cdiv(heads, CLAIM_BLOCK_H)
            tl.store(counter_ptr + seq * groups + head // CLAIM_BLOCK_H, 0)


COMBINE_TILE = 8192
"""Partial values one combine program loads at once: 32 KB of fp32, 64 per thread."""


def combine_block_d(num_splits: int) -> int:
    """Columns per combine program: as many as fit beside every chunk in one COMBINE_TILE."""
    return max(16, min(KV_LORA_RANK, COMBINE_TILE // triton.next_power_of_2(num_splits)))


HOPPER_ENV_VAR = "ICX_MLA_HOPPER"


@functools.cache
def _hopper_module() -> ModuleType | None:
    """`mla_decode_hopper`, or None where this Triton lacks Gluon's Hopper ops."""
    try:
        from infinitecontext.kernels import mla_decode_hopper
    except (ImportError, AttributeError):
        return None
    return mla_decode_hopper


def hopper_kernel_supports(
    q_lat: Tensor,
    cache: Tensor,
    block_table: Tensor | None = None,
    cache_scale: Tensor | None = None,
) -> bool:
    """Whether the Hopper kernel can run this call (`mla_decode_hopper.supports`: Gluon
    importable, sm_90, ≤ 16 heads, dense contiguous bf16 cache; never in the interpreter)."""
    if triton_interpreting() or not q_lat.is_cuda:
        return False
    module = _hopper_module()
    return module is not None and bool(module.supports(q_lat, cache, block_table, cache_scale))


def default_split_kernel(
    arch_major: int, heads: int, batch: int, dtype: torch.dtype, paged: bool, fp8: bool
) -> Literal["hopper", "triton"]:
    """The split kernel an `auto` call runs, by what the H100 measured: the Hopper
    kernel on sm_90 for at most HOPPER_MAX_BATCH sequences of at most 16 heads over a
    dense bf16 cache (1-3% faster from 32k on, twice as fast at B = 1, 4k), the Triton
    kernel everywhere else (from B = 8 it streams 1-3% faster; the Hopper kernel has no
    paged, fp8 or many-head form)."""
    takes_hopper = (
        arch_major == 9
        and heads <= MEMORY_BOUND_BLOCK_H
        and batch <= HOPPER_MAX_BATCH
        and dtype == torch.bfloat16
        and not paged
        and not fp8
    )
    return "hopper" if takes_hopper else "triton"


def hopper_kernel_takes(
    q_lat: Tensor,
    cache: Tensor,
    block_table: Tensor | None = None,
    cache_scale: Tensor | None = None,
) -> bool:
    """Whether an `auto` call runs its split step on the Hopper kernel: where
    `default_split_kernel` picks it, `hopper_kernel_supports` the call, and ICX_MLA_HOPPER
    is not 0."""
    if os.environ.get(HOPPER_ENV_VAR, "1") == "0":
        return False
    if not hopper_kernel_supports(q_lat, cache, block_table, cache_scale):
        return False
    batch, heads, _ = q_lat.shape
    arch_major = torch.cuda.get_device_capability(q_lat.device)[0]
    paged, fp8 = block_table is not None, cache_scale is not None
    return default_split_kernel(arch_major, heads, batch, q_lat.dtype, paged, fp8) == "hopper"


def _check_inputs(
    q_lat: Tensor,
    q_pe: Tensor,
    cache: Tensor,
    lengths: Tensor,
    block_table: Tensor | None,
    cache_scale: Tensor | None,
) -> None:
    batch, heads, _ = q_lat.shape
    if q_lat.shape[-1] != KV_LORA_RANK or q_pe.shape != (batch, heads, ROPE_DIM):
        raise ValueError(
            f"want q_lat (B, H, 512) and q_pe (B, H, 64), got {q_lat.shape}, {q_pe.shape}"
        )
    if cache.dim() != 3 or cache.shape[-1] != LATENT_DIM or cache.stride(-1) != 1:
        raise ValueError(f"cache must be (·, ·, 576) with contiguous rows, got {cache.shape}")
    if lengths.shape != (batch,) or lengths.dtype != torch.int32:
        raise ValueError(
            f"lengths must be int32 of shape ({batch},), got {lengths.dtype} {lengths.shape}"
        )
    if block_table is not None and (block_table.dim() != 2 or block_table.dtype != torch.int32):
        raise ValueError("block_table must be an int32 (B, max_pages) tensor")
    if (cache.dtype == torch.float8_e4m3fn) != (cache_scale is not None):
        raise ValueError("cache_scale is required exactly when the cache is float8_e4m3fn")
    if cache_scale is not None and cache_scale.shape != cache.shape[:2]:
        raise ValueError(f"cache_scale must be {tuple(cache.shape[:2])}, got {cache_scale.shape}")
    check_last_dim_contiguous("q_lat", q_lat)
    check_last_dim_contiguous("q_pe", q_pe)


class KernelLaunch:
    """One kernel of a plan, its grid and compile options fixed.

    The first launch goes through Triton's JIT, which compiles the kernel (or finds it in its
    cache). With `ICX_MLA_DIRECT_LAUNCH=1`, later launches call the compiled kernel directly:
    the JIT's per-call argument binding, specialisation and cache look-up cost more than the
    launch itself, and the plan's key (`plan_key`) already fixes everything they would find.
    That path is opt-in until it has passed the kernel tests on a GPU (docs/kernels.md). In
    Triton's interpreter every launch goes through the JIT.
    """

    def __init__(self, kernel: Any, grid: tuple[int, int, int], options: dict[str, Any]) -> None:
        self.kernel = kernel
        self.grid = grid
        self.options = options
        self.compiled: Callable[..., None] | None = None

    def __call__(self, stream: int, args: tuple[Any, ...]) -> None:
        if self.compiled is not None:
            self.compiled(*args, stream=stream)
            return
        compiled = self.kernel[self.grid](*args, **self.options)
        # Triton 3.x's compiled kernel takes every parameter, constexprs included, in the
        # kernel's order; where this Triton's counts them otherwise, keep to the JIT.
        signature = getattr(getattr(compiled, "src", None), "signature", None)
        direct = runtime.direct_launch()
        if direct and isinstance(compiled, CompiledKernel) and len(signature or ()) == len(args):
            self.compiled = compiled[self.grid]


def current_stream(device_index: int) -> int:
    """The raw handle of the device's current CUDA stream (0 off the GPU): the one Triton's
    launcher reads, without building a `torch.cuda.Stream`."""
    return torch._C._cuda_getCurrentRawStream(device_index) if device_index >= 0 else 0


def plan_key(
    q_lat: Tensor,
    q_pe: Tensor,
    cache: Tensor,
    lengths: Tensor,
    block_table: Tensor | None,
    cache_scale: Tensor | None,
    num_splits: int | None,
    config: DecodeConfig | None,
    hopper: bool | None,
) -> tuple[Any, ...]:
    """What a call's plan depends on: the device; each tensor's shape, strides, dtype and
    16-byte alignment (Triton specialises its kernels on alignment and on the integers); the
    overrides; and the switches ICX_MLA_HOPPER, ICX_PDL, ICX_MLA_DIRECT_LAUNCH and
    TRITON_INTERPRET."""
    layouts = tuple(
        None if t is None else (t.shape, t.stride(), t.dtype, t.data_ptr() % 16 == 0)
        for t in (q_lat, q_pe, cache, lengths, block_table, cache_scale)
    )
    switches = (
        os.environ.get(HOPPER_ENV_VAR),
        os.environ.get(runtime.PDL_ENV_VAR),
        os.environ.get(runtime.DIRECT_LAUNCH_ENV_VAR),
        os.environ.get(runtime.INTERPRET_ENV_VAR),
    )
    return q_lat.get_device(), layouts, num_splits, config, hopper, switches


class DecodePlan:
    """Everything about an `mla_decode_triton` call that its `plan_key` decides, worked out
    once: the input checks, the split kernel, the tiles and split count (device capability
    and SM count looked up here only), the grids and fixed kernel arguments, the compiled
    kernels, and the fp32 partials and claim counters kept per CUDA stream. A call then
    allocates its outputs and launches.

    Partials are reused by the next call of the same plan on the same stream: stream order
    (or, with programmatic dependent launch, `griddepcontrol.wait`, which waits for the
    previous kernel to complete) keeps that call's split kernel from writing them before
    this call's combine has read them. A call captured in a CUDA graph gets partials of its
    own, as every call did before plans, so graphs never share them with eager calls.
    """

    def __init__(
        self,
        q_lat: Tensor,
        q_pe: Tensor,
        cache: Tensor,
        lengths: Tensor,
        block_table: Tensor | None,
        cache_scale: Tensor | None,
        num_splits: int | None,
        config: DecodeConfig | None,
        hopper: bool | None,
    ) -> None:
        _check_inputs(q_lat, q_pe, cache, lengths, block_table, cache_scale)
        batch, heads, _ = q_lat.shape
        if hopper is None:
            hopper = config is None and hopper_kernel_takes(q_lat, cache, block_table, cache_scale)
        elif hopper and not hopper_kernel_supports(q_lat, cache, block_table, cache_scale):
            raise ValueError(
                "the Hopper split kernel needs Triton's Gluon, an sm_90 GPU, ≤ 16 heads and a "
                "dense contiguous bf16 cache"
            )
        config = config or default_config(heads, q_lat.element_size())
        paged = block_table is not None
        if paged and cache.shape[1] % config.block_n:
            raise ValueError(f"page size {cache.shape[1]} must be a multiple of {config.block_n}")
        if num_splits is None:
            # The cache's capacity bounds every length without a device→host sync.
            capacity = cache.shape[1] * (block_table.shape[1] if block_table is not None else 1)
            sm_count = device_sm_count(q_lat.device)
            num_splits = (
                hopper_num_splits(batch, capacity, sm_count)
                if hopper
                else default_num_splits(batch, heads, capacity, sm_count, config)
            )
        self.device_index = q_lat.get_device()
        self.out_shape = (batch, heads, KV_LORA_RANK)
        self.lse_shape = (batch, heads)
        self.single = num_splits == 1
        self.hopper = hopper and not self.single  # one chunk a sequence: nothing to balance
        # fp32 partials: (B, H, splits, 512) outputs and (B, H, splits) base-2 log-sum-exps.
        # (bf16 outputs, half the bytes, measured up to 21% slower on the H100: BENCHMARKS.md.)
        self.part_shapes = ((batch, heads, num_splits, KV_LORA_RANK), (batch, heads, num_splits))
        self.partials: dict[int, tuple[Tensor, Tensor]] = {}
        self.counters: dict[int, Tensor] = {}
        pdl = supports_pdl(q_lat.device)
        use_pdl = not self.single and pdl
        claim_block_h = 1
        if self.hopper:
            module = _hopper_module()
            assert module is not None
            self.hopper_module: Any = module
            claim_block_h = int(module.BLOCK_H.value)
            self.counter_count = batch * triton.cdiv(heads, claim_block_h)
            kernel, grid, options, self.split_tail = module.split_launch(
                q_lat, q_pe, cache, num_splits, pdl
            )
            self.split = KernelLaunch(kernel, grid, options)
        else:
            self.split = self._triton_split(
                q_lat, q_pe, cache, block_table, cache_scale, num_splits, config, pdl, use_pdl
            )
        self.combine: KernelLaunch | None = None
        if not self.single:
            block_d = combine_block_d(num_splits)
            self.combine = KernelLaunch(
                _combine_kernel,
                (batch * heads, KV_LORA_RANK // block_d, 1),
                {"num_warps": 4, **({"launch_pdl": True} if use_pdl else {})},
            )
            out_strides = (heads * KV_LORA_RANK, KV_LORA_RANK)  # fresh contiguous outputs
            block_s = triton.next_power_of_2(num_splits)
            self.combine_head: tuple[Any, ...] = (heads, num_splits, *out_strides)
            self.combine_head += (KV_LORA_RANK, block_d, block_s, use_pdl)
            self.combine_tail = (self.hopper, claim_block_h)

    def _triton_split(
        self,
        q_lat: Tensor,
        q_pe: Tensor,
        cache: Tensor,
        block_table: Tensor | None,
        cache_scale: Tensor | None,
        num_splits: int,
        config: DecodeConfig,
        pdl: bool,
        use_pdl: bool,
    ) -> KernelLaunch:
        """`_split_kernel`'s launch; sets `split_tail`, its arguments after the tensors and
        the scale."""
        batch, heads, _ = q_lat.shape
        paged = block_table is not None
        launch_early = config.launch_early and pdl
        self.split_tail = (
            heads,
            num_splits,
            q_lat.stride(0),
            q_lat.stride(1),
            q_pe.stride(0),
            q_pe.stride(1),
            cache.stride(0),
            cache.stride(1),
            cache_scale.stride(0) if cache_scale is not None else 0,
            cache_scale.stride(1) if cache_scale is not None else 0,
            block_table.stride(0) if block_table is not None else 0,
            heads * KV_LORA_RANK,  # the fresh contiguous output's strides
            KV_LORA_RANK,
            KV_LORA_RANK,  # D_LAT
            ROPE_DIM,  # D_PE
            config.block_h,
            config.block_n,
            cache.shape[1] if paged else 1,  # PAGE_SIZE
            paged,
            cache_scale is not None,  # FP8
            self.single,
            triton_interpreting(),  # DOT_FP32
            q_lat.dtype == torch.float32 and not triton_interpreting(),  # IEEE_FP32
            config.interleave,
            config.mask_only_last_tile,
            launch_early,  # WAIT_FOR_PREVIOUS
            use_pdl,
        )
        options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
        if launch_early:
            options["launch_pdl"] = True
        return KernelLaunch(
            _split_kernel, (triton.cdiv(heads, config.block_h), num_splits, batch), options
        )

    def __call__(
        self,
        q_lat: Tensor,
        q_pe: Tensor,
        cache: Tensor,
        lengths: Tensor,
        softmax_scale: float,
        block_table: Tensor | None,
        cache_scale: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        stream = current_stream(self.device_index)
        out = runtime.empty(self.out_shape, q_lat)
        lse = runtime.empty(self.lse_shape, q_lat, torch.float32)
        part_out, part_lse = (out, lse) if self.single else self._partials(q_lat, stream)
        sm_scale_log2 = softmax_scale * LOG2E
        counters = None
        if self.hopper:
            counters = self._counters(q_lat, stream)
            desc = self.hopper_module.descriptor(cache)
            first = (q_lat, q_pe, desc, lengths, part_out, part_lse, counters, sm_scale_log2)
            self.split(stream, (*first, *self.split_tail))
        else:
            scale = cache_scale if cache_scale is not None else lengths  # placeholder, unread
            table = block_table if block_table is not None else lengths
            tensors = (q_lat, q_pe, cache, scale, table, lengths, part_out, part_lse, out, lse)
            self.split(stream, (*tensors, sm_scale_log2, *self.split_tail))
        if self.combine is not None:
            buffers = (part_out, part_lse, out, lse)
            self.combine(stream, (*buffers, *self.combine_head, counters, *self.combine_tail))
        return out, lse

    def _partials(self, like: Tensor, stream: int) -> tuple[Tensor, Tensor]:
        if self.device_index >= 0 and torch.cuda.is_current_stream_capturing():
            return self._new_partials(like)
        partials = self.partials.get(stream)
        if partials is None:
            partials = self.partials[stream] = self._new_partials(like)
        return partials

    def _new_partials(self, like: Tensor) -> tuple[Tensor, Tensor]:
        out_shape, lse_shape = self.part_shapes
        return (
            runtime.empty(out_shape, like, torch.float32),
            runtime.empty(lse_shape, like, torch.float32),
        )

    def _counters(self, like: Tensor, stream: int) -> Tensor:
        """The Hopper kernel's tile claims, one per (sequence, head group), zero at the start
        of every call: the combine resets the ones a call used once its split programs are
        done (`_combine_kernel`, RESET_COUNTERS), so they need no memset per call."""
        counters = self.counters.get(stream)
        if counters is None:
            counters = torch.zeros(self.counter_count, dtype=torch.int32, device=like.device)
            self.counters[stream] = counters
        return counters


class PlanCache:
    """Plans by `plan_key`, the oldest dropped beyond `capacity` (a model has a handful of
    call shapes; a sweep over many should not keep every one's partials)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self.plans: dict[tuple[Any, ...], DecodePlan] = {}

    def get(self, key: tuple[Any, ...]) -> DecodePlan | None:
        return self.plans.get(key)

    def add(self, key: tuple[Any, ...], plan: DecodePlan) -> DecodePlan:
        if len(self.plans) >= self.capacity:
            del self.plans[next(iter(self.plans))]
        self.plans[key] = plan
        return plan

    def clear(self) -> None:
        self.plans.clear()


@functools.cache
def plan_cache() -> PlanCache:
    """The process's plans (`mla_decode_triton`); tests clear it to start from fresh buffers."""
    return PlanCache()


def mla_decode_triton(
    q_lat: Tensor,
    q_pe: Tensor,
    cache: Tensor,
    lengths: Tensor,
    softmax_scale: float,
    block_table: Tensor | None = None,
    cache_scale: Tensor | None = None,
    num_splits: int | None = None,
    config: DecodeConfig | None = None,
    hopper: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Launch the split and combine kernels; same contract as `mla_decode_ref`.

    `num_splits` and `config` override the heuristics (the benchmark sweeps them); a
    `config` also keeps the call on the Triton split kernel. `hopper`: run the split step
    in `mla_decode_hopper` (None: wherever `hopper_kernel_takes` the call).

    The first call of each shape builds its `DecodePlan` (checks, kernel choice, split
    count, compiled kernels, partial buffers); later calls of that shape look it up by
    `plan_key` and only allocate the outputs and launch.
    """
    key = plan_key(
        q_lat, q_pe, cache, lengths, block_table, cache_scale, num_splits, config, hopper
    )
    cached = plan_cache()
    plan = cached.get(key)
    if plan is None:
        plan = DecodePlan(
            q_lat, q_pe, cache, lengths, block_table, cache_scale, num_splits, config, hopper
        )
        cached.add(key, plan)
    return plan(q_lat, q_pe, cache, lengths, softmax_scale, block_table, cache_scale)
