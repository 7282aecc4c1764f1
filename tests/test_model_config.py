import pytest
import torch

from infinitecontext.model.config import (
    PRESETS,
    ConfigError,
    MLAConfig,
    YarnScaling,
    count_parameters,
    preset,
)
from infinitecontext.model.transformer import MLATransformer


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"qk_rope_head_dim": 63}, "qk_rope_head_dim must be even"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
        ({"num_attention_heads": -4}, "num_attention_heads must be a positive integer"),
        ({"kv_lora_rank": 1.5}, "kv_lora_rank must be a positive integer"),
        ({"q_lora_rank": 0}, "q_lora_rank must be a positive integer or None"),
        ({"yarn": YarnScaling(factor=0.5)}, "yarn.factor must be >= 1"),
        ({"yarn": YarnScaling(factor=2, beta_fast=1, beta_slow=32)}, "beta_fast"),
        ({"rms_norm_eps": 0.0}, "rms_norm_eps must be positive"),
        ({"eos_token_id": 5000, "vocab_size": 1000}, "eos_token_id=5000 is outside"),
    ],
)
def test_invalid_configs_name_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        MLAConfig(**changes)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known presets: 1b, small, tiny"):
        preset("huge")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_formula_matches_the_built_module(name):
    cfg = PRESETS[name]
    with torch.device("meta"):
        model = MLATransformer(cfg)
    assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())


def test_low_rank_query_path_is_counted_too():
    cfg = preset("tiny").replace(q_lora_rank=96)
    with torch.device("meta"):
        model = MLATransformer(cfg)
    assert count_parameters(cfg) == sum(p.numel() for p in model.parameters())


def test_presets_keep_vllm_mla_shape_and_sizes():
    for cfg in PRESETS.values():
        assert (cfg.kv_lora_rank, cfg.qk_rope_head_dim) == (512, 64)
    assert PRESETS["small"].qk_nope_head_dim + PRESETS["small"].qk_rope_head_dim == 128
    assert 10e6 <= count_parameters(PRESETS["small"]) < 100e6
    one_b = PRESETS["1b"]
    assert (one_b.num_hidden_layers, one_b.hidden_size, one_b.num_attention_heads) == (24, 2048, 16)
    assert 1.0e9 <= count_parameters(one_b) <= 1.2e9


def test_yarn_extension_scales_softmax_by_mscale_squared():
    base = preset("tiny")
    extended = base.with_yarn(4.0, 2048)
    assert extended.max_position_embeddings == 8192
    mscale = 0.1 * torch.log(torch.tensor(4.0)).item() + 1
    assert extended.softmax_scale == pytest.approx(base.softmax_scale * mscale**2)


def test_readme_states_the_exact_parameter_counts():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for cfg in PRESETS.values():
        assert f"{count_parameters(cfg):,}" in readme
