"""Session-5 probe: the 16-head split kernel written in Gluon (Triton's explicit-layout
dialect), its pipeline by hand (dense bf16 cache).

Same math and chunking as the shipped memory-bound kernel (16-head tile, 32-row tiles,
interleaved chunks, launched early with PDL), but the `cp.async` ring of NUM_BUF shared
buffers is written out: while tile j is used, tiles j+1 … j+NUM_BUF-1 are in flight; the
scores read the tile through a transposed shared-memory view (ldmatrix.trans) instead of
transposing in registers, and the probabilities go to the second dot by a register layout
conversion instead of a round trip through shared memory. The shipped combine kernel
merges the chunks.

`split_gluon` is the first version (whole operands in registers). `split_gluon_k` keeps q
in shared memory, slices the scores' dot along the latent dim and keeps the accumulator in
four column pieces; with DYN > 0 it ends each program with tiles claimed from a counter in
a `while` loop (LOOKAHEAD: each claim's value read an iteration after it was requested).
"""
# ruff: noqa

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
from triton.experimental.gluon.language.nvidia.ampere import mma_v2

from infinitecontext.kernels.mla_decode import _combine_kernel, combine_block_d
from mla_variants4 import combine_v4


@gluon.jit
def _gdc_wait():
    gl.inline_asm_elementwise(
        "griddepcontrol.wait; // dummy $0", "=r", [], dtype=gl.int32, is_pure=False, pack=1
    )


@gluon.jit
def _gdc_launch_dependents():
    gl.inline_asm_elementwise(
        "griddepcontrol.launch_dependents; // dummy $0",
        "=r",
        [],
        dtype=gl.int32,
        is_pure=False,
        pack=1,
    )


@gluon.jit
def _issue_tile(
    kv_smem,
    pe_smem,
    buf,
    cache_ptr,
    row_base,
    tile_start,
    limit,
    stride_c_tok,
    offs_n_kv,
    offs_d_kv,
    offs_n_pe,
    offs_r_pe,
    D_LAT: gl.constexpr,
):
    """Start copying one tile's rows (those below `limit`) into buffer `buf`: one group."""
    rows = tile_start + offs_n_kv
    ptrs = cache_ptr + row_base + rows.to(gl.int64)[:, None] * stride_c_tok + offs_d_kv[None, :]
    mask = (rows < limit)[:, None] & (offs_d_kv < D_LAT)[None, :]
    cp.async_copy_global_to_shared(kv_smem.index(buf), ptrs, mask=mask)
    rows = tile_start + offs_n_pe
    ptrs = (
        cache_ptr
        + row_base
        + rows.to(gl.int64)[:, None] * stride_c_tok
        + D_LAT
        + offs_r_pe[None, :]
    )
    mask = (rows < limit)[:, None] & (offs_r_pe < 64)[None, :]
    cp.async_copy_global_to_shared(pe_smem.index(buf), ptrs, mask=mask)
    cp.commit_group()


