"""PyTorch reference for MLA decode over the latent cache: the specification of mla_decode.py.

Absorbed multi-head latent attention (DeepSeek-V2 §2.1.3; DeepSeek-V3 `inference/model.py`,
``attn_impl="absorb"``): every head attends to the same cached rows
``[c_KV (512) | k_pe (64)]``; the score of head h on token t is
``q_lat[h]·c_KV[t] + q_pe[h]·k_pe[t]`` times the softmax scale, and the output is the
softmax-weighted sum of the ``c_KV`` rows (``W_UV`` is applied by the caller).

Plain PyTorch, autograd-capable, any device and dtype. The Triton kernel must match it.
"""

from __future__ import annotations

import torch
from torch import Tensor

KV_LORA_RANK = 512
ROPE_DIM = 64
LATENT_DIM = KV_LORA_RANK + ROPE_DIM
PAGE_SIZE = 64
FP8_MAX = 448.0  # largest finite float8_e4m3fn


def _capturing_graph(lengths: Tensor) -> bool:
    return lengths.is_cuda and torch.cuda.is_current_stream_capturing()


def gather_latent(
    cache: Tensor,
    lengths: Tensor,
    block_table: Tensor | None = None,
    cache_scale: Tensor | None = None,
) -> Tensor:
    """The cache as a dense (B, L_max, 576) tensor in float32 (dequantised if fp8).

    Rows past a sequence's length are whatever the cache holds; callers mask them.
    L_max is `lengths.max()`, read on the host, except while a CUDA graph is being captured,
    where that read is not allowed: then it is the cache's capacity (same result, since the
    extra rows are masked; the same work when the lengths fill the cache).
    """
    batch = lengths.shape[0]
    if _capturing_graph(lengths):
        page_size = cache.shape[1]
        max_len = page_size * block_table.shape[1] if block_table is not None else page_size
    else:
        max_len = int(lengths.max().item()) if batch else 0
    if block_table is None:
        rows = cache[:batch, :max_len]  # (B, L, 576)
        scales = None if cache_scale is None else cache_scale[:batch, :max_len]
    else:
        page_size = cache.shape[1]
        num_pages = -(-max_len // page_size)
        pages = block_table[:, :num_pages].long()  # (B, P)
        rows = cache[pages].reshape(batch, num_pages * page_size, -1)[:, :max_len]
        scales = None
        if cache_scale is not None:
            scales = cache_scale[pages].reshape(batch, -1)[:, :max_len]
    rows = rows.float()
    if scales is not None:
        rows = rows * scales.float().unsqueeze(-1)
    return rows


def mla_decode_ref(
    q_lat: Tensor,
    q_pe: Tensor,
    cache: Tensor,
    lengths: Tensor,
    softmax_scale: float,
    block_table: Tensor | None = None,
    cache_scale: Tensor | None = None,
    compute_dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Absorbed MLA decode: out (B, H, 512) in q's dtype and lse (B, H) in float32.

    `compute_dtype` float64 gives the tests' ground truth. A sequence of length 0 gives
    out 0 and lse −inf.
    """
    latent = gather_latent(cache, lengths, block_table, cache_scale).to(compute_dtype)
    positions = torch.arange(latent.shape[1], device=lengths.device)
    valid = positions[None, :] < lengths[:, None]  # (B, L)
    latent = latent.masked_fill(~valid[..., None], 0.0)  # rows past the length may hold NaN
    c_kv, k_pe = latent[..., :KV_LORA_RANK], latent[..., KV_LORA_RANK:]
    scores = torch.einsum("bhc,btc->bht", q_lat.to(compute_dtype), c_kv)
    scores = scores + torch.einsum("bhr,btr->bht", q_pe.to(compute_dtype), k_pe)
    scores = scores * softmax_scale  # (B, H, L)
    scores = scores.masked_fill(~valid[:, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (B, H)
    probs = torch.exp(scores - lse.unsqueeze(-1).clamp_min(torch.finfo(compute_dtype).min))
    out = torch.einsum("bht,btc->bhc", probs, c_kv)
    return out.to(q_lat.dtype), lse.float()


def quantize_latent_fp8(cache: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token symmetric fp8 (e4m3) quantisation of a latent cache (…, T, 576).

    One float32 scale per token row (amax / 448), shared by c_KV and k_pe, so the kernel
    folds it into the scores and probabilities instead of dequantising the tile.
    """
    amax = cache.float().abs().amax(dim=-1).clamp_min(1e-12)  # (…, T)
    scale = amax / FP8_MAX
    quantized = (cache.float() / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX)
    return quantized.to(torch.float8_e4m3fn), scale


def decompress_attention(
    q_nope: Tensor,
    q_pe: Tensor,
    cache: Tensor,
    w_uk: Tensor,
    w_uv: Tensor,
    softmax_scale: float,
) -> Tensor:
    """The naive decode path: up-project the whole latent cache to per-head K and V every step.

    q_nope (B, H, 128), q_pe (B, H, 64), cache (B, L, 576) with every row valid,
    w_uk/w_uv (H, 128, 512). Returns (B, H, 128) after W_UV, as HF's non-absorbed
    DeepseekV3Attention computes it. Used as the benchmark baseline.
    """
    c_kv, k_pe = cache[..., :KV_LORA_RANK], cache[..., KV_LORA_RANK:]
    k_nope = torch.einsum("btc,hdc->bhtd", c_kv, w_uk)  # (B, H, L, 128)
    value = torch.einsum("btc,hdc->bhtd", c_kv, w_uv)  # (B, H, L, 128)
    heads = q_nope.shape[1]
    k_rope = k_pe.unsqueeze(1).expand(-1, heads, -1, -1)  # (B, H, L, 64)
    key = torch.cat([k_nope, k_rope], dim=-1)  # (B, H, L, 192)
    query = torch.cat([q_nope, q_pe], dim=-1).unsqueeze(2)  # (B, H, 1, 192)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, scale=softmax_scale)
    return out.squeeze(2)
