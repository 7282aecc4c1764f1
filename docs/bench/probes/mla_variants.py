"""One-off variants of the MLA split kernel (dense bf16 cache only) for an H100 A/B.

Flags (constexpr):
  INTERLEAVE  program s reads tiles s, s + S, s + 2S, … instead of one contiguous chunk
  FUSED       no combine kernel: every program writes its partial, then waits at a grid
              barrier (atomic counter; all programs are resident: one wave) and merges one
              slice of the output itself
  EVICT       eviction_policy="evict_first" on the cache loads (streamed once)
  STAMPS      record %globaltimer at the program's start and end, and %smid
"""
# ruff: noqa

import torch
import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents

from infinitecontext.kernels.mla_decode import _combine_kernel, combine_block_d


@triton.jit
def _now():
    return tl.inline_asm_elementwise(
        "mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1
    )


@triton.jit
def _smid():
    return tl.inline_asm_elementwise(
        "mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=False, pack=1
    )


@triton.jit
def split_variant(
    q_lat_ptr,
    q_pe_ptr,
    cache_ptr,
    lengths_ptr,
    part_out_ptr,
    part_lse_ptr,
    out_ptr,
    lse_ptr,
    counter_ptr,
    stamps_ptr,
    sm_scale_log2,
    heads,
    num_splits,
    stride_q_b,
    stride_q_h,
    stride_pe_b,
    stride_pe_h,
    stride_c_outer,
    stride_c_tok,
    stride_o_b,
    stride_o_h,
    D_LAT: tl.constexpr,
    D_PE: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_N: tl.constexpr,
    INTERLEAVE: tl.constexpr,
    FUSED: tl.constexpr,
    EVICT: tl.constexpr,
    STAMPS: tl.constexpr,
    USE_PDL: tl.constexpr,
    COMBINE_D: tl.constexpr,
    COMBINE_S: tl.constexpr,
):
    head_group = tl.program_id(0)
    split = tl.program_id(1)
    seq = tl.program_id(2)
    if STAMPS:
        t0 = _now()
    seq_len = tl.load(lengths_ptr + seq)
    tiles = tl.cdiv(seq_len, BLOCK_N)
    if INTERLEAVE == 1:
        start = split * BLOCK_N
        end = seq_len
        step = num_splits * BLOCK_N
    elif INTERLEAVE > 1:
        start = 0
        end = seq_len
        step = BLOCK_N
    else:
        start = (split * tiles // num_splits) * BLOCK_N
        end = tl.minimum(((split + 1) * tiles // num_splits) * BLOCK_N, seq_len)
        step = BLOCK_N
    if USE_PDL:
        gdc_launch_dependents()
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
    n_iter = tl.cdiv(tl.maximum(end - start, 0), step)
    if INTERLEAVE > 1:  # groups of INTERLEAVE tiles dealt round-robin to the programs
        n_iter = tl.cdiv(tl.maximum(tl.cdiv(tiles, INTERLEAVE) - split, 0), num_splits) * INTERLEAVE
    for it in range(0, n_iter):
        if INTERLEAVE > 1:
            tile_start = (
                (it // INTERLEAVE) * num_splits * INTERLEAVE + split * INTERLEAVE + it % INTERLEAVE
            ) * BLOCK_N
        else:
            tile_start = start + it * step
        offs_t = tile_start + tl.arange(0, BLOCK_N)
        mask_t = offs_t < tl.minimum(end, tile_start + BLOCK_N)
        rows = seq.to(tl.int64) * stride_c_outer + offs_t.to(tl.int64) * stride_c_tok
        if EVICT:
            c_kv = tl.load(
                cache_ptr + rows[:, None] + offs_d[None, :],
                mask=mask_t[:, None],
                other=0.0,
                eviction_policy="evict_first",
            )
            k_pe = tl.load(
                cache_ptr + rows[:, None] + D_LAT + offs_r[None, :],
                mask=mask_t[:, None],
                other=0.0,
                eviction_policy="evict_first",
            )
        else:
            c_kv = tl.load(
                cache_ptr + rows[:, None] + offs_d[None, :], mask=mask_t[:, None], other=0.0
            )
            k_pe = tl.load(
                cache_ptr + rows[:, None] + D_LAT + offs_r[None, :], mask=mask_t[:, None], other=0.0
            )
        scores = tl.dot(q_lat, tl.trans(c_kv)) + tl.dot(q_pe, tl.trans(k_pe))
        scores = tl.where(mask_t[None, :], scores * sm_scale_log2, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp2(m_i - m_new)
        probs = tl.exp2(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(probs, axis=1)
        acc = acc * alpha[:, None] + tl.dot(probs.to(c_kv.dtype), c_kv)
        m_i = m_new
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
        t1 = _now()
    if FUSED:
        # Grid barrier over the programs of this (sequence, head group).
        group = seq * tl.num_programs(0) + head_group
        tl.debug_barrier()
        old = tl.atomic_add(counter_ptr + group, 1, sem="acq_rel", scope="gpu")
        target = old - old % num_splits + num_splits
        seen = old + 1
        while seen < target:
            seen = tl.atomic_add(counter_ptr + group, 0, sem="acquire", scope="gpu")
        # This program merges column block `split % (D_LAT // COMBINE_D)` of head
        # `split // (D_LAT // COMBINE_D)` (one item per program: 16 heads × 8 blocks = 128).
        blocks = D_LAT // COMBINE_D
        head = head_group * BLOCK_H + split // blocks
        row = seq * heads + head
        offs_s = tl.arange(0, COMBINE_S)
        mask_s = offs_s < num_splits
        lse_all = tl.load(
            part_lse_ptr + row * num_splits + offs_s,
            mask=mask_s,
            other=float("-inf"),
            cache_modifier=".cg",
        )
        mx = tl.max(lse_all, axis=0)
        w = tl.exp2(lse_all - mx)
        lsum = tl.sum(w, axis=0)
        cols = (split % blocks) * COMBINE_D + tl.arange(0, COMBINE_D)
        parts = tl.load(
            part_out_ptr
            + (row.to(tl.int64) * num_splits + offs_s[:, None]) * D_LAT
            + cols[None, :],
            mask=mask_s[:, None],
            other=0.0,
            cache_modifier=".cg",
        )
        o = tl.sum(w[:, None] * parts, axis=0) / lsum
        tl.store(
            out_ptr + seq * stride_o_b + head * stride_o_h + cols, o.to(out_ptr.dtype.element_ty)
        )
        tl.store(
            lse_ptr + row, (mx + tl.log2(lsum)) * 0.6931471805599453, mask=(split % blocks) == 0
        )
    if STAMPS:
        t2 = _now()
        pid = (seq * num_splits + split) * tl.num_programs(0) + head_group
        tl.store(stamps_ptr + pid * 4 + 0, t0)
        tl.store(stamps_ptr + pid * 4 + 1, t1)
        tl.store(stamps_ptr + pid * 4 + 2, t2)
        tl.store(stamps_ptr + pid * 4 + 3, _smid().to(tl.int64))


_counters: dict[torch.device, torch.Tensor] = {}


def run(
    q_lat,
    q_pe,
    cache,
    lengths,
    scale,
    num_splits,
    *,
    interleave=0,
    fused=False,
    evict=False,
    stamps=None,
    block_h=16,
    block_n=32,
    num_warps=4,
    num_stages=3,
    use_pdl=True,
):
    batch, heads, _ = q_lat.shape
    interleave = int(interleave)
    head_groups = triton.cdiv(heads, block_h)
    out = torch.empty_like(q_lat)
    lse = torch.empty((batch, heads), device=q_lat.device, dtype=torch.float32)
    part_out = torch.empty(
        (batch, heads, num_splits, 512), device=q_lat.device, dtype=torch.float32
    )
    part_lse = torch.empty((batch, heads, num_splits), device=q_lat.device, dtype=torch.float32)
    counter = _counters.get(q_lat.device)
    if counter is None:
        counter = _counters[q_lat.device] = torch.zeros(
            4096, device=q_lat.device, dtype=torch.int32
        )
    if fused:
        assert block_h * 512 // 64 == num_splits, "fused probe: 128 splits, 64-column items"
    pdl = use_pdl and not fused
    split_variant[(head_groups, num_splits, batch)](
        q_lat,
        q_pe,
        cache,
        lengths,
        part_out,
        part_lse,
        out,
        lse,
        counter,
        stamps if stamps is not None else counter,
        scale * 1.4426950408889634,
        heads,
        num_splits,
        q_lat.stride(0),
        q_lat.stride(1),
        q_pe.stride(0),
        q_pe.stride(1),
        cache.stride(0),
        cache.stride(1),
        out.stride(0),
        out.stride(1),
        D_LAT=512,
        D_PE=64,
        BLOCK_H=block_h,
        BLOCK_N=block_n,
        INTERLEAVE=interleave,
        FUSED=fused,
        EVICT=evict,
        STAMPS=stamps is not None,
        USE_PDL=pdl,
        COMBINE_D=64,
        COMBINE_S=triton.next_power_of_2(num_splits),
        num_warps=num_warps,
        num_stages=num_stages,
    )
    if not fused:
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
            BLOCK_S=triton.next_power_of_2(num_splits),
            USE_PDL=pdl,
            num_warps=4,
            **({"launch_pdl": True} if pdl else {}),
        )
    return out, lse
