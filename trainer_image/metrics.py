"""Prometheus metrics a trainer exposes while it runs (the Training dashboard reads them).

Each process serves its own registry on `port` (rank 0 only in distributed runs); the
`run` label names the training run so one Prometheus can tell concurrent runs apart.
`icx_trainer_last_progress_timestamp_seconds` feeds the TrainingRunStalled alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger(__name__)


class TrainerMetrics:
    def __init__(self, run: str, port: int | None = None, address: str = "0.0.0.0") -> None:
        self.run = run
        self.registry = CollectorRegistry()
        labels = ["run"]
        gauge = {
            "step": "Optimizer steps taken.",
            "loss": "Training loss of the last step.",
            "tokens_per_second": "Training throughput in tokens per second.",
            "mfu": "Model FLOPs utilisation of the last logging window (0–1).",
            "step_seconds": "Wall time of the last optimizer step.",
            "last_progress_timestamp_seconds": "Unix time of the last completed step.",
        }
        self._gauges = {
            name: Gauge(f"icx_trainer_{name}", doc, labels, registry=self.registry)
            for name, doc in gauge.items()
        }
        self._checkpoints = Counter(
            "icx_trainer_checkpoints", "Checkpoints saved.", labels, registry=self.registry
        )
        self._checkpoints.labels(run)  # expose 0 before the first save
        for g in self._gauges.values():  # NaN until measured (no peak FLOP/s on CPU: no MFU)
            g.labels(run).set(float("nan"))
        self._gauges["last_progress_timestamp_seconds"].labels(run).set(time.time())
        self._last_step_at: float | None = None
        self.server = None
        if port is not None:
            try:
                self.server, _ = start_http_server(port, address, registry=self.registry)
            except OSError as error:  # metrics are auxiliary: never fail a run for them
                log.warning("not serving Prometheus metrics on port %s: %s", port, error)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record one step; `metrics` may hold loss, tokens_per_s and mfu."""
        now = time.time()
        self._gauges["step"].labels(self.run).set(step)
        for key, gauge in (("loss", "loss"), ("tokens_per_s", "tokens_per_second"), ("mfu", "mfu")):
            if key in metrics:
                self._gauges[gauge].labels(self.run).set(float(metrics[key]))
        if self._last_step_at is not None:
            self._gauges["step_seconds"].labels(self.run).set(now - self._last_step_at)
        self._last_step_at = now
        self._gauges["last_progress_timestamp_seconds"].labels(self.run).set(now)

    def checkpoint_saved(self) -> None:
        self._checkpoints.labels(self.run).inc()

    def finish(self, exit_code: int = 0) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
