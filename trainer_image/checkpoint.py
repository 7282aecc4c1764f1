"""Resumable checkpoints with torch.distributed.checkpoint (DCP).

One folder per step, `step_00000100/`, holding DCP's shards (one file per rank,
re-shardable to another world size at load) of the model, the optimizer, the
scheduler, the RNG states and the train state. The data state is the step itself:
samples are a pure function of (seed, step, position), see data.py.

A folder counts only once rank 0 has written `COMPLETE` after every rank finished,
so a run killed mid-save leaves a folder that is skipped. Loading walks from the
newest complete folder back, so a corrupt last checkpoint (a truncated shard, a
lost metadata file) falls back to the one before it.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.stateful import Stateful
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from infinitecontext.trainer.parallel import barrier

log = logging.getLogger(__name__)
COMPLETE = "COMPLETE"


class TrainState(Stateful):
    """Everything DCP saves: model and optimizer (sharded), scheduler, step and RNGs."""

    def __init__(self, model: nn.Module, optimizer: Optimizer, scheduler: LRScheduler) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.step = 0

    def state_dict(self) -> dict[str, Any]:
        model_state, optim_state = get_state_dict(self.model, self.optimizer)
        return {
            "model": model_state,
            "optim": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "rng": _rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=state_dict["model"],
            optim_state_dict=state_dict["optim"],
        )
        self.scheduler.load_state_dict(state_dict["scheduler"])
        self.step = int(state_dict["step"])
        _set_rng_state(state_dict["rng"])


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def save(root: Path, state: TrainState, keep: int, is_main: bool) -> Path:
    """Write step `state.step` on every rank, mark it complete, prune old ones."""
    path = step_dir(root, state.step)
    if is_main and path.exists():
        shutil.rmtree(path)  # an incomplete earlier attempt at this step
    barrier()
    dcp.save({"train": state}, checkpoint_id=str(path))
    barrier()
    if is_main:
        (path / COMPLETE).write_text(json.dumps({"step": state.step}) + "\n")
        for old in complete_steps(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return path


def complete_steps(root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    if not root.exists():
        return []
    return sorted(p for p in root.glob("step_*") if (p / COMPLETE).exists())


def load_latest(root: Path, state: TrainState) -> Path | None:
    """Load the newest checkpoint that loads; None when there is none (a fresh start).

    Every rank tries the same folders in the same order and all must succeed, so a
    shard that is corrupt on one rank moves every rank back together.
    """
    for path in reversed(complete_steps(root)):
        try:
            dcp.load({"train": state}, checkpoint_id=str(path))
        except (Exception, CheckpointException) as err:  # CheckpointException: BaseException
            log.warning("checkpoint %s does not load (%s); trying the one before", path, err)
            continue
        return path
    return None


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
