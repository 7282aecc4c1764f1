"""Session-5 decomposition of the shipped 16-head call (dense bf16): what the memory pipeline
alone costs at this size.

`split_v7` is the shipped split kernel's loop (interleaved chunks, every tile masked, three
stages, launched early) with a COMPUTE flag: True runs the shipped tile math, False only
the two dots (the same loads and shared-memory pipeline, no softmax). `run` can skip
the combine kernel. `read_stream` times the bandwidth kernel of `bench.py` over a buffer the
size of the cache.
"""
# ruff: noqa

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

from infinitecontext.kernels.mla_decode import _attend_tile, _combine_kernel, combine_block_d


@triton.jit
def split_v7(
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
    D_LAT: tl.constexpr,
    D_PE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    COMPUTE: tl.constexpr,
    TRIGGER: tl.constexpr,
):
    head_group = tl.program_id(0)
    split = tl.program_id(1)
    seq = tl.program_id(2)
    gdc_wait()
    if TRIGGER:
        gdc_launch_dependents()
    seq_len = tl.load(lengths_ptr + seq)
    start = split * BLOCK_N
    end = seq_len
    stride = num_splits * BLOCK_N
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
    for tile_start in range(start, end, stride):
        if COMPUTE:
            m_i, l_i, acc = _attend_tile(
                q_lat,
                q_pe,
                m_i,
                l_i,
                acc,
                tile_start,
                end,
                seq,
                cache_ptr,
                cache_ptr,
                cache_ptr,
                sm_scale_log2,
                stride_c_outer,
                stride_c_tok,
                0,
                0,
                0,
                D_LAT,
                D_PE,
                BLOCK_N,
                1,
                False,
                False,
                False,
                MASKED=True,
            )
        else:
            offs_t = tile_start + tl.arange(0, BLOCK_N)
            rows = seq.to(tl.int64) * stride_c_outer + offs_t.to(tl.int64) * stride_c_tok
            mask_t = offs_t < end
            c_kv = tl.load(
                cache_ptr + rows[:, None] + offs_d[None, :], mask=mask_t[:, None], other=0.0
            )
            k_pe = tl.load(
                cache_ptr + rows[:, None] + D_LAT + offs_r[None, :], mask=mask_t[:, None], other=0.0
            )
            # The dots keep the tiles on the shipped shared-memory pipeline; no softmax.
            scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))
            acc += tl.dot((scores * sm_scale_log2).to(c_kv.dtype), c_kv)
    if COMPUTE:
        out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
        lse_log2 = m_i + tl.log2(l_i)
    else:
        out = acc
        lse_log2 = l_i
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
    compute=True,
    combine=True,
    block_n=32,
    num_stages=3,
    num_warps=4,
):
    batch, heads, _ = q_lat.shape
    out = torch.empty_like(q_lat)
    lse = torch.empty((batch, heads), device=q_lat.device, dtype=torch.float32)
    part_out = torch.empty(
        (batch, heads, num_splits, 512), device=q_lat.device, dtype=torch.float32
    )
    part_lse = torch.empty((batch, heads, num_splits), device=q_lat.device, dtype=torch.float32)
    split_v7[(1, num_splits, batch)](
        q_lat,
        q_pe,
        cache,
        lengths,
        part_out,
        part_lse,
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
        BLOCK_N=block_n,
        COMPUTE=compute,
        TRIGGER=combine,
        num_warps=num_warps,
        num_stages=num_stages,
        launch_pdl=True,
    )
    if combine:
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
            USE_PDL=True,
            num_warps=4,
            launch_pdl=True,
        )
    return out, lse
