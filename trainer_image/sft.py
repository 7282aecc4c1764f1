"""Supervised training of the MLA model on synthetic long-context tasks (FSDP2).

`run_sft(recipe)` is the whole run, the same on one CPU, on CPUs with gloo and on
GPUs with NCCL (launch with torchrun for more than one process):

1. join the process group; train (rank 0) or reuse the tokenizer;
2. build the model (a seeded random init, or `model.init_from` a HF directory with
   an optional YaRN factor), parallelize it (parallel.py), AdamW, warmup + cosine;
3. resume from the newest loadable checkpoint in `output_dir/checkpoints`;
4. train: gradient accumulation over micro-batches (gradients reduced on the last
   one only, parallel.set_micro_batch), sequence-length curriculum,
   a log line with tokens/s, MFU and ETA every `log_every` steps, MLflow metrics
   every step, a DCP checkpoint every `checkpoint.every_steps` and at the end;
5. export the Hugging Face directory, log it to MLflow as artifact `model` and print
   the run id (the operator finds the run by its name, `mlflow.run_name`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.utils.data import DataLoader

from infinitecontext.model import hf
from infinitecontext.model.config import MLAConfig, count_parameters, preset
from infinitecontext.model.tokenizer import save_tokenizer
from infinitecontext.model.transformer import MLATransformer, build
from infinitecontext.server.manifest import write_manifest
from infinitecontext.trainer import checkpoint, parallel
from infinitecontext.trainer.batches import StepBatches, plan_step
from infinitecontext.trainer.data import train_tokenizer
from infinitecontext.trainer.metrics import TrainerMetrics
from infinitecontext.trainer.recipe import SFTRecipe, flatten, to_dict
from infinitecontext.trainer.tracking import Observer, Tracker, system_info
from infinitecontext.trainer.wandb_tracking import WandbTracker

log = logging.getLogger(__name__)
H100_BF16_DENSE_FLOPS = 989e12


@dataclass(frozen=True)
class SFTResult:
    run_id: str | None
    export_dir: Path
    final_step: int
    metrics: dict[str, float]


def run_sft(recipe: SFTRecipe, resume: bool = True, stop_at_step: int | None = None) -> SFTResult:
    """Train per `recipe`; `stop_at_step` ends early after that step's checkpoint
    (a pre-emption stand-in for tests); everything else runs to `train.steps`."""
    world = parallel.init_world()
    out = Path(recipe.output_dir)
    try:
        tokenizer_dir = prepare_tokenizer(recipe, out, world.is_main)
        model = build_model(recipe, world.device)
        cfg = model.config
        mesh = parallel.data_parallel_mesh(recipe.parallel, world)
        parallel.parallelize(model, recipe.parallel, mesh)
        optimizer = make_optimizer(model, recipe)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(recipe, s))
        state = checkpoint.TrainState(model, optimizer, scheduler)
        restored = checkpoint.load_latest(out / "checkpoints", state) if resume else None
        tracker = start_tracking(recipe, out, world, cfg, restored is not None)
        if restored:
            log.info("resumed from %s at step %d", restored, state.step)
        metrics = train_loop(
            recipe,
            state,
            world,
            parallel.shard_size(mesh),
            tokenizer_dir,
            tracker,
            cfg,
            stop_at_step,
        )
        if stop_at_step is not None and state.step < recipe.train.steps:
            return SFTResult(tracker.run_id, out / "model", state.step, metrics)
        export_dir = export_model(model, cfg, out / "model", tokenizer_dir, world.is_main)
        finish(tracker, export_dir, world.is_main)
        return SFTResult(tracker.run_id, export_dir, state.step, metrics)
    finally:
        parallel.close_world()


def prepare_tokenizer(recipe: SFTRecipe, out: Path, is_main: bool) -> Path:
    """The tokenizer saved with the model: the init model's, or trained on our text."""
    directory = out / "tokenizer"
    if is_main and not (directory / "tokenizer.json").exists():
        if recipe.model.init_from:
            tokenizer_json = Path(recipe.model.init_from) / "tokenizer.json"
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        else:
            data = recipe.data
            extra: Iterable[str] = ()
            if data.templates == "varied" or data.haystack:
                from infinitecontext.trainer.phrasing import tokenizer_text

                haystack = Path(data.haystack) if data.haystack else None
                extra = tokenizer_text(haystack, data.seed, data.tokenizer_sentences // 4)
            vocab = model_config(recipe).vocab_size
            tokenizer = train_tokenizer(vocab, data.seed, data.tokenizer_sentences, extra)
        save_tokenizer(tokenizer, directory, model_config(recipe).max_position_embeddings)
    parallel.barrier()
    return directory


def model_config(recipe: SFTRecipe) -> MLAConfig:
    spec = recipe.model
    if spec.init_from:
        cfg = hf.from_hf_config(json.loads((Path(spec.init_from) / "config.json").read_text()))
    else:
        cfg = spec.config or preset(spec.preset)
    cfg = cfg.replace(**spec.overrides)
    if spec.yarn_factor > 1:
        original = spec.yarn_original_length or cfg.max_position_embeddings
        cfg = cfg.with_yarn(spec.yarn_factor, original)
    return cfg


def build_model(recipe: SFTRecipe, device: torch.device) -> MLATransformer:
    """The full model on every rank (same seed → same weights), before sharding."""
    cfg = model_config(recipe)
    if not recipe.model.init_from:
        return build(cfg, seed=recipe.train.seed, device=str(device))
    weights = hf.load(Path(recipe.model.init_from)).state_dict()
    model = build(cfg, seed=None, device=str(device))
    model.load_state_dict(weights)
    return model


def make_optimizer(model: nn.Module, recipe: SFTRecipe) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms (1-D parameters)."""
    o = recipe.optim
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": o.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = torch.cuda.is_available()  # fused AdamW takes FSDP2's DTensors on GPUs
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, fused=fused, foreach=not fused)


def lr_factor(recipe: SFTRecipe, step: int) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at the last step."""
    o, total = recipe.optim, recipe.train.steps
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, total - o.warmup_steps))
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train_loop(
    recipe: SFTRecipe,
    state: checkpoint.TrainState,
    world: parallel.World,
    shard_ranks: int,
    tokenizer_dir: Path,
    tracker: Tracker,
    cfg: MLAConfig,
    stop_at_step: int | None,
) -> dict[str, float]:
    train, model = recipe.train, state.model
    tokenizer_json = (tokenizer_dir / "tokenizer.json").read_text()
    data = StepBatches(train, recipe.data, tokenizer_json, world.rank, world.size, state.step)
    # Samples are built on the CPU (~1 µs a token): worker processes keep GPUs fed.
    workers = min(6, (os.cpu_count() or 2) // 2) if world.device.type == "cuda" else 0
    loader = DataLoader(
        data, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None
    )
    meter = Throughput(cfg, world.size, train.steps)
    metrics: dict[str, float] = {}
    model.train()
    for micro_batches in loader:
        step = state.step
        metrics = train_step(recipe, state, micro_batches, world, shard_ranks)
        state.step += 1
        metrics |= meter.update(
            state.step, metrics.pop("tokens"), plan_step(train, step, world.size).seq_len
        )
        if world.is_main:
            tracker.log_metrics(metrics, step=state.step, flush=state.step % train.log_every == 0)
            append_metrics(Path(recipe.output_dir) / "metrics.jsonl", state.step, metrics)
            if state.step % train.log_every == 0 or state.step == train.steps:
                log.info(meter.line(state.step, metrics))
        last = state.step == train.steps or state.step == stop_at_step
        if state.step % recipe.checkpoint.every_steps == 0 or last:
            checkpoint.save(
                Path(recipe.output_dir) / "checkpoints",
                state,
                recipe.checkpoint.keep,
                world.is_main,
            )
            tracker.checkpoint_saved()
        if state.step == stop_at_step:
            break
    return metrics


def train_step(
    recipe: SFTRecipe,
    state: checkpoint.TrainState,
    micro_batches: list[dict[str, torch.Tensor]],
    world: parallel.World,
    shard_ranks: int,
) -> dict[str, float]:
    model, optimizer = state.model, state.optimizer
    total_loss, answer_hits, answer_count, tokens = 0.0, 0.0, 0.0, 0
    for index, batch in enumerate(micro_batches):
        batch = {k: v.to(world.device, non_blocking=True) for k, v in batch.items()}
        # gradients are reduced (reduce-scatter) on the last micro-batch only
        parallel.set_micro_batch(model, index == len(micro_batches) - 1, shard_ranks)
        # The weighted loss without the (B, T, V) logits (model/loss.py)
        loss, predictions = model(batch["input_ids"], batch["targets"], batch["weights"])
        (loss / len(micro_batches)).backward()
        total_loss += loss.item() / len(micro_batches)
        answer = batch["answer"]
        hits = (predictions == batch["targets"]) & answer
        answer_hits += float(hits.sum())
        answer_count += float(answer.sum())
        tokens += int((batch["weights"] > 0).sum())
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), recipe.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    lr = float(state.scheduler.get_last_lr()[0])
    state.scheduler.step()
    return {
        "loss": parallel.all_reduce_mean(total_loss, world.device),
        "answer_token_accuracy": parallel.all_reduce_mean(
            answer_hits / max(answer_count, 1), world.device
        ),
        "grad_norm": float(_full(torch.as_tensor(grad_norm))),
        "lr": lr,
        "tokens": parallel.all_reduce_mean(tokens, world.device) * world.size,
    }


