"""Session-5 variant of the shipped MLA split kernel: the latent tiles arrive by TMA.

A copy of `kernels/mla_decode.py`'s split kernel (dense or paged bf16 cache) whose tiles
are read through two host-side tensor descriptors over the cache viewed as (rows, 576):
one for the 512-wide c_KV block and one for the 64-wide k_pe block. The tensor memory
accelerator copies each tile into shared memory (one instruction stream, no address
registers, no predicates), where Triton's pipeliner keeps `num_stages` of them in flight.
Whole tiles are used as loaded; the one ragged tile zeroes its rows past the length
(TMA only bounds the whole tensor). The shipped combine kernel merges the chunks.
"""
# ruff: noqa

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
from triton.tools.tensor_descriptor import TensorDescriptor

from infinitecontext.kernels.mla_decode import _combine_kernel, combine_block_d
from infinitecontext.kernels.runtime import triton_interpreting

GDC = not triton_interpreting()


@triton.jit
def _tile(
    q_lat,
    q_pe,
    m_i,
    l_i,
    acc,
    tile_start,
    limit,
    row0,
    kv_desc,
    pe_desc,
    sm_scale_log2,
    D_LAT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr,
):
    c_kv = kv_desc.load([row0, 0])  # (BLOCK_N, D_LAT)
    k_pe = pe_desc.load([row0, D_LAT])  # (BLOCK_N, D_PE)
    c_kv = c_kv.to(q_lat.dtype)  # fp32 under the interpreter (its bf16 dot is not exact)
    k_pe = k_pe.to(q_pe.dtype)
    if MASKED:
        mask_t = tile_start + tl.arange(0, BLOCK_N) < limit
        c_kv = tl.where(mask_t[:, None], c_kv, 0.0)  # rows past the length may hold NaN
    scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))  # (BLOCK_H, N)
    scores = scores * sm_scale_log2
    if MASKED:
        scores = tl.where(mask_t[None, :], scores, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(scores, axis=1))
    alpha = tl.exp2(m_i - m_new)
    probs = tl.exp2(scores - m_new[:, None])
    l_i = l_i * alpha + tl.sum(probs, axis=1)
    acc = acc * alpha[:, None] + tl.dot(probs.to(c_kv.dtype), c_kv)
    return m_new, l_i, acc


@triton.jit
def split_v5(
    q_lat_ptr,
    q_pe_ptr,
    kv_desc,
    pe_desc,
    block_table_ptr,
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
    stride_bt_b,
    D_LAT: tl.constexpr,
    D_PE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
    PAGED: tl.constexpr,
    INTERLEAVE: tl.constexpr,
    WAIT_FOR_PREVIOUS: tl.constexpr,
    USE_PDL: tl.constexpr,
    GDC: tl.constexpr,
):
    head_group = tl.program_id(0)
    split = tl.program_id(1)
    seq = tl.program_id(2)
    if WAIT_FOR_PREVIOUS:
        gdc_wait()
    if USE_PDL:
        gdc_launch_dependents()
    seq_len = tl.load(lengths_ptr + seq)
    if INTERLEAVE:
        start = split * BLOCK_N
        end = seq_len
        stride = num_splits * BLOCK_N
    else:
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
    if not GDC:
        q_lat = q_lat.to(tl.float32)
        q_pe = q_pe.to(tl.float32)
    m_i = tl.full([BLOCK_H], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_H], dtype=tl.float32)
    acc = tl.zeros([BLOCK_H, D_LAT], dtype=tl.float32)
    whole_end = (seq_len // BLOCK_N) * BLOCK_N
    for tile_start in range(start, tl.minimum(end, whole_end), stride):
        if PAGED:
            page = tl.load(block_table_ptr + seq * stride_bt_b + tile_start // PAGE_SIZE)
            row0 = page * PAGE_SIZE + tile_start % PAGE_SIZE
        else:
            row0 = seq * capacity + tile_start
        m_i, l_i, acc = _tile(
            q_lat,
            q_pe,
            m_i,
            l_i,
            acc,
            tile_start,
            end,
            row0,
            kv_desc,
            pe_desc,
            sm_scale_log2,
            D_LAT,
            BLOCK_N,
            MASKED=False,
        )
    owns_ragged = (whole_end >= start) & (whole_end < end) & ((whole_end - start) % stride == 0)
    if owns_ragged:
        if PAGED:
            page = tl.load(block_table_ptr + seq * stride_bt_b + whole_end // PAGE_SIZE)
            row0 = page * PAGE_SIZE + whole_end % PAGE_SIZE
        else:
            row0 = seq * capacity + whole_end
        m_i, l_i, acc = _tile(
            q_lat,
            q_pe,
            m_i,
            l_i,
            acc,
            whole_end,
            end,
            row0,
            kv_desc,
            pe_desc,
            sm_scale_log2,
            D_LAT,
            BLOCK_N,
            MASKED=True,
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
    block_h,
    block_n,
    num_warps,
    num_stages,
    interleave,
    launch_early=True,
    block_table=None,
):
    """Dense cache (B, capacity, 576) or paged pool (pages, page_size, 576), bf16."""
    batch, heads, _ = q_lat.shape
    head_groups = triton.cdiv(heads, block_h)
    out = torch.empty_like(q_lat)
    lse = torch.empty((batch, heads), device=q_lat.device, dtype=torch.float32)
    part_out = torch.empty(
        (batch, heads, num_splits, 512), device=q_lat.device, dtype=torch.float32
    )
    part_lse = torch.empty((batch, heads, num_splits), device=q_lat.device, dtype=torch.float32)
    rows = cache.view(-1, 576)
    kv_desc = TensorDescriptor(rows, list(rows.shape), [576, 1], [block_n, 512])
    pe_desc = TensorDescriptor(rows, list(rows.shape), [576, 1], [block_n, 64])
    paged = block_table is not None
    split_v5[(head_groups, num_splits, batch)](
        q_lat,
        q_pe,
        kv_desc,
        pe_desc,
        block_table if paged else lengths,
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
        block_table.stride(0) if paged else 0,
        D_LAT=512,
        D_PE=64,
        BLOCK_H=block_h,
        BLOCK_N=block_n,
        PAGE_SIZE=cache.shape[1] if paged else 1,
        PAGED=paged,
        INTERLEAVE=interleave,
        WAIT_FOR_PREVIOUS=launch_early and GDC,
        USE_PDL=GDC,
        GDC=GDC,
        num_warps=num_warps,
        num_stages=num_stages,
        **({"launch_pdl": True} if launch_early and GDC else {}),
    )
    block_s = triton.next_power_of_2(num_splits)
    block_d = combine_block_d(num_splits)
    _combine_kernel[(batch * heads, 512 // block_d)](
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
        USE_PDL=GDC,
        num_warps=4,
        **({"launch_pdl": True} if GDC else {}),
    )
    return out, lse
