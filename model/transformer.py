"""The MLA decoder: embeddings, N × (MLA attention + SwiGLU MLP), final norm, LM head.

Module names mirror transformers' DeepseekV3ForCausalLM (`model.layers.0.self_attn.
kv_b_proj`, `lm_head` …), so our state dict *is* the Hugging Face checkpoint and
export needs no name map (see hf.py). Dense only: every layer has the same MLP.
"""

from __future__ import annotations

import contextlib
from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import nn

from infinitecontext.model.attention import MLAttention
from infinitecontext.model.cache import LatentKVCache
from infinitecontext.model.config import MLAConfig
from infinitecontext.model.loss import linear_cross_entropy
from infinitecontext.model.norm import RMSNorm
from infinitecontext.model.rope import cos_sin, inv_frequencies


class SwiGLU(nn.Module):
    def __init__(self, cfg: MLAConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: MLAConfig, layer_index: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = MLAttention(cfg, layer_index)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        positions: torch.Tensor,
        cache: LatentKVCache | None,
        absorb: bool,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, positions, cache, absorb)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """transformers' `DeepseekV3Model`: everything but the LM head."""

    def __init__(self, cfg: MLAConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MLATransformer(nn.Module):
    def __init__(self, cfg: MLAConfig) -> None:
        super().__init__()
        self.config = cfg
        self.model = Decoder(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        inv_freq, self.rope_attention_factor = inv_frequencies(cfg)
        self.inv_freq: torch.Tensor
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _apply(self, fn: Any, recurse: bool = True) -> MLATransformer:
        # Keep the RoPE frequencies in fp32 whatever dtype the weights move to: in bf16,
        # positions in the tens of thousands land whole rotations off.
        before = self.inv_freq
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32:
            kept = self.inv_freq if before.is_meta else before
            self.inv_freq = kept.to(device=self.inv_freq.device, dtype=torch.float32)
        return self

    def init_weights(self, seed: int | None = None) -> None:
        """Normal(0, initializer_range) for linears and embeddings, ones for norms (as HF)."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.config.initializer_range
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear | nn.Embedding):
                    noise = torch.randn(module.weight.shape, generator=generator) * std
                    module.weight.copy_(noise)
                elif isinstance(module, RMSNorm):
                    module.weight.fill_(1.0)

    @overload
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor: ...

    @overload
    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Training / scoring, tokens (B, T) at positions 0..T-1: the logits (B, T, V); or,
        given next-token `targets` (B, T) and optional per-token `weights`, the weighted
        mean cross-entropy and the argmax predictions (B, T) without ever holding the logits
        (`_loss`). Both go through this method so that FSDP's forward hooks gather the
        LM head's weight first."""
        if targets is not None:
            return self._loss(input_ids, targets, weights)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self._hidden(input_ids, positions.expand_as(input_ids), cache=None, absorb=False)
        return self.lm_head(hidden)  # (B, T, V)

    def _loss(
        self, input_ids: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self._hidden(input_ids, positions.expand_as(input_ids), cache=None, absorb=False)
        loss, predictions = linear_cross_entropy(
            hidden.flatten(0, 1),
            self.lm_head.weight,
            targets.flatten(),
            weights.flatten() if weights is not None else None,
        )
        return loss, predictions.view_as(targets)

    def prefill(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, cache: LatentKVCache
    ) -> torch.Tensor:
        """Right-padded prompts (B, T) of `lengths` tokens each → logits (B, T, V).

        Runs the up-projected path and fills the cache from position 0; the entries
        past each length are padding that the next decode steps overwrite.
        """
        cache.check_room(input_ids.shape[1] - 1)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self._hidden(input_ids, positions.expand_as(input_ids), cache, absorb=False)
        logits = self.lm_head(hidden)
        cache.lengths.copy_(lengths)
        return logits

    def decode(
        self,
        input_ids: torch.Tensor,
        cache: LatentKVCache,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Append tokens (B, T) to the cache and return their logits (B, T, V); absorbed path.

        By default the tokens go right after each sequence's cached tokens
        (`cache.lengths` + 0..T-1), checked against the cache's room with one host sync.
        Explicit `positions` (B, T) skip that check and never sync with the host, so a
        one-token step (T = 1) can be captured in a CUDA graph (`graphs.CudaGraphDecoder`);
        the caller guarantees positions < `cache.max_len`. Either way the cache then holds
        each sequence up to its last new position: `cache.lengths = positions[:, -1] + 1`.
        """
        if positions is None:
            steps = torch.arange(input_ids.shape[1], device=input_ids.device)
            positions = cache.lengths[:, None].long() + steps  # (B, T)
            cache.check_room(int(positions.max()))  # one host sync per step, not per layer
        logits = self.lm_head(self._hidden(input_ids, positions, cache, absorb=True))
        cache.lengths.copy_(positions[:, -1] + 1)
        return logits

    def _hidden(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: LatentKVCache | None,
        absorb: bool,
    ) -> torch.Tensor:
        """The final norm's output (B, T, D): what the LM head reads."""
        cos, sin = cos_sin(positions, self.inv_freq, self.rope_attention_factor)  # (B, T, R/2)
        x = self.model.embed_tokens(input_ids)  # (B, T, D)
        with cache.step(positions) if cache is not None else contextlib.nullcontext():
            for block in self.model.layers:
                x = block(x, cos, sin, positions, cache, absorb)
        return self.model.norm(x)

    def new_cache(
        self, batch_size: int, max_len: int, dtype: torch.dtype | None = None
    ) -> LatentKVCache:
        dtype = dtype or self.lm_head.weight.dtype
        device = self.lm_head.weight.device
        return LatentKVCache(self.config, batch_size, max_len, dtype=dtype, device=device)


def build(cfg: MLAConfig, seed: int | None = 0, device: str = "cpu") -> MLATransformer:
    """A randomly initialised model on `device`, built on the meta device first."""
    with torch.device("meta"):
        model = MLATransformer(cfg)
    model.to_empty(device=device)
    inv_freq, _ = inv_frequencies(cfg)
    model.inv_freq = inv_freq.to(device)
    model.init_weights(seed)
    return model
