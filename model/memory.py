"""KV-cache arithmetic: MLA's latent cache against MHA and GQA caches of the same model.

Per token, MLA caches kv_lora_rank + rope_dim values per layer (one latent shared by all
heads); MHA caches a key and a value per head, GQA per KV-head group. Pure Python, so the
operator can size things without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from infinitecontext.model.config import MLAConfig, count_parameters


@dataclass(frozen=True)
class CacheLine:
    name: str
    bytes_per_token: int
    baseline: str | None = None  # what the saving is measured against


@dataclass(frozen=True)
class MemoryReport:
    parameters: int
    weight_bytes: int
    context: int
    lines: tuple[CacheLine, ...]


def mla_bytes_per_token(cfg: MLAConfig, bytes_per_value: int = 2) -> int:
    """layers · (kv_lora_rank + rope_dim) · bytes."""
    return cfg.num_hidden_layers * cfg.latent_dim * bytes_per_value


def kv_bytes_per_token(cfg: MLAConfig, kv_heads: int, bytes_per_value: int = 2) -> int:
    """2 (K and V) · layers · kv_heads · head_dim · bytes, head_dim = hidden / heads."""
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * kv_heads * head_dim * bytes_per_value


def memory_report(cfg: MLAConfig, context: int, bytes_per_value: int = 2) -> MemoryReport:
    heads = cfg.num_attention_heads
    lines = [CacheLine("MLA (latent)", mla_bytes_per_token(cfg, bytes_per_value))]
    lines.append(
        CacheLine(f"MHA ({heads} KV heads)", kv_bytes_per_token(cfg, heads, bytes_per_value))
    )
    for groups in (8, 4):
        if groups < heads:
            lines.append(
                CacheLine(
                    f"GQA ({groups} KV heads)", kv_bytes_per_token(cfg, groups, bytes_per_value)
                )
            )
    params = count_parameters(cfg)
    return MemoryReport(params, params * bytes_per_value, context, tuple(lines))


def saving(mla: int, other: int) -> float:
    """Percent of `other`'s cache that MLA saves."""
    return 100.0 * (1 - mla / other)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
