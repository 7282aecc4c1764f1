"""MLAConfig: the shape of a DeepSeek-V3 style Multi-Head Latent Attention model.

Pure Python (no torch), so the operator and the CRDs can validate model specs
without an ML framework. Field names follow transformers' ``DeepseekV3Config``,
so the Hugging Face ``config.json`` maps onto this dataclass one to one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """An MLAConfig that cannot describe a working model."""


@dataclass(frozen=True)
class YarnScaling:
    """YaRN context extension (arXiv 2309.00071), as DeepSeek-V3 and transformers define it."""

    factor: float = 1.0
    """Context extension factor s; 1.0 means no scaling."""
    original_max_position_embeddings: int = 4096
    """The context length the model was trained at before extension."""
    beta_fast: float = 32.0
    """Rotations above which a frequency is kept as trained (extrapolated)."""
    beta_slow: float = 1.0
    """Rotations below which a frequency is fully interpolated by `factor`."""
    mscale: float = 1.0
    """Scales the cos/sin tables: attention temperature correction 0.1·mscale·ln(s)+1."""
    mscale_all_dim: float = 1.0
    """Scales the softmax; with mscale == mscale_all_dim the cos/sin factor cancels to 1."""

    @property
    def enabled(self) -> bool:
        return self.factor > 1.0


@dataclass(frozen=True)
class MLAConfig:
    """One dense (no MoE) MLA decoder. Defaults are DeepSeek-V3's MLA dimensions."""

    # model
    vocab_size: int = 32768
    """Tokens in the vocabulary (rows of the embedding and the output head)."""
    hidden_size: int = 2048
    """Width of the residual stream (d_model)."""
    num_hidden_layers: int = 24
    """Decoder layers."""
    intermediate_size: int = 4864
    """Width of the SwiGLU MLP's gate and up projections."""
    rms_norm_eps: float = 1e-6
    """Epsilon of the RMSNorm layers."""
    tie_word_embeddings: bool = False
    """vLLM's DeepseekV3 loader has no tying logic; exported models keep `lm_head` untied."""
    max_position_embeddings: int = 4096
    """Longest context in tokens the model supports."""
    initializer_range: float = 0.02
    """Standard deviation of the normal initialisation of the weights."""

    # mla
    num_attention_heads: int = 16
    """Attention heads per layer."""
    q_lora_rank: int | None = None
    """Rank of the low-rank query path (q_a_proj → q_a_layernorm → q_b_proj); None: one q_proj."""
    kv_lora_rank: int = 512
    """Width of the compressed latent c_KV that the decode cache keeps per token."""
    qk_nope_head_dim: int = 128
    """Per-head query/key width without position (up-projected from the latent)."""
    qk_rope_head_dim: int = 64
    """Per-head width of the decoupled RoPE slice; its key part is shared by all heads."""
    v_head_dim: int = 128
    """Per-head width of the values."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""

    # yarn
    yarn: YarnScaling = field(default_factory=YarnScaling)

    # tokens
    bos_token_id: int = 0
    """Token id of the beginning of a sequence."""
    eos_token_id: int = 1
    """Token id of the end of a sequence."""
    pad_token_id: int = 2
    """Token id of padding."""

    def __post_init__(self) -> None:
        validate(self)

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def latent_dim(self) -> int:
        """Cached width per token and layer: c_KV plus the shared rotary key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def softmax_scale(self) -> float:
        """1/sqrt(qk_head_dim), times YaRN's mscale² when the context is extended."""
        scale = self.qk_head_dim**-0.5
        if self.yarn.enabled and self.yarn.mscale_all_dim:
            m = yarn_mscale(self.yarn.factor, self.yarn.mscale_all_dim)
            scale *= m * m
        return scale

    def replace(self, **changes: Any) -> MLAConfig:
        return dataclasses.replace(self, **changes)

    def with_yarn(self, factor: float, original_max_position_embeddings: int) -> MLAConfig:
        """The same weights, extended to `factor` × the original context by YaRN."""
        yarn = dataclasses.replace(
            self.yarn,
            factor=factor,
            original_max_position_embeddings=original_max_position_embeddings,
        )
        return self.replace(
            yarn=yarn,
            max_position_embeddings=int(factor * original_max_position_embeddings),
        )


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature: 0.1·mscale·ln(s) + 1 (1 when s ≤ 1)."""
    if factor <= 1.0:
        return 1.0
    return 0.1 * mscale * math.log(factor) + 1.0


def validate(cfg: MLAConfig) -> None:
    """Raise ConfigError naming the first field that cannot work."""
    positive = {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "intermediate_size": cfg.intermediate_size,
        "num_attention_heads": cfg.num_attention_heads,
        "kv_lora_rank": cfg.kv_lora_rank,
        "qk_nope_head_dim": cfg.qk_nope_head_dim,
        "qk_rope_head_dim": cfg.qk_rope_head_dim,
        "v_head_dim": cfg.v_head_dim,
        "max_position_embeddings": cfg.max_position_embeddings,
    }
    for name, value in positive.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if cfg.q_lora_rank is not None and cfg.q_lora_rank <= 0:
        raise ConfigError(f"q_lora_rank must be a positive integer or None, got {cfg.q_lora_rank}")
    if cfg.qk_rope_head_dim % 2:
        raise ConfigError(
            f"qk_rope_head_dim must be even (RoPE rotates pairs), got {cfg.qk_rope_head_dim}"
        )
    if cfg.rms_norm_eps <= 0:
        raise ConfigError(f"rms_norm_eps must be positive, got {cfg.rms_norm_eps}")
    if cfg.rope_theta <= 1:
        raise ConfigError(f"rope_theta must be greater than 1, got {cfg.rope_theta}")
    y = cfg.yarn
    if y.factor < 1.0:
        raise ConfigError(f"yarn.factor must be >= 1 (1 disables YaRN), got {y.factor}")
    if y.original_max_position_embeddings <= 0:
        raise ConfigError(
            "yarn.original_max_position_embeddings must be positive, "
            f"got {y.original_max_position_embeddings}"
        )
    if y.beta_fast <= y.beta_slow:
        raise ConfigError(
            f"yarn.beta_fast ({y.beta_fast}) must be greater than yarn.beta_slow ({y.beta_slow})"
        )
    special = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id}
    special["pad_token_id"] = cfg.pad_token_id
    for name, token in special.items():
        if not 0 <= token < cfg.vocab_size:
            raise ConfigError(f"{name}={token} is outside the vocabulary [0, {cfg.vocab_size})")


def count_parameters(cfg: MLAConfig) -> int:
    """Exact parameter count of the model `cfg` describes (matches the built module)."""
    d, h = cfg.hidden_size, cfg.num_attention_heads
    if cfg.q_lora_rank is None:
        q = d * h * cfg.qk_head_dim
    else:
        q = d * cfg.q_lora_rank + cfg.q_lora_rank + cfg.q_lora_rank * h * cfg.qk_head_dim
    kv = d * cfg.latent_dim + cfg.kv_lora_rank
    kv += cfg.kv_lora_rank * h * (cfg.qk_nope_head_dim + cfg.v_head_dim)
    out = h * cfg.v_head_dim * d
    mlp = 3 * d * cfg.intermediate_size
    norms = 2 * d
    per_layer = q + kv + out + mlp + norms
    embeddings = cfg.vocab_size * d * (1 if cfg.tie_word_embeddings else 2)
    return cfg.num_hidden_layers * per_layer + embeddings + d


# Named sizes. `tiny` and `small` keep DeepSeek's kv_lora_rank 512 and rope dim 64:
# vLLM's MLA kernels (the CPU one included) accept only a 576-wide latent head.
PRESETS: dict[str, MLAConfig] = {
    # Unit tests and CI: a forward pass in milliseconds on a CPU.
    "tiny": MLAConfig(
        vocab_size=1024,
        hidden_size=256,
        num_hidden_layers=2,
        intermediate_size=512,
        num_attention_heads=4,
        qk_nope_head_dim=64,
        qk_rope_head_dim=64,
        v_head_dim=64,
        max_position_embeddings=2048,
    ),
    # Learns passkey retrieval on one GPU in minutes. nope + rope = 128 so that vLLM's
    # non-MLA fallback (VLLM_MLA_DISABLE=1, head size 128) loads it too.
    "small": MLAConfig(
        vocab_size=8192,
        hidden_size=384,
        num_hidden_layers=6,
        intermediate_size=1024,
        num_attention_heads=6,
        qk_nope_head_dim=64,
        qk_rope_head_dim=64,
        v_head_dim=64,
        max_position_embeddings=4096,
    ),
    # DeepSeek-V2-Lite's attention shape at 24 layers: 1.18 B parameters.
    "1b": MLAConfig(
        vocab_size=32768,
        hidden_size=2048,
        num_hidden_layers=24,
        intermediate_size=4864,
        num_attention_heads=16,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        max_position_embeddings=8192,
    ),
}


def preset(name: str) -> MLAConfig:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(sorted(PRESETS))
        raise ConfigError(f"unknown preset {name!r}; known presets: {known}") from None
