"""Session-4 variants of the shipped MLA split and combine kernels (dense bf16 cache only).

A copy of `kernels/mla_decode.py`'s kernels with these constexpr flags:
  PDL_WAIT    the split kernel is itself launched with programmatic dependent launch: it
              starts while the previous kernel finishes and waits (gdc_wait) before its
              first load, so its launch latency hides behind that kernel's tail
  TRIGGER     the combine lets the next kernel launch as soon as it starts (the partner of
              PDL_WAIT: back-to-back calls, one per layer)
  HOIST       the combine issues the partials' load before the log-sum-exp arithmetic
  FOLD        softmax scale folded into the exponent (one FFMA per score: exp2(s·c − m·c))
  SPLIT_TAIL  full tiles run without masks; only the ragged last tile is masked
  STATIC      (interleaved chunks) loop bound from the host's capacity, not the loaded
              length, so the first tiles' loads do not wait for the length's round trip
"""
# ruff: noqa

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from infinitecontext.kernels.mla_decode import combine_block_d
from infinitecontext.kernels.runtime import triton_interpreting

GDC = not triton_interpreting()


@triton.jit
def _now():
    return tl.inline_asm_elementwise(
        "mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1
    )


@triton.jit
def _prefetch_l2(ptrs):
    """Hint: bring PREFETCH_BYTES at each address into L2 (a bulk prefetch, Hopper)."""
    return tl.inline_asm_elementwise(
        "cp.async.bulk.prefetch.L2.global [$1], 288;\n mov.u32 $0, 0;",
        "=r,l",
        [ptrs],
        dtype=tl.int32,
        is_pure=False,
        pack=1,
    )


@triton.jit
def _load_tile(
    cache_ptr,
    seq,
    tile_start,
    limit,
    stride_c_outer,
    stride_c_tok,
    offs_d,
    offs_r,
    D_LAT: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    offs_t = tile_start + tl.arange(0, BLOCK_N)
    mask_t = offs_t < limit
    rows = seq.to(tl.int64) * stride_c_outer + offs_t.to(tl.int64) * stride_c_tok
    c_kv = tl.load(cache_ptr + rows[:, None] + offs_d[None, :], mask=mask_t[:, None], other=0.0)
    k_pe = tl.load(
        cache_ptr + rows[:, None] + D_LAT + offs_r[None, :], mask=mask_t[:, None], other=0.0
    )
    return c_kv, k_pe


@triton.jit
def _update(
    q_lat, q_pe, c_kv, k_pe, tile_start, limit, sm_scale_log2, m_i, l_i, acc, BLOCK_N: tl.constexpr
):
    offs_t = tile_start + tl.arange(0, BLOCK_N)
    mask_t = offs_t < limit
    scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))
    scores = tl.where(mask_t[None, :], scores * sm_scale_log2, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, axis=1))
    alpha = tl.exp2(m_i - m_new)
    probs = tl.exp2(scores - m_new[:, None])
    l_i = l_i * alpha + tl.sum(probs, axis=1)
    acc = acc * alpha[:, None] + tl.dot(probs.to(c_kv.dtype), c_kv)
    return m_new, l_i, acc


@triton.jit
def _tile(
    q_lat,
    q_pe,
    cache_ptr,
    seq,
    tile_start,
    limit,
    stride_c_outer,
    stride_c_tok,
    sm_scale_log2,
    m_i,
    l_i,
    acc,
    offs_d,
    offs_r,
    D_LAT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,
    FOLD: tl.constexpr,
):
    offs_t = tile_start + tl.arange(0, BLOCK_N)
    rows = seq.to(tl.int64) * stride_c_outer + offs_t.to(tl.int64) * stride_c_tok
    if MASKED:
        mask_t = offs_t < limit
        c_kv = tl.load(cache_ptr + rows[:, None] + offs_d[None, :], mask=mask_t[:, None], other=0.0)
        k_pe = tl.load(
            cache_ptr + rows[:, None] + D_LAT + offs_r[None, :], mask=mask_t[:, None], other=0.0
        )
    else:
        c_kv = tl.load(cache_ptr + rows[:, None] + offs_d[None, :])
        k_pe = tl.load(cache_ptr + rows[:, None] + D_LAT + offs_r[None, :])
    scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))
    if FOLD:
        if MASKED:
            scores = tl.where(mask_t[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1) * sm_scale_log2)
        alpha = tl.exp2(m_i - m_new)
        probs = tl.exp2(scores * sm_scale_log2 - m_new[:, None])
    else:
        if MASKED:
            scores = tl.where(mask_t[None, :], scores * sm_scale_log2, float("-inf"))
        else:
            scores = scores * sm_scale_log2
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp2(m_i - m_new)
        probs = tl.exp2(scores - m_new[:, None])
    l_i = l_i * alpha + tl.sum(probs, axis=1)
    acc = acc * alpha[:, None] + tl.dot(probs.to(c_kv.dtype), c_kv)
    return m_new, l_i, acc


