"""Prometheus metrics of the operator: reconciles, errors and durations per kind, and
objects per phase (kept from the last reconcile of each object)."""

from __future__ import annotations

import threading
from collections import Counter as Tally

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "icx_operator_reconciles", "Reconcile passes, by kind and result.", ["kind", "result"]
)
ERRORS = Counter("icx_operator_reconcile_errors", "Reconciles that raised, by kind.", ["kind"])
DURATION = Histogram(
    "icx_operator_reconcile_duration_seconds",
    "Wall time of one reconcile (observe, plan, act, write status).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OBJECTS = Gauge("icx_operator_objects", "Objects per phase, by kind.", ["kind", "phase"])

_lock = threading.Lock()
_phases: dict[str, tuple[str, str]] = {}  # uid -> (kind, phase)


def record_phase(uid: str, kind: str, phase: str | None) -> None:
    """Remember the phase of one object (None: it is gone) and refresh the gauge."""
    with _lock:
        if phase is None:
            _phases.pop(uid, None)
        else:
            _phases[uid] = (kind, phase)
        counts = Tally(_phases.values())
        for labels in list(OBJECTS._metrics):  # zero the series that have emptied
            OBJECTS.labels(*labels).set(0)
        for (k, p), n in counts.items():
            OBJECTS.labels(k, p).set(n)
