"""Our export loads in transformers' DeepseekV3ForCausalLM with the same logits, and back."""

import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
)

from infinitecontext.model import hf
from infinitecontext.model.config import ConfigError, preset
from infinitecontext.model.tokenizer import default_tokenizer, save_tokenizer
from infinitecontext.model.transformer import build

CONFIGS = {
    "tiny": preset("tiny"),
    "tiny-q-lora": preset("tiny").replace(q_lora_rank=96),
    "tiny-yarn": preset("tiny").with_yarn(4.0, 64),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_transformers_loads_our_export_with_identical_logits(name, tmp_path):
    torch.manual_seed(0)  # the inputs below; fixed so a failure reproduces
    ours = build(CONFIGS[name], seed=0).float().eval()
    hf.export(ours, tmp_path, dtype=torch.float32)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    assert type(theirs).__name__ == "DeepseekV3ForCausalLM"
    ids = torch.randint(0, ours.config.vocab_size, (2, 300))  # past YaRN's original length
    with torch.no_grad():
        diff = (ours(ids) - theirs(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_export_writes_the_deepseek_v3_layout(tmp_path):
    model = build(preset("tiny"), seed=0)
    save_tokenizer(default_tokenizer(1024), tmp_path / "tok", 2048)
    hf.export(model, tmp_path / "out", tokenizer_dir=tmp_path / "tok")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "deepseek_v3"
    assert config["architectures"] == ["DeepseekV3ForCausalLM"]
    assert config["first_k_dense_replace"] == config["num_hidden_layers"]
    assert config["tie_word_embeddings"] is False
    assert {"tokenizer.json", "tokenizer_config.json", "model.safetensors"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.pad_token_id == config["pad_token_id"]


def test_transformers_saved_model_imports_with_identical_logits(tmp_path):
    hf_config = DeepseekV3Config(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        q_lora_rank=64,
        kv_lora_rank=512,
        qk_nope_head_dim=32,
        qk_rope_head_dim=64,
        v_head_dim=32,
        first_k_dense_replace=2,
        n_routed_experts=1,
        max_position_embeddings=1024,
        pad_token_id=2,
    )
    theirs = DeepseekV3ForCausalLM(hf_config).float().eval()
    theirs.save_pretrained(tmp_path)
    ours = hf.load(tmp_path).eval()
    ids = torch.randint(0, 512, (3, 64))
    with torch.no_grad():
        diff = (ours(ids) - theirs(ids).logits).abs().max().item()
    assert diff < 1e-4


def test_mismatched_weights_are_named(tmp_path):
    hf.export(build(preset("tiny"), seed=0), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 640
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"mlp\.(gate|up|down)_proj\.weight has shape"):
        hf.load(tmp_path)


def test_moe_checkpoints_are_refused(tmp_path):
    raw = hf.to_hf_config(preset("tiny"))
    raw |= {"first_k_dense_replace": 1, "n_routed_experts": 8}
    with pytest.raises(ConfigError, match="MoE layers are not supported"):
        hf.from_hf_config(raw)


def test_missing_weights_file_is_reported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hf.to_hf_config(preset("tiny"))))
    with pytest.raises(ConfigError, match="no safetensors weights"):
        hf.load(tmp_path)
