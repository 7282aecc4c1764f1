"""Batched generation over the latent cache: greedy, temperature and top-p sampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from infinitecontext.model.graphs import CudaGraphDecoder
from infinitecontext.model.transformer import MLATransformer


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 32
    temperature: float = 0.0
    """0 means greedy."""
    top_p: float = 1.0
    stop_tokens: tuple[int, ...] = ()
    seed: int | None = None


@torch.no_grad()
def generate(
    model: MLATransformer,
    prompts: Sequence[Sequence[int]],
    sampling: Sampling = Sampling(),
    cuda_graph: bool = False,
) -> list[list[int]]:
    """New tokens for each prompt (prompts may differ in length); stops are not included.

    cuda_graph=True replays each decode step from a CUDA graph when the model is on a CUDA
    device with the Triton MLA kernel (`CudaGraphDecoder`); otherwise, and on CPU, the
    steps run eagerly. The tokens are the same either way.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    device = model.lm_head.weight.device
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.int32, device=device)
    cache = model.new_cache(len(prompts), int(lengths.max()) + sampling.max_new_tokens)
    generator = (
        torch.Generator(device).manual_seed(sampling.seed) if sampling.seed is not None else None
    )

    logits = model.prefill(_right_pad(prompts, model.config.pad_token_id, device), lengths, cache)
    last = logits[torch.arange(len(prompts)), lengths.long() - 1]  # (B, V)
    outputs: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    # The cache has room for every step, so positions need no per-step check on the host.
    decoder = CudaGraphDecoder(model, cache, capture="auto" if cuda_graph else False)
    positions = lengths.long()  # (B,) where each sequence's next token goes
    stops = torch.tensor(sampling.stop_tokens, dtype=torch.long, device=device)
    for step in range(sampling.max_new_tokens):
        token = sample(last, sampling.temperature, sampling.top_p, generator)  # (B,)
        done |= torch.isin(token, stops)
        for b in (~done).nonzero().flatten().tolist():
            outputs[b].append(int(token[b]))
        if bool(done.all()) or step == sampling.max_new_tokens - 1:
            break
        last = decoder(token, positions)[:, 0]
        positions = positions + 1
    return outputs


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of logits (B, V)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = (logits.float() / temperature).softmax(dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always the first token).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _right_pad(prompts: Sequence[Sequence[int]], pad: int, device: torch.device) -> torch.Tensor:
    width = max(len(p) for p in prompts)
    rows = [list(p) + [pad] * (width - len(p)) for p in prompts]
    return torch.tensor(rows, dtype=torch.long, device=device)
