"""The 16-head MLA split kernel for Hopper, warp-specialised in Gluon (explicit-layout Triton).

Same math, partials and combine as `mla_decode._split_kernel` (see that module), for the
memory-bound case: at most 16 heads, a dense bf16 cache, several chunks a sequence, an
H100-class GPU (sm_90). FlashMLA's division of labour within each program:

- one **producer warp** keeps NUM_STAGES shared-memory stages full with TMA (nine 32 × 64
  boxes a 32-row tile: eight of c_KV, one of k_pe) and labels each stage with its tile;
- four **consumer warps** wait on a stage's mbarrier, compute its tile (scores, online
  softmax, values, as the Triton kernel does) and hand the stage back.

Because the producer decides which tile comes next, the last DYNAMIC_TILES tiles of each
program are claimed at run time from a counter per (sequence, head group): programs that
stream faster take more, so they all finish together (the static chunks of the Triton
kernel finished over a 2-5 µs spread at 128k). The claim is made while the previous tile
is in flight, so no consumer waits on it. The combine resets the counters.

Fixed costs, which a per-program `%globaltimer` timeline on the H100 located: the PDL
wait sits in each partition in front of its first global read, so shared memory, barriers
and the fork are set up while the previous kernel drains; the producer starts tile `split`
(always this program's) before it has the length; partials are stored straight from the
MMA registers. At H = 16, B = 1, 128k this kernel and the combine take 55.6-55.7 µs against
57.2-57.4 µs for the Triton kernel on the same GPU.

Rows past a sequence's length inside its last tile are zeroed in shared memory before use
(a cache may hold anything there); TMA zero-fills rows past the cache's end.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import triton
from torch import Tensor
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from infinitecontext.kernels.mla_decode_ref import KV_LORA_RANK, LATENT_DIM, ROPE_DIM

BLOCK_H = gl.constexpr(16)
"""Heads per program (one m16 MMA tile); more heads go to the Triton kernel."""
BLOCK_N = gl.constexpr(32)
"""Cache rows per tile: nine 32 × 64 TMA boxes, 36 KB."""
NUM_STAGES = 3
"""Shared-memory stages. Two leave room for the next call's program on the same SM (early
launch) but were 9% slower at B = 8, 32k; three were level or faster everywhere measured."""
DYNAMIC_TILES = 8
"""Tiles a program leaves to be claimed at run time (4, 8 and 16 measured within 0.3% of
each other at 128k; 8 was best at 1M)."""
MAX_REGISTERS = 128
"""Per thread at launch: the consumers then take 232 and the producer 24, and the CTA's
32k registers leave room on the SM for the combine's programs launched early (with the
default 256 the combine could not start until the split kernel left the SM: +2 µs)."""
BOX_BYTES = gl.constexpr(BLOCK_N.value * 64 * 2)
D_LAT = gl.constexpr(KV_LORA_RANK)
D_PE = gl.constexpr(ROPE_DIM)

# Gluon renamed its block barrier after Triton 3.6 (`thread_barrier` → `barrier`).
_block_barrier = getattr(gl, "thread_barrier", None) or gl.barrier


@gluon.jit
def _gdc_wait():  # type: ignore[no-untyped-def]
    """Programmatic dependent launch: wait until the previous kernel's writes are visible."""
    gl.inline_asm_elementwise(
        "griddepcontrol.wait; // $0", "=r", [], dtype=gl.int32, is_pure=False, pack=1
    )


@gluon.jit
def _gdc_launch_dependents():  # type: ignore[no-untyped-def]
    """Let the next kernel (the combine) launch its programs now; they wait in `_gdc_wait`."""
    gl.inline_asm_elementwise(
        "griddepcontrol.launch_dependents; // $0", "=r", [], dtype=gl.int32, is_pure=False, pack=1
    )


