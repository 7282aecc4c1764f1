"""The prefill (up-projected) and decode (absorbed, latent cache) paths agree."""

import pytest
import torch

from infinitecontext.model.config import preset
from infinitecontext.model.transformer import build

CONFIGS = {
    "tiny": preset("tiny"),
    "tiny-q-lora": preset("tiny").replace(q_lora_rank=96),
    "tiny-yarn": preset("tiny").with_yarn(4.0, 16),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_token_by_token_matches_prefill(name):
    cfg = CONFIGS[name]
    torch.manual_seed(0)  # the inputs below; fixed so a failure reproduces
    model = build(cfg, seed=0).float().eval()
    lengths = [13, 5, 1]  # mixed prompt lengths in one batch
    total = 20
    ids = torch.randint(0, cfg.vocab_size, (len(lengths), total))
    with torch.no_grad():
        reference = model(ids)  # (B, total, V): every position, no cache
        cache = model.new_cache(len(lengths), total, torch.float32)
        prompt_lengths = torch.tensor(lengths, dtype=torch.int32)
        prefill = model.prefill(ids[:, : max(lengths)], prompt_lengths, cache)
        for b, n in enumerate(lengths):
            torch.testing.assert_close(prefill[b, :n], reference[b, :n], atol=1e-5, rtol=1e-5)
        # Sequences advance together from different positions: feed each its next token.
        for step in range(total - max(lengths)):
            positions = prompt_lengths + step
            next_ids = ids[torch.arange(len(lengths)), positions.long()][:, None]
            logits = model.decode(next_ids, cache)[:, 0]
            expected = reference[torch.arange(len(lengths)), positions.long()]
            torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_decode_of_a_chunk_matches_prefill():
    cfg = CONFIGS["tiny"]
    model = build(cfg, seed=3).float().eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 12))
    with torch.no_grad():
        reference = model(ids)
        cache = model.new_cache(2, 12, torch.float32)
        model.prefill(ids[:, :4], torch.tensor([4, 4], dtype=torch.int32), cache)
        chunk = model.decode(ids[:, 4:], cache)  # 8 tokens at once, causal inside the chunk
    torch.testing.assert_close(chunk, reference[:, 4:], atol=1e-5, rtol=1e-5)


def test_absorbed_path_without_cache_is_an_error():
    cfg = CONFIGS["tiny"]
    model = build(cfg, seed=0)
    attn = model.model.layers[0].self_attn
    x = torch.zeros(1, 1, cfg.hidden_size)
    cos = sin = torch.zeros(1, 1, cfg.qk_rope_head_dim // 2)
    with pytest.raises(ValueError, match="pass one"):
        attn(x, cos, sin, torch.zeros(1, 1, dtype=torch.long), cache=None, absorb=True)


def test_cache_overflow_is_reported():
    cfg = CONFIGS["tiny"]
    model = build(cfg, seed=0).eval()
    cache = model.new_cache(1, 4, torch.float32)
    with torch.no_grad(), pytest.raises(IndexError, match="beyond cache length 4"):
        model.prefill(torch.zeros(1, 5, dtype=torch.long), torch.tensor([5]), cache)
