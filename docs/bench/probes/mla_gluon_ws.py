"""Session-6 probe: the 16-head split kernel warp-specialised in Gluon (dense bf16 cache).

FlashMLA's division of labour on top of session 5's Gluon kernel (`mla_gluon.split_gluon_k`):
one producer warp fills NUM_BUF shared-memory stages with TMA (nine 32 × 64 boxes a tile:
eight of c_KV, one of k_pe) and decides which tile goes into each stage; the four consumer
warps wait on the stage's mbarrier, compute the tile exactly as `split_gluon_k` does (q in
shared memory, scores in 64-wide slices, here eight 64-column accumulator pieces, one per
box) and hand the stage back. The tile index travels with the stage (a shared int32), so
the producer may take tiles from a per-(sequence, head group) counter (DYN > 0: the last
DYN tiles of each program, or every tile with DYN ≥ tiles per program) without the
consumers ever waiting on an atomic: the producer claims its next tile while the current
one is in flight. A stage holding index −1 ends the consumers' loop.

Rows past a sequence's length inside its last tile are read (the cache's own rows) and
masked out of the scores; the probe's caches are finite there.
"""
# ruff: noqa

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import mma_v2
from triton.experimental.gluon.language.nvidia.hopper import fence_async_shared, mbarrier, tma
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from mla_gluon import _gdc_launch_dependents, _gdc_wait, _counter


@gluon.jit
def _now():
    return gl.inline_asm_elementwise(
        "mov.u64 $0, %globaltimer;", "=l", [], dtype=gl.int64, is_pure=False, pack=1
    )


@gluon.jit
def _tile_after(i, n_static, split, num_splits, static_tiles, counter, DYN: gl.constexpr):
    """The program's i-th tile: interleaved while i < n_static, then claimed (DYN > 0)."""
    if DYN > 0:
        if i < n_static:
            tile = split + i * num_splits
        else:
            tile = static_tiles + gl.atomic_add(counter, 1, sem="relaxed")
    else:
        tile = split + i * num_splits
    return tile


