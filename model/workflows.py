"""What the `icx model` commands do, as plain functions (torch is imported here, not in cli.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import torch

from infinitecontext.model import hf
from infinitecontext.model.config import MLAConfig, preset
from infinitecontext.model.generate import Sampling, generate
from infinitecontext.model.tokenizer import default_tokenizer, load_tokenizer, save_tokenizer
from infinitecontext.model.transformer import MLATransformer, build


def save_checkpoint(model: MLATransformer, path: Path) -> None:
    """Native format: the HF config dict and the state dict in one torch file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": hf.to_hf_config(model.config), "state_dict": model.state_dict()}, path)


def load_checkpoint(path: Path) -> MLATransformer:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = build(hf.from_hf_config(payload["config"]), seed=None)
    model.load_state_dict(payload["state_dict"])
    return model


def export_model(out: Path, preset_name: str, checkpoint: Path | None, seed: int) -> Path:
    """HF directory from a native checkpoint, or from a randomly initialised preset."""
    model = load_checkpoint(checkpoint) if checkpoint else build(preset(preset_name), seed=seed)
    tokenizer_dir = out / "_tokenizer"
    save_tokenizer(
        default_tokenizer(model.config.vocab_size, seed),
        tokenizer_dir,
        model.config.max_position_embeddings,
    )
    hf.export(model, out, tokenizer_dir=tokenizer_dir)
    for file in tokenizer_dir.iterdir():
        file.unlink()
    tokenizer_dir.rmdir()
    return out


def import_model(source: Path, out: Path) -> MLAConfig:
    model = hf.load(source)
    save_checkpoint(model, out)
    return model.config


def generate_text(
    prompts: list[str],
    model_dir: Path | None,
    preset_name: str,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
) -> Iterator[tuple[str, str, str]]:
    """(prompt, completion, stats) for each prompt, generated in one batch."""
    if model_dir is not None:
        model, tokenizer = hf.load(model_dir), load_tokenizer(model_dir)
    else:
        cfg = preset(preset_name)
        model, tokenizer = build(cfg, seed=seed), default_tokenizer(cfg.vocab_size, seed)
    model.eval()
    encoded = [tokenizer.encode(p).ids for p in prompts]
    cfg = model.config
    sampling = Sampling(max_new_tokens, temperature, top_p, (cfg.eos_token_id,), seed)
    start = time.perf_counter()
    outputs = generate(model, encoded, sampling)
    elapsed = time.perf_counter() - start
    cache = model.new_cache(1, 1)
    new_tokens = sum(len(o) for o in outputs)
    stats = (
        f"{new_tokens} new tokens in {elapsed:.2f}s ({new_tokens / elapsed:.1f} tok/s); "
        f"latent cache {cache.bytes_per_token()} B/token"
    )
    for text, ids in zip(prompts, outputs, strict=True):
        yield text, tokenizer.decode(ids), stats