@gluon.jit
def split_gluon(
    q_lat_ptr,
    q_pe_ptr,
    cache_ptr,
    lengths_ptr,
    part_out_ptr,
    part_lse_ptr,
    sm_scale_log2,
    heads,
    num_splits,
    stride_q_b,
    stride_q_h,
    stride_pe_b,
    stride_pe_h,
    stride_c_outer,
    stride_c_tok,
    D_LAT: gl.constexpr,
    D_PE: gl.constexpr,
    BLOCK_H: gl.constexpr,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
    USE_PDL: gl.constexpr,
):
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_op: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    kv_blk: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [2, 2], [1, 0])  # (·, 512) rows
    pe_blk: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])  # (·, 64) rows
    out_blk: gl.constexpr = gl.BlockedLayout([1, 4], [1, 32], [1, 4], [1, 0])
    smem_l: gl.constexpr = gl.SwizzledSharedLayout(vec=8, per_phase=1, max_phase=8, order=[1, 0])

    head_group = gl.program_id(0)
    split = gl.program_id(1)
    seq = gl.program_id(2)
    if WAIT_FOR_PREVIOUS:
        _gdc_wait()
    if USE_PDL:
        _gdc_launch_dependents()
    seq_len = gl.load(lengths_ptr + seq)
    start = split * BLOCK_N
    stride = num_splits * BLOCK_N
    n_tiles = gl.cdiv(gl.maximum(seq_len - start, 0), stride)

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
    q_lat = gl.convert_layout(q_lat, a_op)
    q_pe = gl.convert_layout(q_pe, a_op)

    kv_smem = gl.allocate_shared_memory(gl.bfloat16, [NUM_BUF, BLOCK_N, D_LAT], smem_l)
    pe_smem = gl.allocate_shared_memory(gl.bfloat16, [NUM_BUF, BLOCK_N, D_PE], smem_l)
    offs_n_kv = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, kv_blk))
    offs_n_pe = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, pe_blk))
    row_base = seq.to(gl.int64) * stride_c_outer
    for i in gl.static_range(NUM_BUF - 1):
        _issue_tile(
            kv_smem,
            pe_smem,
            i,
            cache_ptr,
            row_base,
            start + i * stride,
            seq_len,
            stride_c_tok,
            offs_n_kv,
            offs_d,
            offs_n_pe,
            offs_r,
            D_LAT,
        )

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=gl.SliceLayout(1, mma))
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=gl.SliceLayout(1, mma))
    acc = gl.zeros([BLOCK_H, D_LAT], gl.float32, layout=mma)
    offs_n_s = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))
    for j in range(0, n_tiles):
        cp.wait_group(NUM_BUF - 2)  # tile j has landed (this thread's copies) …
        gl.thread_barrier()  # … everyone's, and nobody still reads tile j - 1's buffer
        _issue_tile(
            kv_smem,
            pe_smem,
            (j + NUM_BUF - 1) % NUM_BUF,
            cache_ptr,
            row_base,
            start + (j + NUM_BUF - 1) * stride,
            seq_len,
            stride_c_tok,
            offs_n_kv,
            offs_d,
            offs_n_pe,
            offs_r,
            D_LAT,
        )
        kv = kv_smem.index(j % NUM_BUF)
        pe = pe_smem.index(j % NUM_BUF)
        scores = mma_v2(
            q_lat,
            kv.permute((1, 0)).load(b_op),
            gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=mma),
        )
        scores = mma_v2(q_pe, pe.permute((1, 0)).load(b_op), scores)  # (BLOCK_H, BLOCK_N)
        valid = (start + j * stride + offs_n_s) < seq_len
        scores = gl.where(valid[None, :], scores * sm_scale_log2, float("-inf"))
        m_new = gl.maximum(m_i, gl.max(scores, axis=1))
        alpha = gl.exp2(m_i - m_new)
        probs = gl.exp2(scores - m_new[:, None])
        l_i = l_i * alpha + gl.sum(probs, axis=1)
        acc = mma_v2(
            gl.convert_layout(probs.to(gl.bfloat16), a_op), kv.load(b_op), acc * alpha[:, None]
        )
        m_i = m_new
    cp.wait_group(0)  # the masked copies issued past the end

    has_rows = l_i > 0.0
    out = acc / gl.where(has_rows, l_i, 1.0)[:, None]
    lse_log2 = gl.where(has_rows, m_i + gl.log2(gl.where(has_rows, l_i, 1.0)), float("-inf"))
    out = gl.convert_layout(out, out_blk)
    offs_h_o = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, out_blk))
    offs_d_o = gl.arange(0, D_LAT, layout=gl.SliceLayout(0, out_blk))
    part = (seq * heads + offs_h_o) * num_splits + split
    gl.store(
        part_out_ptr + part[:, None].to(gl.int64) * D_LAT + offs_d_o[None, :],
        out,
        mask=(offs_h_o < heads)[:, None] & (offs_d_o < D_LAT)[None, :],
    )
    offs_h_l = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, mma))
    gl.store(
        part_lse_ptr + (seq * heads + offs_h_l) * num_splits + split,
        lse_log2,
        mask=offs_h_l < heads,
    )


