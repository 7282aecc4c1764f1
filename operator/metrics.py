"""Prometheus metrics of the operator: reconciles, errors and durations per kind, and
objects per phase (kept from the last reconcile of each object), and per-object series
for alerts: conditions, SLURM pending time and InferenceService replicas
(deploy/monitoring/prometheusrule.yaml)."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

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
OTHER_OPERATOR = Gauge(
    "icx_operator_other_operator",
    "1 while another standalone operator holds the Lease of the same objects (lease.py).",
)

_lock = threading.Lock()


def initialise(kinds: list[str]) -> None:
    """Create every kind's error and reconcile series at 0, so rates exist before the
    first error (dashboards and `rate()` alerts see 0, not "no data")."""
    for kind in kinds:
        ERRORS.labels(kind)
        for result in ("ok", "error"):
            RECONCILES.labels(kind, result)


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


CONDITION = Gauge(
    "icx_resource_condition",
    "1 while a condition of a resource is True, else 0 (alerts: Degraded, RolledBack).",
    ["kind", "namespace", "name", "condition"],
)
SLURM_PENDING = Gauge(
    "icx_slurm_job_pending_seconds",
    "Seconds a resource's SLURM job has been pending; 0 once it runs.",
    ["namespace", "name", "job_id"],
)
ISVC_REPLICAS = Gauge(
    "icx_inferenceservice_replicas",
    "InferenceService replicas, desired and ready.",
    ["namespace", "name", "state"],
)
_series: dict[str, list[tuple[Gauge, tuple[str, ...]]]] = {}  # uid -> series it owns


def record_object(
    uid: str, kind: str, namespace: str, name: str, status: Mapping[str, Any] | None
) -> None:
    """Phase, conditions, SLURM wait and replicas of one object (status None: it is gone)."""
    record_phase(uid, kind, None if status is None else status.get("phase"))
    with _lock:
        for gauge, labels in _series.pop(uid, []):
            gauge.remove(*labels)
        if status is None:
            return
        owned = _series.setdefault(uid, [])

        def put(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
            gauge.labels(*labels).set(value)
            owned.append((gauge, labels))

        for condition in status.get("conditions") or []:
            labels = (kind, namespace, name, str(condition.get("type")))
            put(CONDITION, labels, 1.0 if condition.get("status") == "True" else 0.0)
        job = status.get("job") or {}
        if job.get("slurmJobId"):
            labels = (namespace, name, str(job["slurmJobId"]))
            put(SLURM_PENDING, labels, _pending_seconds(job, status.get("conditions") or []))
        if kind == "InferenceService":
            put(ISVC_REPLICAS, (namespace, name, "desired"), float(status.get("replicas") or 0))
            ready = float(status.get("readyReplicas") or 0)
            put(ISVC_REPLICAS, (namespace, name, "ready"), ready)


def _pending_seconds(job: Mapping[str, Any], conditions: list[Mapping[str, Any]]) -> float:
    if str(job.get("state", "")).upper() != "PENDING":
        return 0.0
    submitted = next((c for c in conditions if c.get("type") == "Submitted"), None)
    stamp = (submitted or {}).get("lastTransitionTime")
    if not stamp:
        return 0.0
    since = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    return max(0.0, (datetime.now(UTC) - since).total_seconds())
