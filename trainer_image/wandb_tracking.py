"""Weights & Biases tracking beside MLflow (`tracking: [mlflow, wandb]`).

Without WANDB_API_KEY the run is logged in offline mode: W&B writes a run directory
(`<dir>/wandb/offline-run-…`) that `wandb sync DIR` uploads later, so air-gapped
clusters lose nothing. wandb is imported only when this tracker is used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class WandbTracker:
    def __init__(
        self,
        project: str,
        run_name: str,
        directory: Path,
        config: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> None:
        import wandb

        self.mode = mode or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        directory.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=project,
            name=run_name,
            dir=str(directory),
            config=dict(config or {}),
            mode=self.mode,  # type: ignore[arg-type]
            reinit="finish_previous",
        )
        self._checkpoints = 0

    @property
    def run_dir(self) -> Path:
        """The run's files; for an offline run, what `wandb sync` takes."""
        return Path(self._run.dir).parent

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=step)

    def checkpoint_saved(self) -> None:
        self._checkpoints += 1
        self._run.summary["checkpoints"] = self._checkpoints

    def finish(self, exit_code: int = 0) -> None:
        self._run.finish(exit_code=exit_code)