def _full(tensor: torch.Tensor) -> torch.Tensor:
    full_tensor = getattr(tensor, "full_tensor", None)
    return full_tensor() if full_tensor else tensor


class Throughput:
    """Tokens/s, MFU and ETA over the steps of this process's run."""

    def __init__(self, cfg: MLAConfig, world_size: int, total_steps: int) -> None:
        self.cfg, self.world_size, self.total_steps = cfg, world_size, total_steps
        self.started = time.perf_counter()
        self.first_step: int | None = None
        self.tokens = 0.0
        self.peak = H100_BF16_DENSE_FLOPS if torch.cuda.is_available() else 0.0

    def update(self, step: int, tokens: float, seq_len: int) -> dict[str, float]:
        now = time.perf_counter()
        if self.first_step is None:  # the first step compiles and warms up: not counted
            self.first_step, self.started = step, now
            return {"tokens": tokens, "seq_len": seq_len}
        self.tokens += tokens
        elapsed = now - self.started
        rate = self.tokens / elapsed
        steps_done = step - self.first_step
        metrics = {"tokens_per_s": rate, "seq_len": float(seq_len), "tokens": tokens}
        metrics["eta_s"] = elapsed / steps_done * (self.total_steps - step)
        if self.peak:
            flops = training_flops_per_token(self.cfg, seq_len) * rate / self.world_size
            metrics["mfu"] = flops / self.peak
            metrics["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return metrics

    def line(self, step: int, m: dict[str, float]) -> str:
        parts = [f"step {step}/{self.total_steps}", f"loss {m['loss']:.4f}", f"lr {m['lr']:.2e}"]
        parts.append(f"answer acc {m['answer_token_accuracy']:.3f}")
        parts.append(f"seq {int(m['seq_len'])}")
        if "tokens_per_s" in m:
            parts.append(f"{m['tokens_per_s']:,.0f} tok/s")
            if "mfu" in m:
                parts.append(f"MFU {100 * m['mfu']:.1f}%")
            parts.append(f"ETA {_duration(m['eta_s'])}")
        return " | ".join(parts)


def training_flops_per_token(cfg: MLAConfig, seq_len: int) -> float:
    """6·N for the matmul weights (embedding lookup excluded) plus causal attention:
    per layer and token, QKᵀ and PV cost 2·H·(d_qk + d_v)·T/2 forward, ×3 with backward."""
    n = count_parameters(cfg) - cfg.vocab_size * cfg.hidden_size
    h = cfg.num_attention_heads
    attention = 3 * cfg.num_hidden_layers * h * (cfg.qk_head_dim + cfg.v_head_dim) * seq_len
    return 6 * n + attention


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def append_metrics(path: Path, step: int, metrics: dict[str, float]) -> None:
    with path.open("a") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")


def start_tracking(
    recipe: SFTRecipe, out: Path, world: parallel.World, cfg: MLAConfig, resumed: bool
) -> Tracker:
    """Rank 0's MLflow run: the same run again when resuming."""
    if not world.is_main:
        return Tracker()
    out.mkdir(parents=True, exist_ok=True)
    run_id_file = out / "mlflow_run_id"
    previous = run_id_file.read_text().strip() if resumed and run_id_file.exists() else None
    tracker = Tracker.start(recipe.mlflow, recipe.name, previous)
    if "mlflow" not in recipe.tracking:
        tracker = Tracker()
    tracker.observers = observers(recipe, out)
    if tracker.run_id and not previous:
        run_id_file.write_text(tracker.run_id + "\n")
        tracker.log_params(flatten(to_dict(recipe)) | {"model.parameters": count_parameters(cfg)})
        info = system_info(world.size, "nccl" if world.device.type == "cuda" else "gloo")
        tracker.log_dict(info, "system_info.json")
        tracker.set_tags({f"system.{k}": str(v) for k, v in info.items()})
    if tracker.run_id:
        print(f"mlflow run id: {tracker.run_id}", flush=True)
    return tracker


def observers(recipe: SFTRecipe, out: Path) -> list[Observer]:
    """The Prometheus endpoint (when a port is set) and W&B (when `tracking` names it)."""
    found: list[Observer] = []
    port = recipe.metrics_port or os.environ.get("ICX_METRICS_PORT")
    if port:
        found.append(TrainerMetrics(recipe.name, int(port)))
    if "wandb" in recipe.tracking:
        project = os.environ.get("WANDB_PROJECT", "infinitecontext")
        found.append(WandbTracker(project, recipe.name, out, flatten(to_dict(recipe))))
    return found


def export_model(
    model: nn.Module, cfg: MLAConfig, directory: Path, tokenizer_dir: Path, is_main: bool
) -> Path:
    """Gather the full weights on rank 0 and write the HF directory (bf16)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    if is_main:
        with torch.device("meta"):
            plain = MLATransformer(cfg)
        plain.load_state_dict(state, assign=True)
        from infinitecontext.model.rope import inv_frequencies

        plain.inv_freq = inv_frequencies(cfg)[0]
        hf.export(plain, directory, tokenizer_dir=tokenizer_dir)
    parallel.barrier()
    return directory


def finish(tracker: Tracker, export_dir: Path, is_main: bool) -> None:
    if not is_main:
        return
    write_manifest(export_dir)  # its sha256 becomes a tag of the registered version
    tracker.log_artifacts(export_dir, "model")
    tracker.end()
    print(f"run id: {tracker.run_id}; model: {export_dir}", flush=True)
