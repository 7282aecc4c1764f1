"""MLflow tracking for SFT, DPO and evaluation runs, or nothing when no server is set.

mlflow is imported only when a tracking URI is configured, so the trainer runs
(and is benchmarked) where mlflow is not installed.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infinitecontext.trainer.recipe import MlflowSpec

log = logging.getLogger(__name__)


class Observer(Protocol):
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def checkpoint_saved(self) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...


@dataclass
class Tracker:
    """One MLflow run (run_id None: tracking off). Only rank 0 makes one."""

    run_id: str | None = None
    tracking_uri: str | None = None
    _client: Any = field(default=None, repr=False)
    _pending: list[Any] = field(default_factory=list, repr=False)
    observers: list[Observer] = field(default_factory=list)
    """Other sinks of the same metrics: W&B, the Prometheus endpoint (rank 0 only)."""

    @classmethod
    def start(cls, spec: MlflowSpec, run_name: str, resume_run_id: str | None = None) -> Tracker:
        uri = spec.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            log.info("no MLflow tracking URI (recipe mlflow.tracking_uri or env); not tracking")
            return cls()
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        if resume_run_id:
            client.update_run(resume_run_id, status="RUNNING")
            return cls(resume_run_id, uri, client)
        name = spec.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "infinitecontext"
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        run = client.create_run(experiment_id, run_name=spec.run_name or run_name)
        return cls(run.info.run_id, uri, client)

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self._client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, float], step: int, flush: bool = True) -> None:
        for observer in self.observers:
            observer.log_metrics(metrics, step)
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if flush or len(self._pending) >= 500:
            self.flush()

    def flush(self) -> None:
        if self.enabled and self._pending:
            for start in range(0, len(self._pending), 1000):
                self._client.log_batch(self.run_id, metrics=self._pending[start : start + 1000])
            self._pending = []

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items() if self.enabled else ():
            self._client.set_tag(self.run_id, key, value)

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        if self.enabled:
            self._client.log_dict(self.run_id, data, name)

    def log_artifacts(self, directory: Path, artifact_path: str) -> None:
        if self.enabled:
            self._client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_artifact(self, file: Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self._client.log_artifact(self.run_id, str(file), artifact_path)

    def artifact_uri(self, artifact_path: str = "") -> str | None:
        if not self.enabled:
            return None
        root = self._client.get_run(self.run_id).info.artifact_uri
        return f"{root}/{artifact_path}" if artifact_path else str(root)

    def checkpoint_saved(self) -> None:
        for observer in self.observers:
            observer.checkpoint_saved()

    def end(self, status: str = "FINISHED") -> None:
        for observer in self.observers:
            observer.finish(0 if status == "FINISHED" else 1)
        self.observers = []
        if self.enabled:
            self.flush()
            self._client.set_terminated(self.run_id, status=status)


def system_info(world_size: int, backend: str) -> dict[str, Any]:
    """What the run ran on: logged once per run as `system_info.json` and as tags."""
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "world_size": world_size,
        "backend": backend,
        "device": "cpu",
    }
    if torch.cuda.is_available():
        info |= {
            "device": torch.cuda.get_device_name(),
            "device_count": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
            "device_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30),
        }
    return info