@gluon.jit
def _scores_chunked(
    q_lat_smem,
    q_pe_smem,
    kv,
    pe,
    s,
    a_op: gl.constexpr,
    b_op: gl.constexpr,
    D_LAT: gl.constexpr,
    KC: gl.constexpr,
):
    """q·kᵀ over 64-wide slices of the latent dim: small operands, few live registers."""
    for k in gl.static_range(0, D_LAT, KC):
        a = q_lat_smem.slice(k, KC, dim=1).load(a_op)
        b = kv.slice(k, KC, dim=1).permute((1, 0)).load(b_op)
        s = mma_v2(a, b, s)
    return mma_v2(q_pe_smem.load(a_op), pe.permute((1, 0)).load(b_op), s)


@gluon.jit
def _attend_k(
    q_lat_smem,
    q_pe_smem,
    kv,
    pe,
    tile_start,
    seq_len,
    sm_scale_log2,
    m_i,
    l_i,
    acc0,
    acc1,
    acc2,
    acc3,
    mma: gl.constexpr,
    a_op: gl.constexpr,
    b_op: gl.constexpr,
    BLOCK_H: gl.constexpr,
    BLOCK_N: gl.constexpr,
    D_LAT: gl.constexpr,
):
    """One tile (in shared memory) into the running max, sum and four accumulator pieces."""
    DC: gl.constexpr = D_LAT // 4
    scores = _scores_chunked(
        q_lat_smem,
        q_pe_smem,
        kv,
        pe,
        gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=mma),
        a_op,
        b_op,
        D_LAT,
        64,
    )
    offs_n = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, mma))
    valid = (tile_start + offs_n) < seq_len
    scores = gl.where(valid[None, :], scores * sm_scale_log2, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(scores, axis=1))
    alpha = gl.exp2(m_i - m_new)
    probs = gl.exp2(scores - m_new[:, None])
    l_i = l_i * alpha + gl.sum(probs, axis=1)
    p_op = gl.convert_layout(probs.to(gl.bfloat16), a_op)
    a2 = alpha[:, None]
    acc0 = mma_v2(p_op, kv.slice(0, DC, dim=1).load(b_op), acc0 * a2)
    acc1 = mma_v2(p_op, kv.slice(DC, DC, dim=1).load(b_op), acc1 * a2)
    acc2 = mma_v2(p_op, kv.slice(2 * DC, DC, dim=1).load(b_op), acc2 * a2)
    acc3 = mma_v2(p_op, kv.slice(3 * DC, DC, dim=1).load(b_op), acc3 * a2)
    return m_new, l_i, acc0, acc1, acc2, acc3


@gluon.jit
def _next_tile(i, n_static, split, num_splits, static_tiles, counter, DYN: gl.constexpr):
    """The program's i-th tile: interleaved while i < n_static, then claimed from the counter."""
    if DYN > 0:
        if i < n_static:
            tile = split + i * num_splits
        else:
            tile = static_tiles + gl.atomic_add(counter, 1, sem="relaxed")
    else:
        tile = split + i * num_splits
    return tile


@gluon.jit
def _request_claim(counter, wanted, tid):
    """If `wanted`, thread 0 adds one to the counter. The old value stays in its register
    (every other thread holds 0) until `_claimed` reads it, an iteration later, so the
    atomic's round trip overlaps a tile's work instead of stalling the block."""
    flag = gl.where((tid == 0) & wanted, 1, 0)
    return gl.inline_asm_elementwise(
        "{ .reg .pred p; setp.ne.s32 p, $1, 0; mov.u32 $0, 0;"
        " @p atom.global.gpu.relaxed.add.u32 $0, [$2], 1; }",
        "=r,r,l",
        [flag, counter + tid * 0],
        dtype=gl.int32,
        is_pure=False,
        pack=1,
    )


