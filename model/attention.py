"""Multi-Head Latent Attention (DeepSeek-V2/V3, arXiv 2405.04434 §2.1).

Keys and values are compressed into one latent per token, c_KV = norm(W_DKV·x)
(kv_lora_rank wide), plus one rotary key k_pe shared by all heads. Two ways to attend
give the same result:

- prefill / training: up-project the latent with kv_b_proj = [W_UK; W_UV] into
  per-head keys and values and run causal SDPA;
- decode: keep only (c_KV, k_pe) in the cache and absorb W_UK into the query
  (q_lat = q_nope·W_UK, kv_lora_rank wide) and W_UV into the output, so attention runs
  directly over the latent cache: scores = q_lat·c_KVᵀ + q_pe·k_peᵀ, out = p·c_KV.

Parameter names are those of transformers' DeepseekV3Attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from infinitecontext.kernels import dispatch
from infinitecontext.model.cache import LatentKVCache
from infinitecontext.model.config import MLAConfig
from infinitecontext.model.norm import RMSNorm
from infinitecontext.model.rope import apply_rope


class MLAttention(nn.Module):
    def __init__(self, cfg: MLAConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.n_heads = cfg.num_attention_heads
        self.nope_dim, self.rope_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
        self.v_dim, self.kv_lora_rank = cfg.v_head_dim, cfg.kv_lora_rank
        self.softmax_scale = cfg.softmax_scale
        d, h = cfg.hidden_size, cfg.num_attention_heads
        self.q_lora_rank = cfg.q_lora_rank
        if cfg.q_lora_rank is None:
            self.q_proj = nn.Linear(d, h * cfg.qk_head_dim, bias=False)
        else:
            self.q_a_proj = nn.Linear(d, cfg.q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, cfg.rms_norm_eps)
            self.q_b_proj = nn.Linear(cfg.q_lora_rank, h * cfg.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(d, cfg.latent_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, cfg.rms_norm_eps)
        self.kv_b_proj = nn.Linear(cfg.kv_lora_rank, h * (self.nope_dim + self.v_dim), bias=False)
        self.o_proj = nn.Linear(h * self.v_dim, d, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor,
        cache: LatentKVCache | None = None,
        absorb: bool = False,
    ) -> torch.Tensor:
        """x (B, T, D) at positions (B, T); cos/sin (B, T, R/2). Returns (B, T, D).

        With a cache, this step's latents are written at `positions` first. absorb=True
        attends over the cache (decode); otherwise over this step's tokens (prefill).
        """
        q_nope, q_pe = self._queries(x, cos, sin)
        c_kv, k_pe = self._latents(x, cos, sin)
        if cache is not None:
            cache.update(self.layer_index, positions, c_kv, k_pe)
        if absorb:
            if cache is None:
                raise ValueError("the absorbed (decode) path attends over a cache; pass one")
            out = self._attend_latent(q_nope, q_pe, cache.layer(self.layer_index), positions)
        else:
            out = self._attend_expanded(q_nope, q_pe, c_kv, k_pe)
        return self.o_proj(out.flatten(2))  # (B, T, H·v) → (B, T, D)

    def _queries(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.q_lora_rank is None:
            q = self.q_proj(x)
        else:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.unflatten(-1, (self.n_heads, -1))  # (B, T, H, nope + rope)
        q_nope, q_pe = q.split([self.nope_dim, self.rope_dim], dim=-1)
        return q_nope, apply_rope(q_pe, cos, sin)

    def _latents(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        c_kv, k_pe = self.kv_a_proj_with_mqa(x).split([self.kv_lora_rank, self.rope_dim], dim=-1)
        k_pe = apply_rope(k_pe[:, :, None, :], cos, sin)[:, :, 0]  # one key head: (B, T, R)
        return self.kv_a_layernorm(c_kv), k_pe  # (B, T, C), (B, T, R)

    def _attend_expanded(
        self, q_nope: torch.Tensor, q_pe: torch.Tensor, c_kv: torch.Tensor, k_pe: torch.Tensor
    ) -> torch.Tensor:
        """Causal attention over this step's tokens with per-head keys and values."""
        kv = self.kv_b_proj(c_kv).unflatten(-1, (self.n_heads, -1))  # (B, T, H, nope + v)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k_pe = k_pe[:, :, None, :].expand(-1, -1, self.n_heads, -1)
        q = torch.cat((q_nope, q_pe), dim=-1).transpose(1, 2)  # (B, H, T, nope + rope)
        k = torch.cat((k_nope, k_pe), dim=-1).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q, k, v.transpose(1, 2), is_causal=True, scale=self.softmax_scale
        )
        return out.transpose(1, 2)  # (B, T, H, v)

    def _attend_latent(
        self,
        q_nope: torch.Tensor,
        q_pe: torch.Tensor,
        latent: torch.Tensor,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        """Absorbed attention over the latent cache (B, S, C + R) up to each query's position."""
        w = self.kv_b_proj.weight.unflatten(0, (self.n_heads, -1))  # (H, nope + v, C)
        w_uk, w_uv = w[:, : self.nope_dim], w[:, self.nope_dim :]  # (H, nope, C), (H, v, C)
        q_lat = torch.einsum("bthd,hdc->bthc", q_nope, w_uk)  # (B, T, H, C)
        out_lat = latent_attention(q_lat, q_pe, latent, positions, self.softmax_scale)
        return torch.einsum("bthc,hvc->bthv", out_lat, w_uv)  # (B, T, H, v)


def latent_attention(
    q_lat: torch.Tensor,
    q_pe: torch.Tensor,
    latent: torch.Tensor,
    positions: torch.Tensor,
    softmax_scale: float,
) -> torch.Tensor:
    """Attention of absorbed queries over a latent cache; the decode kernel's reference.

    q_lat (B, T, H, C), q_pe (B, T, H, R), latent (B, S, C + R), positions (B, T):
    query t of sequence b sees cache entries 0..positions[b, t]. Returns (B, T, H, C).
    """
    if q_lat.shape[1] == 1:  # decode: one new token per sequence → the MLA decode kernel
        lengths = (positions[:, 0] + 1).to(torch.int32)  # (B,) cache entries each query sees
        out, _ = dispatch.mla_decode(
            q_lat[:, 0].contiguous(), q_pe[:, 0].contiguous(), latent, lengths, softmax_scale
        )
        return out.unsqueeze(1)  # (B, 1, H, C)
    c = q_lat.shape[-1]
    span = int(positions.max()) + 1  # no query looks past this entry
    cache_kv, cache_pe = latent[:, :span, :c], latent[:, :span, c:]
    scores = torch.einsum("bthc,bsc->bths", q_lat.float(), cache_kv.float())
    scores += torch.einsum("bthr,bsr->bths", q_pe.float(), cache_pe.float())
    visible = torch.arange(span, device=latent.device) <= positions[:, :, None, None]
    scores = scores.masked_fill(~visible, float("-inf")) * softmax_scale
    probs = scores.softmax(dim=-1)
    return torch.einsum("bths,bsc->bthc", probs, cache_kv.float()).to(q_lat.dtype)