@gluon.jit
def _fill_stage(  # type: ignore[no-untyped-def]
    desc, kv_bufs, tile_of, ready, empty, i, tile, row_base, NUM_STAGES: gl.constexpr
):
    """Producer: the i-th stage use. Once the consumers have freed it, label it with `tile`
    and start its nine boxes (the stage's `ready` barrier completes when they land); the
    label −1 (no copy) ends the consumers' loop."""
    lane_layout: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
    stage = i % NUM_STAGES
    mbarrier.wait(empty.index(stage), ((i // NUM_STAGES) & 1) ^ 1)
    tile_of.index(stage).store(gl.full([1], tile, gl.int32, layout=lane_layout))
    _block_barrier()  # the label is written before the barrier arrive that publishes it
    bar = ready.index(stage)
    if tile >= 0:
        mbarrier.expect(bar, 9 * BOX_BYTES)
        row = row_base + tile * BLOCK_N
        for box in gl.static_range(9):
            dst = kv_bufs.index(stage * 9 + box)
            tma.async_copy_global_to_shared(desc, [row, box * 64], bar, dst)
    else:
        mbarrier.arrive(bar)


@gluon.jit
def _next_tile(i, split, num_splits, n_static, claims_from, counter):  # type: ignore[no-untyped-def]
    """The program's i-th tile: every num_splits-th while i < n_static (the chunks interleave,
    so the programs sweep the cache side by side), then one claimed from the counter."""
    if i < n_static:
        tile = split + i * num_splits
    else:
        tile = claims_from + gl.atomic_add(counter, 1, sem="relaxed")
    return tile


@gluon.jit
def _producer(  # type: ignore[no-untyped-def]
    desc,
    kv_bufs,
    tile_of,
    ready,
    empty,
    lengths_ptr,
    counter,
    seq,
    row_base,
    split,
    num_splits,
    NUM_STAGES: gl.constexpr,
    DYNAMIC_TILES: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
):
    """One warp: which tile goes into which stage, and its copy."""
    if WAIT_FOR_PREVIOUS:
        _gdc_wait()
    # Tile `split` is this program's whatever the length: start it before the length arrives.
    _fill_stage(desc, kv_bufs, tile_of, ready, empty, 0, split, row_base, NUM_STAGES)
    seq_len = gl.load(lengths_ptr + seq)
    total_tiles = gl.cdiv(seq_len, BLOCK_N)
    n_static = gl.maximum(total_tiles // num_splits - DYNAMIC_TILES, 1)
    claims_from = n_static * num_splits
    tile = _next_tile(1, split, num_splits, n_static, claims_from, counter)
    i = 1
    while tile < total_tiles:
        # Ask for the next tile (maybe a claim) before waiting for a free stage for this one.
        nxt = _next_tile(i + 1, split, num_splits, n_static, claims_from, counter)
        _fill_stage(desc, kv_bufs, tile_of, ready, empty, i, tile, row_base, NUM_STAGES)
        tile = nxt
        i += 1
    _fill_stage(desc, kv_bufs, tile_of, ready, empty, i, -1, row_base, NUM_STAGES)


@gluon.jit
def _load_q(  # type: ignore[no-untyped-def]
    q_lat_smem, q_pe_smem, q_lat_ptr, q_pe_ptr, seq, head_group, heads, q_strides
):
    """The program's BLOCK_H query rows, latent and rope parts, into shared memory."""
    stride_q_b, stride_q_h, stride_pe_b, stride_pe_h = q_strides
    lat_layout: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [2, 2], [1, 0])
    pe_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    offs_h = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, lat_layout))
    offs_d = gl.arange(0, D_LAT, layout=gl.SliceLayout(0, lat_layout))
    q_lat = gl.load(
        q_lat_ptr + seq * stride_q_b + offs_h[:, None] * stride_q_h + offs_d[None, :],
        mask=(offs_h < heads)[:, None] & (offs_d < D_LAT)[None, :],
        other=0.0,
    )
    offs_h = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, pe_layout))
    offs_r = gl.arange(0, D_PE, layout=gl.SliceLayout(0, pe_layout))
    q_pe = gl.load(
        q_pe_ptr + seq * stride_pe_b + offs_h[:, None] * stride_pe_h + offs_r[None, :],
        mask=(offs_h < heads)[:, None] & (offs_r < D_PE)[None, :],
        other=0.0,
    )
    q_lat_smem.store(q_lat)
    q_pe_smem.store(q_pe)