@triton.jit
def split_v4(
    q_lat_ptr,
    q_pe_ptr,
    cache_ptr,
    lengths_ptr,
    part_out_ptr,
    part_lse_ptr,
    sm_scale_log2,
    heads,
    num_splits,
    capacity,
    stride_q_b,
    stride_q_h,
    stride_pe_b,
    stride_pe_h,
    stride_c_outer,
    stride_c_tok,
    D_LAT: tl.constexpr,
    D_PE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    INTERLEAVE: tl.constexpr,
    PDL_WAIT: tl.constexpr,
    FOLD: tl.constexpr,
    SPLIT_TAIL: tl.constexpr,
    STATIC: tl.constexpr,
    GDC: tl.constexpr,
    PREFETCH: tl.constexpr,
    stamps_ptr=None,
    STAMPS: tl.constexpr = False,
    counter_ptr=None,
    DYN: tl.constexpr = 0,
    DYN_PREFETCH: tl.constexpr = True,
):
    head_group = tl.program_id(0)
    split = tl.program_id(1)
    seq = tl.program_id(2)
    if STAMPS:
        t0 = _now()
    if PREFETCH > 0:
        # Before waiting on the previous kernel: L2 is the point of coherence, so lines
        # prefetched now still see whatever that kernel writes. 128 threads × 288 B = one
        # 32-row tile of 576 bf16 per prefetch round; only tiles inside the allocation.
        lanes = tl.arange(0, 128)
        for t in tl.static_range(PREFETCH):
            tile_start = (split + t * num_splits) * BLOCK_N
            inside = tile_start + BLOCK_N <= capacity
            offs = seq.to(tl.int64) * stride_c_outer + tile_start.to(tl.int64) * stride_c_tok
            offs = tl.where(inside, offs, 0) + lanes * 144
            _prefetch_l2(cache_ptr + offs)
    if PDL_WAIT:
        gdc_wait()
    if STAMPS:
        t1 = _now()
    if GDC:
        gdc_launch_dependents()
    seq_len = tl.load(lengths_ptr + seq)
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
    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, D_LAT], dtype=tl.float32)
    if INTERLEAVE:
        start = split * BLOCK_N
        end = seq_len
        if STATIC:
            end = capacity
        stride = num_splits * BLOCK_N
    else:
        tiles = tl.cdiv(seq_len, BLOCK_N)
        start = (split * tiles // num_splits) * BLOCK_N
        end = tl.minimum(((split + 1) * tiles // num_splits) * BLOCK_N, seq_len)
        stride = BLOCK_N
    if DYN > 0:
        # Interleaved static tiles first (pipelined), then the last DYN·S tiles claimed one
        # at a time from a counter (the combine resets it), the next tile's rows loaded
        # while the current one is used.
        total_tiles = tl.cdiv(seq_len, BLOCK_N)
        static_tiles = tl.maximum(total_tiles - DYN * num_splits, 0)
        for tile_start in range(start, static_tiles * BLOCK_N, stride):
            m_i, l_i, acc = _tile(
                q_lat, q_pe, cache_ptr, seq, tile_start, seq_len, stride_c_outer, stride_c_tok,
                sm_scale_log2, m_i, l_i, acc, offs_d, offs_r, D_LAT, BLOCK_N, True, FOLD,
            )  # fmt: skip
        counter = counter_ptr + seq * tl.num_programs(0) + head_group
        tile = static_tiles + tl.atomic_add(counter, 1, sem="relaxed")
        if DYN_PREFETCH:
            c_next, k_next = _load_tile(
                cache_ptr, seq, tile * BLOCK_N, tl.where(tile < total_tiles, seq_len, 0),
                stride_c_outer, stride_c_tok, offs_d, offs_r, D_LAT, BLOCK_N,
            )  # fmt: skip
            while tile < total_tiles:
                c_cur = c_next
                k_cur = k_next
                cur = tile
                tile = static_tiles + tl.atomic_add(counter, 1, sem="relaxed")
                c_next, k_next = _load_tile(
                    cache_ptr, seq, tile * BLOCK_N, tl.where(tile < total_tiles, seq_len, 0),
                    stride_c_outer, stride_c_tok, offs_d, offs_r, D_LAT, BLOCK_N,
                )  # fmt: skip
                m_i, l_i, acc = _update(
                    q_lat, q_pe, c_cur, k_cur, cur * BLOCK_N, seq_len, sm_scale_log2, m_i, l_i,
                    acc, BLOCK_N,
                )  # fmt: skip
        else:
            while tile < total_tiles:
                c_cur, k_cur = _load_tile(
                    cache_ptr, seq, tile * BLOCK_N, seq_len,
                    stride_c_outer, stride_c_tok, offs_d, offs_r, D_LAT, BLOCK_N,
                )  # fmt: skip
                m_i, l_i, acc = _update(
                    q_lat, q_pe, c_cur, k_cur, tile * BLOCK_N, seq_len, sm_scale_log2, m_i, l_i,
                    acc, BLOCK_N,
                )  # fmt: skip
                tile = static_tiles + tl.atomic_add(counter, 1, sem="relaxed")
    elif SPLIT_TAIL:
        full_end = (seq_len // BLOCK_N) * BLOCK_N  # tiles starting before it are full
        for tile_start in range(start, tl.minimum(end, full_end), stride):
            m_i, l_i, acc = _tile(
                q_lat,
                q_pe,
                cache_ptr,
                seq,
                tile_start,
                seq_len,
                stride_c_outer,
                stride_c_tok,
                sm_scale_log2,
                m_i,
                l_i,
                acc,
                offs_d,
                offs_r,
                D_LAT,
                BLOCK_N,
                False,
                FOLD,
            )
        # The ragged tile at full_end, if this chunk owns it.
        if INTERLEAVE:
            owns = (full_end // BLOCK_N) % num_splits == split
        else:
            owns = (full_end >= start) & (full_end < end)
        if owns & (full_end < seq_len):
            m_i, l_i, acc = _tile(
                q_lat,
                q_pe,
                cache_ptr,
                seq,
                full_end,
                seq_len,
                stride_c_outer,
                stride_c_tok,
                sm_scale_log2,
                m_i,
                l_i,
                acc,
                offs_d,
                offs_r,
                D_LAT,
                BLOCK_N,
                True,
                FOLD,
            )
    else:
        for tile_start in range(start, end, stride):
            m_i, l_i, acc = _tile(
                q_lat,
                q_pe,
                cache_ptr,
                seq,
                tile_start,
                seq_len,
                stride_c_outer,
                stride_c_tok,
                sm_scale_log2,
                m_i,
                l_i,
                acc,
                offs_d,
                offs_r,
                D_LAT,
                BLOCK_N,
                True,
                FOLD,
            )
    has_rows = l_i > 0.0
    out = acc / tl.where(has_rows, l_i, 1.0)[:, None]
    lse_log2 = tl.where(has_rows, m_i + tl.log2(tl.where(has_rows, l_i, 1.0)), float("-inf"))
    part = (seq * heads + offs_h) * num_splits + split
    tl.store(
        part_out_ptr + part[:, None].to(tl.int64) * D_LAT + offs_d[None, :],
        out,
        mask=mask_h[:, None],
    )
    tl.store(part_lse_ptr + part, lse_log2, mask=mask_h)
    if STAMPS:
        t2 = _now()
        pid = (seq * num_splits + split) * tl.num_programs(0) + head_group
        tl.store(stamps_ptr + pid * 3 + 0, t0)
        tl.store(stamps_ptr + pid * 3 + 1, t1)
        tl.store(stamps_ptr + pid * 3 + 2, t2)


@triton.jit
def combine_v4(
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
    TRIGGER: tl.constexpr,
    HOIST: tl.constexpr,
    GDC: tl.constexpr,
    stamps_ptr=None,
    STAMPS: tl.constexpr = False,
    counter_ptr=None,
    DYN: tl.constexpr = 0,
    BLOCK_H: tl.constexpr = 16,
):
    if STAMPS:
        t0 = _now()
    row = tl.program_id(0)
    column_block = tl.program_id(1)
    seq = row // heads
    head = row % heads
    offs_s = tl.arange(0, BLOCK_S)
    mask_s = offs_s < num_splits
    offs_d = column_block * BLOCK_D + tl.arange(0, BLOCK_D)
    part_ptrs = (
        part_out_ptr + (row.to(tl.int64) * num_splits + offs_s[:, None]) * D_LAT + offs_d[None, :]
    )
    if GDC:
        gdc_wait()
    if STAMPS:
        t1 = _now()
    if TRIGGER:
        gdc_launch_dependents()
    lse_all = tl.load(part_lse_ptr + row * num_splits + offs_s, mask=mask_s, other=float("-inf"))
    if HOIST:
        parts = tl.load(part_ptrs, mask=mask_s[:, None], other=0.0)
    m_i = tl.max(lse_all, axis=0)
    m_safe = tl.where(m_i == float("-inf"), 0.0, m_i)
    weight = tl.exp2(lse_all - m_safe)
    l_i = tl.sum(weight, axis=0)
    if not HOIST:
        parts = tl.load(part_ptrs, mask=mask_s[:, None], other=0.0)
    acc = tl.sum(weight[:, None] * parts, axis=0)
    has_rows = l_i > 0.0
    out = acc / tl.where(has_rows, l_i, 1.0)
    tl.store(
        out_ptr + seq * stride_o_b + head * stride_o_h + offs_d, out.to(out_ptr.dtype.element_ty)
    )
    lse = tl.where(
        has_rows, (m_i + tl.log2(tl.where(has_rows, l_i, 1.0))) * 0.6931471805599453, float("-inf")
    )
    tl.store(lse_ptr + row, lse, mask=column_block == 0)
    if DYN > 0:
        # Every split program has finished (gdc_wait above): ready the counter for the next call.
        groups = tl.cdiv(heads, BLOCK_H)
        if (column_block == 0) & (head % BLOCK_H == 0):
            tl.store(counter_ptr + seq * groups + head // BLOCK_H, 0)
    if STAMPS:
        t2 = _now()
        pid = row * tl.num_programs(1) + column_block
        tl.store(stamps_ptr + pid * 3 + 0, t0)
        tl.store(stamps_ptr + pid * 3 + 1, t1)
        tl.store(stamps_ptr + pid * 3 + 2, t2)


_counters = {}


def _counter(device):
    """Claim counters of the dynamic tail, one per (sequence, head group); zero between calls."""
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
    block_h,
    block_n,
    num_warps,
    num_stages,
    interleave,
    pdl_wait=False,
    trigger=False,
    hoist=False,
    fold=False,
    split_tail=False,
    static=False,
    prefetch=0,
    combine_d=None,
    combine_warps=4,
    stamps=None,
    dyn=0,
    dyn_prefetch=True,
):
    batch, heads, _ = q_lat.shape
    head_groups = triton.cdiv(heads, block_h)
    out = torch.empty_like(q_lat)
    lse = torch.empty((batch, heads), device=q_lat.device, dtype=torch.float32)
    part_out = torch.empty(
        (batch, heads, num_splits, 512), device=q_lat.device, dtype=torch.float32
    )
    part_lse = torch.empty((batch, heads, num_splits), device=q_lat.device, dtype=torch.float32)
    split_v4[(head_groups, num_splits, batch)](
        q_lat,
        q_pe,
        cache,
        lengths,
        part_out,
        part_lse,
        scale * 1.4426950408889634,
        heads,
        num_splits,
        cache.shape[1],
        q_lat.stride(0),
        q_lat.stride(1),
        q_pe.stride(0),
        q_pe.stride(1),
        cache.stride(0),
        cache.stride(1),
        D_LAT=512,
        D_PE=64,
        BLOCK_H=block_h,
        BLOCK_N=block_n,
        INTERLEAVE=interleave,
        PDL_WAIT=pdl_wait,
        FOLD=fold,
        SPLIT_TAIL=split_tail,
        STATIC=static,
        GDC=GDC,
        PREFETCH=prefetch,
        stamps_ptr=stamps[0] if stamps is not None else None,
        STAMPS=stamps is not None,
        counter_ptr=_counter(q_lat.device) if dyn else None,
        DYN=dyn,
        DYN_PREFETCH=dyn_prefetch,
        num_warps=num_warps,
        num_stages=num_stages,
        **({"launch_pdl": True} if pdl_wait else {}),
    )
    block_s = triton.next_power_of_2(num_splits)
    block_d = combine_d or combine_block_d(num_splits)
    combine_v4[(batch * heads, 512 // block_d)](
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
        TRIGGER=trigger,
        HOIST=hoist,
        GDC=GDC,
        stamps_ptr=stamps[1] if stamps is not None else None,
        STAMPS=stamps is not None,
        counter_ptr=_counter(q_lat.device) if dyn else None,
        DYN=dyn,
        BLOCK_H=block_h,
        num_warps=combine_warps,
        **({"launch_pdl": True} if GDC else {}),
    )
    return out, lse
