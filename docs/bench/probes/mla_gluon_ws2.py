"""Session-6 probe, second round: `mla_gluon_ws.split_ws` with its fixed costs cut, from
the timeline of round 3 (`probe_variants_ws.py timeline`: at 16 heads, B = 1, 128k a call
spent 3.5 µs from release to its first tile, 1.4 µs in the epilogue and 3.3 µs in the
combine's chain, around 48 µs of streaming).

- The PDL wait moves from the top of the kernel into each partition, in front of its first
  global read: shared memory, mbarriers and the fork are set up while the previous kernel
  finishes.
- The producer starts its first tile (tile `split`, always static) before it knows the
  sequence's length; the consumers skip a tile that lies wholly past the end. TMA zero-fills
  rows past the cache's end.
- The partial outputs are stored straight from the MMA layout (each thread's two adjacent
  floats), not through a shared-memory layout conversion.

Rows past a sequence's length inside its last tile are read and masked out of the scores,
as in `split_ws`.
"""
# ruff: noqa

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from mla_gluon import _counter, _gdc_launch_dependents, _gdc_wait
from mla_gluon_ws import _load_q, _now, box_layout


@gluon.jit
def _fill(
    desc,
    kv_bufs,
    idx_smem,
    ready_bars,
    empty_bars,
    i,
    tile,
    row_base,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
):
    """Stage i % NUM_BUF, once free: label it `tile` and start its nine boxes."""
    idx_layout: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
    buf = i % NUM_BUF
    mbarrier.wait(empty_bars.index(buf), ((i // NUM_BUF) & 1) ^ 1)
    idx_smem.index(buf).store(gl.full([1], tile, gl.int32, layout=idx_layout))
    gl.thread_barrier()
    bar = ready_bars.index(buf)
    if tile >= 0:
        mbarrier.expect(bar, 9 * BLOCK_N * 64 * 2)
        row = row_base + tile * BLOCK_N
        for c in gl.static_range(9):
            tma.async_copy_global_to_shared(desc, [row, c * 64], bar, kv_bufs.index(buf * 9 + c))
    else:
        mbarrier.arrive(bar)


@gluon.jit
def _producer2(
    desc,
    kv_bufs,
    idx_smem,
    ready_bars,
    empty_bars,
    lengths_ptr,
    counter,
    seq,
    row_base,
    split,
    num_splits,
    stamp_args,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
    DYN: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
    STAMPS: gl.constexpr,
):
    if WAIT_FOR_PREVIOUS:
        _gdc_wait()
    if STAMPS:
        stamps_ptr, cta = stamp_args
        gl.store(stamps_ptr + cta * 6 + 1, _now())
    # Tile `split` belongs to this program whatever the length: start it before the length.
    _fill(desc, kv_bufs, idx_smem, ready_bars, empty_bars, 0, split, row_base, BLOCK_N, NUM_BUF)
    seq_len = gl.load(lengths_ptr + seq)
    total_tiles = gl.cdiv(seq_len, BLOCK_N)
    if DYN > 0:
        n_static = gl.maximum(total_tiles // num_splits - DYN, 1)
    else:
        n_static = gl.maximum(gl.cdiv(gl.maximum(total_tiles - split, 0), num_splits), 1)
    static_tiles = n_static * num_splits
    if 1 < n_static:
        tile = split + num_splits
    elif DYN > 0:
        tile = static_tiles + gl.atomic_add(counter, 1, sem="relaxed")
    else:
        tile = total_tiles
    i = 1
    while tile < total_tiles:
        # The next tile (a claim, past the static ones) is asked for before this one waits.
        if DYN > 0:
            if i + 1 < n_static:
                nxt = split + (i + 1) * num_splits
            else:
                nxt = static_tiles + gl.atomic_add(counter, 1, sem="relaxed")
        else:
            nxt = split + (i + 1) * num_splits
        _fill(desc, kv_bufs, idx_smem, ready_bars, empty_bars, i, tile, row_base, BLOCK_N, NUM_BUF)
        tile = nxt
        i += 1
    _fill(desc, kv_bufs, idx_smem, ready_bars, empty_bars, i, -1, row_base, BLOCK_N, NUM_BUF)


@gluon.jit
def _consumer2(
    q_lat_smem,
    q_pe_smem,
    q_args,
    stamp_args,
    kv_bufs,
    idx_smem,
    ready_bars,
    empty_bars,
    lengths_ptr,
    sm_scale_log2,
    BLOCK_H: gl.constexpr,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
    STAMPS: gl.constexpr,
):
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_op: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    idx_layout: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    q_lat_ptr, q_pe_ptr, seq, head_group, heads, sqb, sqh, spb, sph = q_args
    if WAIT_FOR_PREVIOUS:
        _gdc_wait()
    seq_len = gl.load(lengths_ptr + seq)
    _load_q(
        q_lat_smem, q_pe_smem, q_lat_ptr, q_pe_ptr, seq, head_group, heads,
        sqb, sqh, spb, sph, BLOCK_H, 512, 64,
    )  # fmt: skip
    gl.thread_barrier()

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=gl.SliceLayout(1, mma))
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=gl.SliceLayout(1, mma))
    acc0 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc1 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc2 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc3 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc4 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc5 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc6 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc7 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))

    i = 0
    mbarrier.wait(ready_bars.index(0), 0)
    tile = gl.max(idx_smem.index(0).load(idx_layout), axis=0)
    if STAMPS:
        stamps_ptr, cta = stamp_args
        gl.store(stamps_ptr + cta * 6 + 2, _now())
    while tile >= 0:
        buf = i % NUM_BUF
        if tile * BLOCK_N < seq_len:  # the first, speculative tile may lie past the end
            s = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=mma)
            for c in gl.static_range(8):
                a = q_lat_smem.slice(c * 64, 64, dim=1).load(a_op)
                s = mma_v2(a, kv_bufs.index(buf * 9 + c).permute((1, 0)).load(b_op), s)
            s = mma_v2(
                q_pe_smem.load(a_op), kv_bufs.index(buf * 9 + 8).permute((1, 0)).load(b_op), s
            )
            valid = (tile * BLOCK_N + offs_n) < seq_len
            s = gl.where(valid[None, :], s * sm_scale_log2, float("-inf"))
            m_new = gl.maximum(m_i, gl.max(s, axis=1))
            alpha = gl.exp2(m_i - m_new)
            p = gl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + gl.sum(p, axis=1)
            p_op = gl.convert_layout(p.to(gl.bfloat16), a_op)
            a2 = alpha[:, None]
            acc0 = mma_v2(p_op, kv_bufs.index(buf * 9 + 0).load(b_op), acc0 * a2)
            acc1 = mma_v2(p_op, kv_bufs.index(buf * 9 + 1).load(b_op), acc1 * a2)
            acc2 = mma_v2(p_op, kv_bufs.index(buf * 9 + 2).load(b_op), acc2 * a2)
            acc3 = mma_v2(p_op, kv_bufs.index(buf * 9 + 3).load(b_op), acc3 * a2)
            acc4 = mma_v2(p_op, kv_bufs.index(buf * 9 + 4).load(b_op), acc4 * a2)
            acc5 = mma_v2(p_op, kv_bufs.index(buf * 9 + 5).load(b_op), acc5 * a2)
            acc6 = mma_v2(p_op, kv_bufs.index(buf * 9 + 6).load(b_op), acc6 * a2)
            acc7 = mma_v2(p_op, kv_bufs.index(buf * 9 + 7).load(b_op), acc7 * a2)
            m_i = m_new
        gl.thread_barrier()
        fence_async_shared()
        mbarrier.arrive(empty_bars.index(buf))
        i += 1
        nbuf = i % NUM_BUF
        mbarrier.wait(ready_bars.index(nbuf), (i // NUM_BUF) & 1)
        tile = gl.max(idx_smem.index(nbuf).load(idx_layout), axis=0)
    if STAMPS:
        stamps_ptr, cta = stamp_args
        gl.store(stamps_ptr + cta * 6 + 3, _now())
        gl.store(stamps_ptr + cta * 6 + 5, i)
    return m_i, l_i, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7


@gluon.jit
def split_ws2(
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
    D_LAT: gl.constexpr,
    D_PE: gl.constexpr,
    BLOCK_H: gl.constexpr,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
    USE_PDL: gl.constexpr,
    DYN: gl.constexpr,
    stamps_ptr=None,
    STAMPS: gl.constexpr = False,
):
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    smem_l: gl.constexpr = gl.SwizzledSharedLayout(vec=8, per_phase=1, max_phase=8, order=[1, 0])
    idx_smem_l: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])

    head_group = gl.program_id(0)
    split = gl.program_id(1)
    seq = gl.program_id(2)
    cta = (seq * num_splits + split) * gl.num_programs(0) + head_group
    if STAMPS:  # entry, producer released, first tile, loop done, partials stored; tiles
        gl.store(stamps_ptr + cta * 6, _now())
    if USE_PDL:
        _gdc_launch_dependents()
    counter = counter_ptr + seq * gl.cdiv(heads, BLOCK_H) + head_group
    q_lat_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_LAT], smem_l)
    q_pe_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_PE], smem_l)
    kv_bufs = gl.allocate_shared_memory(gl.bfloat16, [NUM_BUF * 9, BLOCK_N, 64], desc.layout)
    idx_smem = gl.allocate_shared_memory(gl.int32, [NUM_BUF, 1], idx_smem_l)
    ready_bars = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    empty_bars = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    for b in gl.static_range(NUM_BUF):
        mbarrier.init(ready_bars.index(b), count=1)
        mbarrier.init(empty_bars.index(b), count=1)
    row_base = seq * seq_rows
    q_args = (
        q_lat_ptr, q_pe_ptr, seq, head_group, heads, stride_q_b, stride_q_h, stride_pe_b, stride_pe_h,
    )  # fmt: skip

    m_i, l_i, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = gl.warp_specialize(
        [
            (
                _consumer2,
                (
                    q_lat_smem, q_pe_smem, q_args, (stamps_ptr, cta), kv_bufs, idx_smem,
                    ready_bars, empty_bars, lengths_ptr, sm_scale_log2, BLOCK_H, BLOCK_N,
                    NUM_BUF, WAIT_FOR_PREVIOUS, STAMPS,
                ),
            ),
            (
                _producer2,
                (
                    desc, kv_bufs, idx_smem, ready_bars, empty_bars, lengths_ptr, counter, seq,
                    row_base, split, num_splits, (stamps_ptr, cta), BLOCK_N, NUM_BUF, DYN,
                    WAIT_FOR_PREVIOUS, STAMPS,
                ),
            ),
        ],
        [1],
        [24],
    )  # fmt: skip

    # Straight from the MMA layout: each thread stores its two adjacent floats of each row.
    has_rows = l_i > 0.0
    inv = (1.0 / gl.where(has_rows, l_i, 1.0))[:, None]
    lse_log2 = gl.where(has_rows, m_i + gl.log2(gl.where(has_rows, l_i, 1.0)), float("-inf"))
    offs_h = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, mma))
    offs_d = gl.arange(0, 64, layout=gl.SliceLayout(0, mma))
    part = (seq * heads + offs_h) * num_splits + split
    o_ptrs = part_out_ptr + part[:, None].to(gl.int64) * D_LAT + offs_d[None, :]
    o_mask = (offs_h < heads)[:, None] & (offs_d < 64)[None, :]
    PART_T: gl.constexpr = part_out_ptr.dtype.element_ty
    gl.store(o_ptrs, (acc0 * inv).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 64, (acc1 * inv).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 128, (acc2 * inv).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 192, (acc3 * inv).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 256, (acc4 * inv).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 320, (acc5 * inv).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 384, (acc6 * inv).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 448, (acc7 * inv).to(PART_T), mask=o_mask)
    gl.store(part_lse_ptr + part, lse_log2, mask=offs_h < heads)
    if STAMPS:
        gl.thread_barrier()
        gl.store(stamps_ptr + cta * 6 + 4, _now())