@gluon.jit
def _zero_rows_from(kv_bufs, stage, valid):  # type: ignore[no-untyped-def]
    """Zero rows `valid`… of a stage's nine boxes (the ragged last tile: past the length a
    cache may hold anything, and 0 · NaN in the value dot would spoil the row sums)."""
    box_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    rows = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, box_layout))
    for box in gl.static_range(9):
        view = kv_bufs.index(stage * 9 + box)
        view.store(gl.where((rows < valid)[:, None], view.load(box_layout), 0.0))
    _block_barrier()


@gluon.jit
def _consumer(  # type: ignore[no-untyped-def]
    q_lat_smem,
    q_pe_smem,
    q_args,
    kv_bufs,
    tile_of,
    ready,
    empty,
    lengths_ptr,
    sm_scale_log2,
    NUM_STAGES: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
):
    """Four warps: the tiles in the order the producer labels them, until the label −1.
    Returns the running max, sum and the accumulator's eight 64-column pieces."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_op: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    label_layout: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    q_lat_ptr, q_pe_ptr, seq, head_group, heads, q_strides = q_args
    if WAIT_FOR_PREVIOUS:
        _gdc_wait()
    seq_len = gl.load(lengths_ptr + seq)
    _load_q(q_lat_smem, q_pe_smem, q_lat_ptr, q_pe_ptr, seq, head_group, heads, q_strides)
    _block_barrier()

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=gl.SliceLayout(1, mma))
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=gl.SliceLayout(1, mma))
    acc0 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)  # (BLOCK_H, 64) each
    acc1 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc2 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc3 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc4 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc5 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc6 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc7 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))

    i = 0
    mbarrier.wait(ready.index(0), 0)
    tile = gl.max(tile_of.index(0).load(label_layout), axis=0)
    while tile >= 0:
        stage = i % NUM_STAGES
        tile_start = tile * BLOCK_N
        if tile_start < seq_len:  # the first, unconditional tile may lie past the end
            if tile_start + BLOCK_N > seq_len:
                _zero_rows_from(kv_bufs, stage, seq_len - tile_start)
            # Scores (BLOCK_H, BLOCK_N): q·c_KVᵀ over eight 64-wide slices, then q_pe·k_peᵀ.
            s = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=mma)
            for box in gl.static_range(8):
                a = q_lat_smem.slice(box * 64, 64, dim=1).load(a_op)
                s = mma_v2(a, kv_bufs.index(stage * 9 + box).permute((1, 0)).load(b_op), s)
            s = mma_v2(
                q_pe_smem.load(a_op), kv_bufs.index(stage * 9 + 8).permute((1, 0)).load(b_op), s
            )
            valid = (tile_start + offs_n) < seq_len
            s = gl.where(valid[None, :], s * sm_scale_log2, float("-inf"))
            m_new = gl.maximum(m_i, gl.max(s, axis=1))
            alpha = gl.exp2(m_i - m_new)
            p = gl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + gl.sum(p, axis=1)
            p_op = gl.convert_layout(p.to(gl.bfloat16), a_op)
            a2 = alpha[:, None]
            acc0 = mma_v2(p_op, kv_bufs.index(stage * 9 + 0).load(b_op), acc0 * a2)
            acc1 = mma_v2(p_op, kv_bufs.index(stage * 9 + 1).load(b_op), acc1 * a2)
            acc2 = mma_v2(p_op, kv_bufs.index(stage * 9 + 2).load(b_op), acc2 * a2)
            acc3 = mma_v2(p_op, kv_bufs.index(stage * 9 + 3).load(b_op), acc3 * a2)
            acc4 = mma_v2(p_op, kv_bufs.index(stage * 9 + 4).load(b_op), acc4 * a2)
            acc5 = mma_v2(p_op, kv_bufs.index(stage * 9 + 5).load(b_op), acc5 * a2)
            acc6 = mma_v2(p_op, kv_bufs.index(stage * 9 + 6).load(b_op), acc6 * a2)
            acc7 = mma_v2(p_op, kv_bufs.index(stage * 9 + 7).load(b_op), acc7 * a2)
            m_i = m_new
        # Every consumer warp is done with the stage before the producer's TMA refills it.
        _block_barrier()
        fence_async_shared()
        mbarrier.arrive(empty.index(stage))
        i += 1
        next_stage = i % NUM_STAGES
        mbarrier.wait(ready.index(next_stage), (i // NUM_STAGES) & 1)
        tile = gl.max(tile_of.index(next_stage).load(label_layout), axis=0)
    return m_i, l_i, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7


@gluon.jit
def _ws_split_kernel(  # type: ignore[no-untyped-def]
    q_lat_ptr,
    q_pe_ptr,
    desc,
    lengths_ptr,
    part_out_ptr,
    part_lse_ptr,
    counter_ptr,
    sm_scale_log2,
    heads,
    num_splits,
    seq_rows,
    stride_q_b,
    stride_q_h,
    stride_pe_b,
    stride_pe_h,
    NUM_STAGES: gl.constexpr,
    DYNAMIC_TILES: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
):
    """Grid (head groups, num_splits, B). `desc`: TMA over the cache as (B · seq_rows, 576)."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    q_smem_layout: gl.constexpr = gl.SwizzledSharedLayout(
        vec=8, per_phase=1, max_phase=8, order=[1, 0]
    )
    label_smem_layout: gl.constexpr = gl.SwizzledSharedLayout(
        vec=1, per_phase=1, max_phase=1, order=[0]
    )
    head_group = gl.program_id(0)
    split = gl.program_id(1)
    seq = gl.program_id(2)
    _gdc_launch_dependents()  # the combine's programs may take their places now

    q_lat_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_LAT], q_smem_layout)
    q_pe_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_PE], q_smem_layout)
    kv_bufs = gl.allocate_shared_memory(gl.bfloat16, [NUM_STAGES * 9, BLOCK_N, 64], desc.layout)
    tile_of = gl.allocate_shared_memory(gl.int32, [NUM_STAGES, 1], label_smem_layout)
    ready = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NUM_STAGES, 1], mbarrier.MBarrierLayout())
    for stage in gl.static_range(NUM_STAGES):
        mbarrier.init(ready.index(stage), count=1)
        mbarrier.init(empty.index(stage), count=1)
    counter = counter_ptr + seq * gl.cdiv(heads, BLOCK_H) + head_group
    q_strides = (stride_q_b, stride_q_h, stride_pe_b, stride_pe_h)
    q_args = (q_lat_ptr, q_pe_ptr, seq, head_group, heads, q_strides)

    m_i, l_i, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = gl.warp_specialize(
        [
            (
                _consumer,
                (
                    q_lat_smem, q_pe_smem, q_args, kv_bufs, tile_of, ready, empty, lengths_ptr,
                    sm_scale_log2, NUM_STAGES, WAIT_FOR_PREVIOUS,
                ),
            ),
            (
                _producer,
                (
                    desc, kv_bufs, tile_of, ready, empty, lengths_ptr, counter, seq,
                    seq * seq_rows, split, num_splits, NUM_STAGES, DYNAMIC_TILES,
                    WAIT_FOR_PREVIOUS,
                ),
            ),
        ],
        [1],
        [24],
    )  # fmt: skip

    # Normalised partial output and base-2 log-sum-exp, (B, H, splits, 512) and (B, H, splits),
    # stored straight from the MMA registers: each thread writes two adjacent floats a row.
    has_rows = l_i > 0.0
    inv_l = (1.0 / gl.where(has_rows, l_i, 1.0))[:, None]
    lse_log2 = gl.where(has_rows, m_i + gl.log2(gl.where(has_rows, l_i, 1.0)), float("-inf"))
    offs_h = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, mma))
    offs_d = gl.arange(0, 64, layout=gl.SliceLayout(0, mma))
    part = (seq * heads + offs_h) * num_splits + split
    o_ptrs = part_out_ptr + part[:, None].to(gl.int64) * D_LAT + offs_d[None, :]
    o_mask = (offs_h < heads)[:, None] & (offs_d < 64)[None, :]
    gl.store(o_ptrs, acc0 * inv_l, mask=o_mask)
    gl.store(o_ptrs + 64, acc1 * inv_l, mask=o_mask)
    gl.store(o_ptrs + 128, acc2 * inv_l, mask=o_mask)
    gl.store(o_ptrs + 192, acc3 * inv_l, mask=o_mask)
    gl.store(o_ptrs + 256, acc4 * inv_l, mask=o_mask)
    gl.store(o_ptrs + 320, acc5 * inv_l, mask=o_mask)
    gl.store(o_ptrs + 384, acc6 * inv_l, mask=o_mask)
    gl.store(o_ptrs + 448, acc7 * inv_l, mask=o_mask)
    gl.store(part_lse_ptr + part, lse_log2, mask=offs_h < heads)


