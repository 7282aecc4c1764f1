import pytest
import torch

from infinitecontext.model.config import preset
from infinitecontext.model.memory import kv_bytes_per_token, memory_report, mla_bytes_per_token
from infinitecontext.model.transformer import MLATransformer

KIB, GIB = 1024, 1024**3


@pytest.mark.parametrize(
    ("name", "dtype"), [("tiny", torch.bfloat16), ("1b", torch.bfloat16), ("small", torch.float32)]
)
def test_cache_bytes_per_token_measured_from_tensors_equals_formula(name, dtype):
    cfg = preset(name)
    with torch.device("meta"):
        model = MLATransformer(cfg)
    cache = model.new_cache(batch_size=2, max_len=8, dtype=dtype)
    measured = cache.latent.numel() * cache.latent.element_size() // (2 * 8)
    assert measured == cache.bytes_per_token()
    assert measured == mla_bytes_per_token(cfg, dtype.itemsize)


def test_one_b_preset_memory_figures():
    cfg = preset("1b")
    assert mla_bytes_per_token(cfg) == 27 * KIB  # 24 layers × 576 × 2 B
    assert mla_bytes_per_token(cfg) * 131072 == pytest.approx(3.375 * GIB)
    assert mla_bytes_per_token(cfg) * 2**20 == 27 * GIB
    assert kv_bytes_per_token(cfg, kv_heads=16) == 192 * KIB
    report = memory_report(cfg, 131072)
    assert [line.name for line in report.lines] == [
        "MLA (latent)",
        "MHA (16 KV heads)",
        "GQA (8 KV heads)",
        "GQA (4 KV heads)",
    ]


def test_rope_frequencies_stay_fp32_when_the_weights_move_to_bf16():
    from infinitecontext.model.rope import inv_frequencies
    from infinitecontext.model.transformer import build

    cfg = preset("tiny")
    model = build(cfg, seed=0).to(torch.bfloat16)
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.inv_freq.dtype == torch.float32
    torch.testing.assert_close(model.inv_freq, inv_frequencies(cfg)[0])