@gluon.jit
def _producer(
    desc,
    kv_bufs,
    idx_smem,
    ready_bars,
    empty_bars,
    counter,
    row_base,
    total_tiles,
    n_static,
    static_tiles,
    split,
    num_splits,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
    DYN: gl.constexpr,
):
    """One warp: wait for a free stage, label it with its tile, start its nine TMA boxes."""
    idx_layout: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
    tile = _tile_after(0, n_static, split, num_splits, static_tiles, counter, DYN)
    i = 0
    while tile < total_tiles:
        # Claim the next tile now: its round trip overlaps the wait for a free stage.
        nxt = _tile_after(i + 1, n_static, split, num_splits, static_tiles, counter, DYN)
        buf = i % NUM_BUF
        mbarrier.wait(empty_bars.index(buf), ((i // NUM_BUF) & 1) ^ 1)
        idx_smem.index(buf).store(gl.full([1], tile, gl.int32, layout=idx_layout))
        gl.thread_barrier()
        bar = ready_bars.index(buf)
        mbarrier.expect(bar, 9 * BLOCK_N * 64 * 2)
        row = row_base + tile * BLOCK_N
        for c in gl.static_range(9):
            tma.async_copy_global_to_shared(desc, [row, c * 64], bar, kv_bufs.index(buf * 9 + c))
        tile = nxt
        i += 1
    buf = i % NUM_BUF
    mbarrier.wait(empty_bars.index(buf), ((i // NUM_BUF) & 1) ^ 1)
    idx_smem.index(buf).store(gl.full([1], -1, gl.int32, layout=idx_layout))
    gl.thread_barrier()
    mbarrier.arrive(ready_bars.index(buf))


@gluon.jit
def _load_q(
    q_lat_smem,
    q_pe_smem,
    q_lat_ptr,
    q_pe_ptr,
    seq,
    head_group,
    heads,
    stride_q_b,
    stride_q_h,
    stride_pe_b,
    stride_pe_h,
    BLOCK_H: gl.constexpr,
    D_LAT: gl.constexpr,
    D_PE: gl.constexpr,
):
    """The program's BLOCK_H query rows (latent and rope parts) into shared memory."""
    kv_blk: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [2, 2], [1, 0])
    pe_blk: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    offs_h = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, kv_blk))
    offs_d = gl.arange(0, D_LAT, layout=gl.SliceLayout(0, kv_blk))
    q_lat = gl.load(
        q_lat_ptr + seq * stride_q_b + offs_h[:, None] * stride_q_h + offs_d[None, :],
        mask=(offs_h < heads)[:, None] & (offs_d < D_LAT)[None, :],
        other=0.0,
    )
    offs_h_pe = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, pe_blk))
    offs_r = gl.arange(0, D_PE, layout=gl.SliceLayout(0, pe_blk))
    q_pe = gl.load(
        q_pe_ptr + seq * stride_pe_b + offs_h_pe[:, None] * stride_pe_h + offs_r[None, :],
        mask=(offs_h_pe < heads)[:, None] & (offs_r < D_PE)[None, :],
        other=0.0,
    )
    q_lat_smem.store(q_lat)
    q_pe_smem.store(q_pe)


@gluon.jit
def _consumer(
    q_lat_smem,
    q_pe_smem,
    q_args,
    stamp_args,
    kv_bufs,
    idx_smem,
    ready_bars,
    empty_bars,
    seq_len,
    sm_scale_log2,
    BLOCK_H: gl.constexpr,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
    REP: gl.constexpr,
    Q_IN_CONSUMER: gl.constexpr,
    STAMPS: gl.constexpr,
):
    """Four warps: the tiles in the order the producer labels them, until the label −1.

    REP: every warp computes the whole 16 × 32 score tile (4× the score MMAs, each warp
    reading the whole tile from shared memory), so the softmax's row max and sum stay
    inside a warp and the probabilities are already where the value dot needs them: no
    shared-memory round trips or block barriers inside the tile. Otherwise the score tile's
    columns are spread over the warps as in the shipped kernel."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_op: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    if REP:  # a 16-row tile is smaller than 4 warps' M: each warp holds all of it
        mma_s: gl.constexpr = gl.NVMMADistributedLayout(
            version=[2, 0], warps_per_cta=[4, 1], instr_shape=[16, 8]
        )
    else:
        mma_s: gl.constexpr = mma
    a_s: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma_s, k_width=2)
    b_s: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma_s, k_width=2)
    idx_layout: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=gl.SliceLayout(1, mma_s))
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=gl.SliceLayout(1, mma_s))
    acc0 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc1 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc2 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc3 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc4 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc5 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc6 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    acc7 = gl.zeros([BLOCK_H, 64], gl.float32, layout=mma)
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma_s))

    if Q_IN_CONSUMER:  # here, not before the fork: the producer's first tiles need not wait for q
        q_lat_ptr, q_pe_ptr, seq, head_group, heads, sqb, sqh, spb, sph = q_args
        _load_q(
            q_lat_smem, q_pe_smem, q_lat_ptr, q_pe_ptr, seq, head_group, heads,
            sqb, sqh, spb, sph, BLOCK_H, 512, 64,
        )  # fmt: skip
        gl.thread_barrier()
    i = 0
    mbarrier.wait(ready_bars.index(0), 0)
    tile = gl.max(idx_smem.index(0).load(idx_layout), axis=0)
    if STAMPS:
        stamps_ptr, cta = stamp_args
        gl.store(stamps_ptr + cta * 6 + 2, _now())
    while tile >= 0:
        buf = i % NUM_BUF
        s = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=mma_s)
        for c in gl.static_range(8):
            a = q_lat_smem.slice(c * 64, 64, dim=1).load(a_s)
            s = mma_v2(a, kv_bufs.index(buf * 9 + c).permute((1, 0)).load(b_s), s)
        s = mma_v2(q_pe_smem.load(a_s), kv_bufs.index(buf * 9 + 8).permute((1, 0)).load(b_s), s)
        valid = (tile * BLOCK_N + offs_n) < seq_len
        s = gl.where(valid[None, :], s * sm_scale_log2, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(s, axis=1))
        alpha = gl.exp2(m_i - m_new)
        p = gl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + gl.sum(p, axis=1)
        p_op = gl.convert_layout(p.to(gl.bfloat16), a_op)
        a2 = gl.convert_layout(alpha, gl.SliceLayout(1, mma))[:, None]
        acc0 = mma_v2(p_op, kv_bufs.index(buf * 9 + 0).load(b_op), acc0 * a2)
        acc1 = mma_v2(p_op, kv_bufs.index(buf * 9 + 1).load(b_op), acc1 * a2)
        acc2 = mma_v2(p_op, kv_bufs.index(buf * 9 + 2).load(b_op), acc2 * a2)
        acc3 = mma_v2(p_op, kv_bufs.index(buf * 9 + 3).load(b_op), acc3 * a2)
        acc4 = mma_v2(p_op, kv_bufs.index(buf * 9 + 4).load(b_op), acc4 * a2)
        acc5 = mma_v2(p_op, kv_bufs.index(buf * 9 + 5).load(b_op), acc5 * a2)
        acc6 = mma_v2(p_op, kv_bufs.index(buf * 9 + 6).load(b_op), acc6 * a2)
        acc7 = mma_v2(p_op, kv_bufs.index(buf * 9 + 7).load(b_op), acc7 * a2)
        m_i = m_new
        # Every consumer warp is done with the stage before the producer's TMA overwrites it.
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
    m_i = gl.convert_layout(m_i, gl.SliceLayout(1, mma))
    l_i = gl.convert_layout(l_i, gl.SliceLayout(1, mma))
    return m_i, l_i, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7


@gluon.jit
def split_ws(
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
    REP: gl.constexpr = False,
    Q_IN_CONSUMER: gl.constexpr = False,
    stamps_ptr=None,
    STAMPS: gl.constexpr = False,
):
    """`seq_rows`: rows of the cache per sequence (its capacity); the descriptor is over
    the cache as (B · capacity, 576) rows."""
    kv_blk: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [2, 2], [1, 0])
    pe_blk: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    out_blk: gl.constexpr = gl.BlockedLayout([1, 4], [2, 16], [1, 4], [1, 0])
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    smem_l: gl.constexpr = gl.SwizzledSharedLayout(vec=8, per_phase=1, max_phase=8, order=[1, 0])
    idx_smem_l: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])

    head_group = gl.program_id(0)
    split = gl.program_id(1)
    seq = gl.program_id(2)
    cta = (seq * num_splits + split) * gl.num_programs(0) + head_group
    if STAMPS:  # entry, released, first tile, loop done, partials stored; tiles (int)
        gl.store(stamps_ptr + cta * 6, _now())
    if WAIT_FOR_PREVIOUS:
        _gdc_wait()
    if STAMPS:
        gl.store(stamps_ptr + cta * 6 + 1, _now())
    if USE_PDL:
        _gdc_launch_dependents()
    seq_len = gl.load(lengths_ptr + seq)
    total_tiles = gl.cdiv(seq_len, BLOCK_N)
    if DYN > 0:
        n_static = gl.maximum(total_tiles // num_splits - DYN, 0)
    else:
        n_static = gl.cdiv(gl.maximum(total_tiles - split, 0), num_splits)
    static_tiles = n_static * num_splits
    counter = counter_ptr + seq * gl.cdiv(heads, BLOCK_H) + head_group

    q_lat_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_LAT], smem_l)
    q_pe_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_PE], smem_l)
    q_args = (
        q_lat_ptr,
        q_pe_ptr,
        seq,
        head_group,
        heads,
        stride_q_b,
        stride_q_h,
        stride_pe_b,
        stride_pe_h,
    )
    if not Q_IN_CONSUMER:
        _load_q(
            q_lat_smem, q_pe_smem, q_lat_ptr, q_pe_ptr, seq, head_group, heads,
            stride_q_b, stride_q_h, stride_pe_b, stride_pe_h, BLOCK_H, D_LAT, D_PE,
        )  # fmt: skip
    kv_bufs = gl.allocate_shared_memory(gl.bfloat16, [NUM_BUF * 9, BLOCK_N, 64], desc.layout)
    idx_smem = gl.allocate_shared_memory(gl.int32, [NUM_BUF, 1], idx_smem_l)
    ready_bars = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    empty_bars = gl.allocate_shared_memory(gl.int64, [NUM_BUF, 1], mbarrier.MBarrierLayout())
    for b in gl.static_range(NUM_BUF):
        mbarrier.init(ready_bars.index(b), count=1)
        mbarrier.init(empty_bars.index(b), count=1)
    row_base = seq * seq_rows

    m_i, l_i, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7 = gl.warp_specialize(
        [
            (
                _consumer,
                (
                    q_lat_smem,
                    q_pe_smem,
                    q_args,
                    (stamps_ptr, cta),
                    kv_bufs,
                    idx_smem,
                    ready_bars,
                    empty_bars,
                    seq_len,
                    sm_scale_log2,
                    BLOCK_H,
                    BLOCK_N,
                    NUM_BUF,
                    REP,
                    Q_IN_CONSUMER,
                    STAMPS,
                ),
            ),
            (
                _producer,
                (
                    desc,
                    kv_bufs,
                    idx_smem,
                    ready_bars,
                    empty_bars,
                    counter,
                    row_base,
                    total_tiles,
                    n_static,
                    static_tiles,
                    split,
                    num_splits,
                    BLOCK_N,
                    NUM_BUF,
                    DYN,
                ),
            ),
        ],
        [1],
        [24],
    )

    has_rows = l_i > 0.0
    inv = (1.0 / gl.where(has_rows, l_i, 1.0))[:, None]
    lse_log2 = gl.where(has_rows, m_i + gl.log2(gl.where(has_rows, l_i, 1.0)), float("-inf"))
    offs_h_o = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, out_blk))
    offs_d_o = gl.arange(0, 64, layout=gl.SliceLayout(0, out_blk))
    part = (seq * heads + offs_h_o) * num_splits + split
    o_ptrs = part_out_ptr + part[:, None].to(gl.int64) * D_LAT + offs_d_o[None, :]
    o_mask = (offs_h_o < heads)[:, None] & (offs_d_o < 64)[None, :]
    PART_T: gl.constexpr = part_out_ptr.dtype.element_ty
    gl.store(o_ptrs, gl.convert_layout(acc0 * inv, out_blk).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 64, gl.convert_layout(acc1 * inv, out_blk).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 128, gl.convert_layout(acc2 * inv, out_blk).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 192, gl.convert_layout(acc3 * inv, out_blk).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 256, gl.convert_layout(acc4 * inv, out_blk).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 320, gl.convert_layout(acc5 * inv, out_blk).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 384, gl.convert_layout(acc6 * inv, out_blk).to(PART_T), mask=o_mask)
    gl.store(o_ptrs + 448, gl.convert_layout(acc7 * inv, out_blk).to(PART_T), mask=o_mask)
    offs_h_l = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, mma))
    gl.store(
        part_lse_ptr + (seq * heads + offs_h_l) * num_splits + split,
        lse_log2,
        mask=offs_h_l < heads,
    )
    if STAMPS:
        gl.thread_barrier()
        gl.store(stamps_ptr + cta * 6 + 4, _now())


def box_layout(block_n=32):
    return gl.NVMMASharedLayout.get_default_for([block_n, 64], gl.bfloat16)


def run(
    q_lat,
    q_pe,
    cache,
    lengths,
    scale,
    num_splits,
    *,
    num_buf=4,
    launch_early=True,
    combine=True,
    dyn=0,
    rep=False,
    q_in_consumer=False,
    maxnreg=None,
    block_n=32,
    bf16_parts=False,
    stamps=None,
):
    """`stamps`: None, or a pair of int64 buffers (split CTAs × 6, combine programs × 3)
    that the kernels fill with %globaltimer readings (the timeline probe)."""
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
    desc = TensorDescriptor.from_tensor(cache.view(-1, 576), [block_n, 64], box_layout(block_n))
    counter = _counter(q_lat.device)
    split_ws[(triton.cdiv(heads, 16), num_splits, batch)](
        q_lat,
        q_pe,
        desc,
        lengths,
        part_out,
        part_lse,
        counter,
        scale * 1.4426950408889634,
        heads,
        num_splits,
        cache.shape[1],
        q_lat.stride(0),
        q_lat.stride(1),
        q_pe.stride(0),
        q_pe.stride(1),
        D_LAT=512,
        D_PE=64,
        BLOCK_H=16,
        BLOCK_N=block_n,
        NUM_BUF=num_buf,
        WAIT_FOR_PREVIOUS=launch_early,
        USE_PDL=combine,
        DYN=dyn,
        REP=rep,
        Q_IN_CONSUMER=q_in_consumer,
        stamps_ptr=stamps[0] if stamps is not None else None,
        STAMPS=stamps is not None,
        num_warps=4,
        **({"maxnreg": maxnreg} if maxnreg else {}),
        **({"launch_pdl": True} if launch_early else {}),
    )
    if combine:
        block_s = triton.next_power_of_2(num_splits)
        block_d = combine_block_d(num_splits)
        grid = (batch * heads, 512 // block_d)
        if dyn or stamps is not None:  # the same merge; it zeroes the claim counters after
            combine_v4[grid](
                part_out, part_lse, out, lse, heads, num_splits, out.stride(0), out.stride(1),
                D_LAT=512, BLOCK_D=block_d, BLOCK_S=block_s, TRIGGER=True, HOIST=True,
                GDC=True, counter_ptr=counter, DYN=1 if dyn else 0, BLOCK_H=16,
                stamps_ptr=stamps[1] if stamps is not None else None,
                STAMPS=stamps is not None, num_warps=4, launch_pdl=True,
            )  # fmt: skip
        else:
            _combine_kernel[grid](
                part_out, part_lse, out, lse, heads, num_splits, out.stride(0), out.stride(1),
                D_LAT=512, BLOCK_D=block_d, BLOCK_S=block_s, USE_PDL=True, num_warps=4,
                launch_pdl=True,
            )  # fmt: skip
    elif dyn:
        counter.zero_()
    return out, lse
