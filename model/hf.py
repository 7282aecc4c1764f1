"""Hugging Face directory in the DeepseekV3 layout: export and import.

The directory holds `config.json` (`model_type: deepseek_v3`), `model.safetensors`
with transformers' parameter names, `generation_config.json` and the tokenizer files,
so `transformers.AutoModelForCausalLM` and vLLM load it unchanged. Our module names
already are transformers' names (transformer.py), so the "adapter" is the identity:
what this file checks is that every key and shape matches, both ways.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from infinitecontext.model.config import ConfigError, MLAConfig, YarnScaling
from infinitecontext.model.transformer import MLATransformer

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Keys that a checkpoint may hold but that we recompute from the config.
_RECOMPUTED = ("rotary_emb.inv_freq",)


def to_hf_config(cfg: MLAConfig, dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """transformers' DeepseekV3Config fields for a dense model (MoE switched off)."""
    if cfg.yarn.enabled:
        rope: dict[str, Any] = {"rope_type": "yarn", "rope_theta": cfg.rope_theta}
        rope |= dataclasses.asdict(cfg.yarn)
    else:
        rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_attention_heads,
        "q_lora_rank": cfg.q_lora_rank,
        "kv_lora_rank": cfg.kv_lora_rank,
        "qk_nope_head_dim": cfg.qk_nope_head_dim,
        "qk_rope_head_dim": cfg.qk_rope_head_dim,
        "v_head_dim": cfg.v_head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "initializer_range": cfg.initializer_range,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_parameters": rope,
        "rope_interleave": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        # Dense: MoE would start at layer `first_k_dense_replace`, i.e. never. transformers
        # rejects n_routed_experts=None, so it gets a small placeholder that is unused.
        "first_k_dense_replace": cfg.num_hidden_layers,
        "n_routed_experts": 1,
        "n_shared_experts": 1,
        "num_experts_per_tok": 1,
        "moe_intermediate_size": cfg.intermediate_size,
        "n_group": 1,
        "topk_group": 1,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }


def from_hf_config(raw: dict[str, Any]) -> MLAConfig:
    """MLAConfig from a DeepseekV3 config.json; rejects what our model cannot represent."""
    if raw.get("model_type") != "deepseek_v3":
        raise ConfigError(f"model_type must be 'deepseek_v3', got {raw.get('model_type')!r}")
    layers = raw["num_hidden_layers"]
    if raw.get("n_routed_experts") and raw.get("first_k_dense_replace", 0) < layers:
        raise ConfigError(
            "MoE layers are not supported: set first_k_dense_replace to the layer count"
        )
    if raw.get("attention_bias"):
        raise ConfigError("attention_bias=true is not supported (DeepSeek-V3 has no biases)")
    if raw.get("rope_interleave") is False:
        raise ConfigError(
            "rope_interleave=false is not supported; DeepSeek-V3 uses interleaved RoPE"
        )
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
    yarn = YarnScaling()
    if rope.get("rope_type", rope.get("type", "default")) == "yarn":
        fields = {f.name for f in dataclasses.fields(YarnScaling)}
        yarn = YarnScaling(**{k: v for k, v in rope.items() if k in fields and v is not None})
    eos = raw.get("eos_token_id", 1)
    return MLAConfig(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        num_hidden_layers=layers,
        intermediate_size=raw["intermediate_size"],
        rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
        max_position_embeddings=raw.get("max_position_embeddings", 4096),
        initializer_range=raw.get("initializer_range", 0.02),
        num_attention_heads=raw["num_attention_heads"],
        q_lora_rank=raw.get("q_lora_rank"),
        kv_lora_rank=raw["kv_lora_rank"],
        qk_nope_head_dim=raw["qk_nope_head_dim"],
        qk_rope_head_dim=raw["qk_rope_head_dim"],
        v_head_dim=raw["v_head_dim"],
        rope_theta=theta,
        yarn=yarn,
        bos_token_id=_first_present(raw, "bos_token_id", default=0),
        eos_token_id=eos[0] if isinstance(eos, list) else eos,
        pad_token_id=_first_present(raw, "pad_token_id", default=2),
    )


def _first_present(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key)
    return default if value is None else int(value)


def export(
    model: MLATransformer,
    directory: Path,
    tokenizer_dir: Path | None = None,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write the model (and the tokenizer files found in tokenizer_dir) as a HF directory."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    state = {
        name: tensor.detach().to("cpu", dtype).contiguous()
        for name, tensor in model.state_dict().items()
        if not (cfg.tie_word_embeddings and name == "lm_head.weight")
    }
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(to_hf_config(cfg, dtype), indent=2) + "\n")
    generation = {
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
    }
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).exists() and tokenizer_dir != directory:
                shutil.copy(tokenizer_dir / name, directory / name)
    return directory


def load(
    directory: Path, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> MLATransformer:
    """Build our model from a HF DeepseekV3 directory, checking every key and shape."""
    cfg = from_hf_config(json.loads((directory / "config.json").read_text()))
    state = _read_weights(directory)
    with torch.device("meta"):
        model = MLATransformer(cfg)
    expected = model.state_dict()
    tied = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(state) - tied)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(
            f"{directory}: weights do not match the config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ConfigError(
                f"{directory}: {name} has shape {tuple(tensor.shape)}, "
                f"the config implies {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    from infinitecontext.model.rope import inv_frequencies

    model.inv_freq = inv_frequencies(cfg)[0]
    return model.to(device=device, dtype=dtype)


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / f"{WEIGHTS_FILE}.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [directory / shard for shard in shards]
    else:
        files = [directory / WEIGHTS_FILE]
    if not all(f.exists() for f in files):
        raise ConfigError(f"{directory}: no safetensors weights found ({WEIGHTS_FILE})")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(load_file(str(file)))
    return {k: v for k, v in state.items() if not k.endswith(_RECOMPUTED)}