def supports(
    q_lat: Tensor, cache: Tensor, block_table: Tensor | None, cache_scale: Tensor | None
) -> bool:
    """Whether this kernel takes the call: ≤ 16 heads, dense contiguous bf16 cache, sm_90."""
    return (
        q_lat.is_cuda
        and q_lat.shape[1] <= BLOCK_H.value
        and q_lat.dtype == cache.dtype == torch.bfloat16
        and block_table is None
        and cache_scale is None
        and cache.is_contiguous()
        and cache.data_ptr() % 16 == 0
        and cache.shape[0] * cache.shape[1] < 2**31
        and _is_sm90(q_lat.device.index or 0)
    )


@functools.cache
def _is_sm90(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] == 9


@functools.cache
def _box_layout() -> Any:
    return gl.NVMMASharedLayout.get_default_for([BLOCK_N.value, 64], gl.bfloat16)


def descriptor(cache: Tensor) -> TensorDescriptor:
    """TMA over the cache as (B · S_max, 576) rows, in 32 × 64 boxes."""
    return TensorDescriptor.from_tensor(
        cache.view(-1, LATENT_DIM), [BLOCK_N.value, 64], _box_layout()
    )


def split_launch(
    q_lat: Tensor, q_pe: Tensor, cache: Tensor, num_splits: int, launch_early: bool
) -> tuple[Any, tuple[int, int, int], dict[str, Any], tuple[Any, ...]]:
    """`_ws_split_kernel`'s launch for calls shaped like these: the kernel, its grid, its
    compile options and its arguments after the first eight (q_lat, q_pe, the cache's
    `descriptor`, lengths, partial outputs, partial log-sum-exps, claim counters, the
    base-2 softmax scale), which the caller passes per call.

    The split step fills the partials for every (sequence, chunk); the combine must follow
    (it resets the claim counters it was given).
    """
    batch, heads, _ = q_lat.shape
    grid = (triton.cdiv(heads, BLOCK_H.value), num_splits, batch)
    options: dict[str, Any] = {"num_warps": 4, "maxnreg": MAX_REGISTERS}
    if launch_early:
        options["launch_pdl"] = True
    tail = (
        heads,
        num_splits,
        cache.shape[1],
        q_lat.stride(0),
        q_lat.stride(1),
        q_pe.stride(0),
        q_pe.stride(1),
        NUM_STAGES,
        DYNAMIC_TILES,
        launch_early,
    )
    return _ws_split_kernel, grid, options, tail