@gluon.jit
def split_gluon_k(
    q_lat_ptr,
    q_pe_ptr,
    cache_ptr,
    lengths_ptr,
    part_out_ptr,
    part_lse_ptr,
    counter_ptr,
    sm_scale_log2,
    heads,
    num_splits,
    stride_q_b,
    stride_q_h,
    stride_pe_b,
    stride_pe_h,
    stride_c_outer,
    stride_c_tok,
    D_LAT: gl.constexpr,
    D_PE: gl.constexpr,
    BLOCK_H: gl.constexpr,
    BLOCK_N: gl.constexpr,
    NUM_BUF: gl.constexpr,
    WAIT_FOR_PREVIOUS: gl.constexpr,
    USE_PDL: gl.constexpr,
    DYN: gl.constexpr,
    LOOKAHEAD: gl.constexpr = False,
):
    """`split_gluon` with q in shared memory, the scores' dot in 64-wide K slices and the
    accumulator in four 128-column pieces (each its own dot).

    DYN > 0 (three buffers): the program keeps `tiles // S - DYN` interleaved tiles and
    then claims tiles from a per-(sequence, head group) counter, each claim made when its
    copy is issued, two tiles ahead of its use; the loop stops at the first claimed tile
    past the end, so no iteration is spent on an empty tile."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(
        version=[2, 0], warps_per_cta=[1, 4], instr_shape=[16, 8]
    )
    a_op: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=2)
    b_op: gl.constexpr = gl.DotOperandLayout(operand_index=1, parent=mma, k_width=2)
    kv_blk: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [2, 2], [1, 0])
    pe_blk: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [4, 1], [1, 0])
    out_blk: gl.constexpr = gl.BlockedLayout([1, 4], [1, 32], [1, 4], [1, 0])
    smem_l: gl.constexpr = gl.SwizzledSharedLayout(vec=8, per_phase=1, max_phase=8, order=[1, 0])
    DC: gl.constexpr = D_LAT // 4

    head_group = gl.program_id(0)
    split = gl.program_id(1)
    seq = gl.program_id(2)
    if WAIT_FOR_PREVIOUS:
        _gdc_wait()
    if USE_PDL:
        _gdc_launch_dependents()
    seq_len = gl.load(lengths_ptr + seq)
    total_tiles = gl.cdiv(seq_len, BLOCK_N)
    n_static = gl.maximum(total_tiles // num_splits - DYN, 0)
    static_tiles = n_static * num_splits
    counter = counter_ptr + seq * gl.cdiv(heads, BLOCK_H) + head_group

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
    q_lat_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_LAT], smem_l, q_lat)
    q_pe_smem = gl.allocate_shared_memory(gl.bfloat16, [BLOCK_H, D_PE], smem_l, q_pe)
    kv_smem = gl.allocate_shared_memory(gl.bfloat16, [NUM_BUF, BLOCK_N, D_LAT], smem_l)
    pe_smem = gl.allocate_shared_memory(gl.bfloat16, [NUM_BUF, BLOCK_N, D_PE], smem_l)
    offs_n_kv = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, kv_blk))
    offs_n_pe = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, pe_blk))
    row_base = seq.to(gl.int64) * stride_c_outer

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=gl.SliceLayout(1, mma))
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=gl.SliceLayout(1, mma))
    acc0 = gl.zeros([BLOCK_H, DC], gl.float32, layout=mma)
    acc1 = gl.zeros([BLOCK_H, DC], gl.float32, layout=mma)
    acc2 = gl.zeros([BLOCK_H, DC], gl.float32, layout=mma)
    acc3 = gl.zeros([BLOCK_H, DC], gl.float32, layout=mma)
    if DYN > 0:
        gl.static_assert(NUM_BUF == 3, "the dynamic loop carries two tiles in flight")
        t_cur = _next_tile(0, n_static, split, num_splits, static_tiles, counter, DYN)
        _issue_tile(
            kv_smem,
            pe_smem,
            0,
            cache_ptr,
            row_base,
            t_cur * BLOCK_N,
            seq_len,
            stride_c_tok,
            offs_n_kv,
            offs_d,
            offs_n_pe,
            offs_r,
            D_LAT,
        )
        t_nxt = _next_tile(1, n_static, split, num_splits, static_tiles, counter, DYN)
        _issue_tile(
            kv_smem,
            pe_smem,
            1,
            cache_ptr,
            row_base,
            t_nxt * BLOCK_N,
            seq_len,
            stride_c_tok,
            offs_n_kv,
            offs_d,
            offs_n_pe,
            offs_r,
            D_LAT,
        )
        j = 0
        if LOOKAHEAD:
            tid = gl.arange(
                0, 32 * gl.num_warps(), layout=gl.BlockedLayout([1], [32], [gl.num_warps()], [0])
            )
            pending = _request_claim(counter, n_static <= 2, tid)
        while t_cur < total_tiles:
            cp.wait_group(1)
            gl.thread_barrier()
            if LOOKAHEAD:
                if j + 2 < n_static:
                    t_new = split + (j + 2) * num_splits
                else:
                    t_new = static_tiles + gl.max(pending, axis=0)
                pending = _request_claim(counter, j + 3 >= n_static, tid)
            else:
                t_new = _next_tile(j + 2, n_static, split, num_splits, static_tiles, counter, DYN)
            _issue_tile(
                kv_smem,
                pe_smem,
                (j + 2) % 3,
                cache_ptr,
                row_base,
                t_new * BLOCK_N,
                seq_len,
                stride_c_tok,
                offs_n_kv,
                offs_d,
                offs_n_pe,
                offs_r,
                D_LAT,
            )
            m_i, l_i, acc0, acc1, acc2, acc3 = _attend_k(
                q_lat_smem,
                q_pe_smem,
                kv_smem.index(j % 3),
                pe_smem.index(j % 3),
                t_cur * BLOCK_N,
                seq_len,
                sm_scale_log2,
                m_i,
                l_i,
                acc0,
                acc1,
                acc2,
                acc3,
                mma,
                a_op,
                b_op,
                BLOCK_H,
                BLOCK_N,
                D_LAT,
            )
            t_cur = t_nxt
            t_nxt = t_new
            j += 1
    else:
        start = split * BLOCK_N
        stride = num_splits * BLOCK_N
        n_tiles = gl.cdiv(gl.maximum(seq_len - start, 0), stride)
        for i in gl.static_range(NUM_BUF - 1):
            _issue_tile(
                kv_smem,
                pe_smem,
                i,
                cache_ptr,
                row_base,
                start + i * stride,
                seq_len,
                stride_c_tok,
                offs_n_kv,
                offs_d,
                offs_n_pe,
                offs_r,
                D_LAT,
            )
        for j in range(0, n_tiles):
            cp.wait_group(NUM_BUF - 2)
            gl.thread_barrier()
            _issue_tile(
                kv_smem,
                pe_smem,
                (j + NUM_BUF - 1) % NUM_BUF,
                cache_ptr,
                row_base,
                start + (j + NUM_BUF - 1) * stride,
                seq_len,
                stride_c_tok,
                offs_n_kv,
                offs_d,
                offs_n_pe,
                offs_r,
                D_LAT,
            )
            m_i, l_i, acc0, acc1, acc2, acc3 = _attend_k(
                q_lat_smem,
                q_pe_smem,
                kv_smem.index(j % NUM_BUF),
                pe_smem.index(j % NUM_BUF),
                start + j * stride,
                seq_len,
                sm_scale_log2,
                m_i,
                l_i,
                acc0,
                acc1,
                acc2,
                acc3,
                mma,
                a_op,
                b_op,
                BLOCK_H,
                BLOCK_N,
                D_LAT,
            )
    cp.wait_group(0)

    has_rows = l_i > 0.0
    inv = (1.0 / gl.where(has_rows, l_i, 1.0))[:, None]
    lse_log2 = gl.where(has_rows, m_i + gl.log2(gl.where(has_rows, l_i, 1.0)), float("-inf"))
    offs_h_o = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, out_blk))
    offs_d_o = gl.arange(0, DC, layout=gl.SliceLayout(0, out_blk))
    part = (seq * heads + offs_h_o) * num_splits + split
    o_ptrs = part_out_ptr + part[:, None].to(gl.int64) * D_LAT + offs_d_o[None, :]
    o_mask = (offs_h_o < heads)[:, None] & (offs_d_o < DC)[None, :]
    gl.store(o_ptrs, gl.convert_layout(acc0 * inv, out_blk), mask=o_mask)
    gl.store(o_ptrs + DC, gl.convert_layout(acc1 * inv, out_blk), mask=o_mask)
    gl.store(o_ptrs + 2 * DC, gl.convert_layout(acc2 * inv, out_blk), mask=o_mask)
    gl.store(o_ptrs + 3 * DC, gl.convert_layout(acc3 * inv, out_blk), mask=o_mask)
    offs_h_l = head_group * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, mma))
    gl.store(
        part_lse_ptr + (seq * heads + offs_h_l) * num_splits + split,
        lse_log2,
        mask=offs_h_l < heads,
    )


_counters = {}


def _counter(device):
    """Claim counters, one per (sequence, head group); the combine zeroes them after use."""
    if device not in _counters:
        _counters[device] = torch.zeros(65536, dtype=torch.int32, device=device)
    return _counters[device]


def run(
    q_lat,
    q_pe,
    cache,
    lengths,
    scale,
    num_splits,
    *,
    num_buf=3,
    num_warps=4,
    launch_early=True,
    combine=True,
    chunked=False,
    dyn=0,
    lookahead=False,
):
    batch, heads, _ = q_lat.shape
    out = torch.empty_like(q_lat)
    lse = torch.empty((batch, heads), device=q_lat.device, dtype=torch.float32)
    part_out = torch.empty(
        (batch, heads, num_splits, 512), device=q_lat.device, dtype=torch.float32
    )
    part_lse = torch.empty((batch, heads, num_splits), device=q_lat.device, dtype=torch.float32)
    args = [q_lat, q_pe, cache, lengths, part_out, part_lse]
    extra = {}
    if chunked or dyn:
        kernel = split_gluon_k
        args.append(_counter(q_lat.device))
        extra["DYN"] = dyn
        extra["LOOKAHEAD"] = lookahead
    else:
        kernel = split_gluon
    kernel[(triton.cdiv(heads, 16), num_splits, batch)](
        *args,
        scale * 1.4426950408889634,
        heads,
        num_splits,
        q_lat.stride(0),
        q_lat.stride(1),
        q_pe.stride(0),
        q_pe.stride(1),
        cache.stride(0),
        cache.stride(1),
        D_LAT=512,
        D_PE=64,
        BLOCK_H=16,
        BLOCK_N=32,
        NUM_BUF=num_buf,
        WAIT_FOR_PREVIOUS=launch_early,
        USE_PDL=combine,
        num_warps=num_warps,
        **extra,
        **({"launch_pdl": True} if launch_early else {}),
    )
    if combine:
        block_s = triton.next_power_of_2(num_splits)
        block_d = combine_block_d(num_splits)
        grid = (batch * heads, 512 // block_d)
        if dyn:  # session 4's combine: the same merge, then it zeroes the claim counters
            combine_v4[grid](
                part_out,
                part_lse,
                out,
                lse,
                heads,
                num_splits,
                out.stride(0),
                out.stride(1),
                D_LAT=512,
                BLOCK_D=block_d,
                BLOCK_S=block_s,
                TRIGGER=True,
                HOIST=True,
                GDC=True,
                counter_ptr=_counter(q_lat.device),
                DYN=1,
                BLOCK_H=16,
                num_warps=4,
                launch_pdl=True,
            )
        else:
            _combine_kernel[grid](
                part_out,
                part_lse,
                out,
                lse,
                heads,
                num_splits,
                out.stride(0),
                out.stride(1),
                D_LAT=512,
                BLOCK_D=block_d,
                BLOCK_S=block_s,
                USE_PDL=True,
                num_warps=4,
                launch_pdl=True,
            )
    elif dyn:
        _counter(q_lat.device).zero_()
    return out, lse
