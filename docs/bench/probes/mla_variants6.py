"""Session-5 variant of the shipped 16-head split kernel: a dynamic tail inside the pipelined
loop (dense bf16 cache only).

The shipped kernel deals each program every S-th tile (S chunks). Here each program keeps
its first `n_static = tiles // S - DYN` interleaved tiles and then claims tiles from the end
of the sequence one at a time from a per-(sequence, head group) counter, for DYN + EXTRA
more iterations. The claim is a masked atomic in the same `for` loop with a fixed trip
count (no `while`), so the software pipeliner still issues each tile's loads two
iterations ahead; a claim past the last tile is a fully masked, empty iteration. The
combine (session 4's `combine_v4`, DYN > 0) resets the counters after its wait.
"""
# ruff: noqa

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from mla_variants4 import _counter, combine_v4
from infinitecontext.kernels.mla_decode import combine_block_d
from infinitecontext.kernels.runtime import triton_interpreting

GDC = not triton_interpreting()


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
):
    """The shipped masked tile (`_attend_tile`, dense bf16)."""
    offs_t = tile_start + tl.arange(0, BLOCK_N)
    rows = seq.to(tl.int64) * stride_c_outer + offs_t.to(tl.int64) * stride_c_tok
    mask_t = offs_t < limit
    c_kv = tl.load(cache_ptr + rows[:, None] + offs_d[None, :], mask=mask_t[:, None], other=0.0)
    k_pe = tl.load(
        cache_ptr + rows[:, None] + D_LAT + offs_r[None, :], mask=mask_t[:, None], other=0.0
    )
    c_kv = c_kv.to(q_lat.dtype)  # fp32 under the interpreter
    k_pe = k_pe.to(q_pe.dtype)
    scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))
    scores = tl.where(mask_t[None, :], scores * sm_scale_log2, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, axis=1))
    # A claimed tile past the end is empty: with no row seen yet, keep exp2's argument finite.
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_safe)
    probs = tl.exp2(scores - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(probs, axis=1)
    acc = acc * alpha[:, None] + tl.dot(probs.to(c_kv.dtype), c_kv)
    return m_new, l_i, acc


@triton.jit
def split_v6(
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
    D_LAT: tl.constexpr,
    D_PE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DYN: tl.constexpr,
    EXTRA: tl.constexpr,
    GDC: tl.constexpr,
    LOOKAHEAD: tl.constexpr,
):
    head_group = tl.program_id(0)
    split = tl.program_id(1)
    seq = tl.program_id(2)
    if GDC:
        gdc_wait()
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
    if not GDC:
        q_lat = q_lat.to(tl.float32)
        q_pe = q_pe.to(tl.float32)
    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, D_LAT], dtype=tl.float32)
    tiles = tl.cdiv(seq_len, BLOCK_N)
    n_static = tl.maximum(tiles // num_splits - DYN, 0)
    static_tiles = n_static * num_splits
    counter = counter_ptr + seq * tl.cdiv(heads, BLOCK_H) + head_group
    n_iter = n_static + DYN + EXTRA
    if LOOKAHEAD:  # each claim one iteration before its tile, so its round trip hides
        ticket = tl.atomic_add(counter, 1, mask=(n_static == 0) & (n_iter > 0), sem="relaxed")
    for i in range(0, n_iter):
        claimed = i >= n_static
        if not LOOKAHEAD:
            ticket = tl.atomic_add(counter, 1, mask=claimed, sem="relaxed")
        tile = tl.where(claimed, static_tiles + ticket, split + i * num_splits)
        if LOOKAHEAD:
            ticket = tl.atomic_add(
                counter, 1, mask=(i + 1 >= n_static) & (i + 1 < n_iter), sem="relaxed"
            )
        m_i, l_i, acc = _tile(
            q_lat,
            q_pe,
            cache_ptr,
            seq,
            tile * BLOCK_N,
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


def run(
    q_lat,
    q_pe,
    cache,
    lengths,
    scale,
    num_splits,
    *,
    dyn,
    extra,
    lookahead=False,
    block_h=16,
    block_n=32,
    num_warps=4,
    num_stages=3,
):
    batch, heads, _ = q_lat.shape
    head_groups = triton.cdiv(heads, block_h)
    out = torch.empty_like(q_lat)
    lse = torch.empty((batch, heads), device=q_lat.device, dtype=torch.float32)
    part_out = torch.empty(
        (batch, heads, num_splits, 512), device=q_lat.device, dtype=torch.float32
    )
    part_lse = torch.empty((batch, heads, num_splits), device=q_lat.device, dtype=torch.float32)
    counter = _counter(q_lat.device)
    split_v6[(head_groups, num_splits, batch)](
        q_lat,
        q_pe,
        cache,
        lengths,
        part_out,
        part_lse,
        counter,
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
        BLOCK_H=block_h,
        BLOCK_N=block_n,
        DYN=dyn,
        EXTRA=extra,
        GDC=GDC,
        LOOKAHEAD=lookahead,
        num_warps=num_warps,
        num_stages=num_stages,
        **({"launch_pdl": True} if GDC else {}),
    )
    block_s = triton.next_power_of_2(num_splits)
    block_d = combine_block_d(num_splits)
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
        TRIGGER=GDC,
        HOIST=True,
        GDC=GDC,
        counter_ptr=counter,
        DYN=1,
        BLOCK_H=block_h,
        num_warps=4,  # DYN: reset the counter
        **({"launch_pdl": True} if GDC else {}),
    )
    return out, lse