def run(
    q_lat,
    q_pe,
    cache,
    lengths,
    scale,
    num_splits,
    *,
    num_buf=2,
    launch_early=True,
    combine=True,
    dyn=8,
    bf16_parts=False,
    stamps=None,
    maxnreg=128,
):
    from infinitecontext.kernels.mla_decode import _combine_kernel, combine_block_d
    from mla_variants4 import combine_v4

    batch, heads, _ = q_lat.shape
    out = torch.empty_like(q_lat)
    lse = torch.empty((batch, heads), device=q_lat.device, dtype=torch.float32)
    part_out = torch.empty(
        (batch, heads, num_splits, 512),
        device=q_lat.device,
        dtype=torch.bfloat16 if bf16_parts else torch.float32,
    )
    part_lse = torch.empty((batch, heads, num_splits), device=q_lat.device, dtype=torch.float32)
    desc = TensorDescriptor.from_tensor(cache.view(-1, 576), [32, 64], box_layout(32))
    counter = _counter(q_lat.device)
    split_ws2[(triton.cdiv(heads, 16), num_splits, batch)](
        q_lat, q_pe, desc, lengths, part_out, part_lse, counter, scale * 1.4426950408889634,
        heads, num_splits, cache.shape[1], q_lat.stride(0), q_lat.stride(1), q_pe.stride(0),
        q_pe.stride(1), D_LAT=512, D_PE=64, BLOCK_H=16, BLOCK_N=32, NUM_BUF=num_buf,
        WAIT_FOR_PREVIOUS=launch_early, USE_PDL=combine, DYN=dyn,
        stamps_ptr=stamps[0] if stamps is not None else None, STAMPS=stamps is not None,
        num_warps=4, maxnreg=maxnreg, **({"launch_pdl": True} if launch_early else {}),
    )  # fmt: skip
    if combine:
        block_s = triton.next_power_of_2(num_splits)
        block_d = combine_block_d(num_splits)
        grid = (batch * heads, 512 // block_d)
        combine_v4[grid](
            part_out, part_lse, out, lse, heads, num_splits, out.stride(0), out.stride(1),
            D_LAT=512, BLOCK_D=block_d, BLOCK_S=block_s, TRIGGER=True, HOIST=True,
            GDC=True, counter_ptr=counter, DYN=1 if dyn else 0, BLOCK_H=16,
            stamps_ptr=stamps[1] if stamps is not None else None,
            STAMPS=stamps is not None, num_warps=4, launch_pdl=True,
        )  # fmt: skip
    elif dyn:
        counter.zero_()
    return out, lse
