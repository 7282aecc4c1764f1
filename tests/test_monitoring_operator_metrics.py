"""The per-object series the alerts read, kept in step with each object's status."""

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from infinitecontext.operator import metrics


def value(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def test_conditions_slurm_wait_and_replicas_follow_status_and_vanish_on_delete():
    submitted = (datetime.now(UTC) - timedelta(minutes=40)).isoformat().replace("+00:00", "Z")
    status = {
        "phase": "Submitted",
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "Submitted", "status": "True", "lastTransitionTime": submitted},
        ],
        "job": {"backend": "slurm", "slurmJobId": 42, "state": "PENDING"},
    }
    metrics.record_object("uid-1", "TrainingRun", "ns", "run", status)
    assert (
        value(
            "icx_resource_condition",
            kind="TrainingRun",
            namespace="ns",
            name="run",
            condition="Submitted",
        )
        == 1.0
    )
    assert (
        value(
            "icx_resource_condition",
            kind="TrainingRun",
            namespace="ns",
            name="run",
            condition="Ready",
        )
        == 0.0
    )
    pending = value("icx_slurm_job_pending_seconds", namespace="ns", name="run", job_id="42")
    assert pending is not None and pending > 1800  # SlurmJobPendingTooLong's threshold

    status["job"]["state"] = "RUNNING"
    metrics.record_object("uid-1", "TrainingRun", "ns", "run", status)
    assert value("icx_slurm_job_pending_seconds", namespace="ns", name="run", job_id="42") == 0

    degraded_before = value("icx_operator_objects", kind="InferenceService", phase="Degraded")
    isvc = {
        "phase": "Degraded",
        "replicas": 3,
        "readyReplicas": 1,
        "conditions": [{"type": "Degraded", "status": "True"}],
    }
    metrics.record_object("uid-2", "InferenceService", "ns", "chat", isvc)
    assert value("icx_inferenceservice_replicas", namespace="ns", name="chat", state="ready") == 1
    assert value("icx_inferenceservice_replicas", namespace="ns", name="chat", state="desired") == 3
    # Other tests in this process may have recorded objects too: count ours.
    degraded = value("icx_operator_objects", kind="InferenceService", phase="Degraded")
    assert degraded == (degraded_before or 0) + 1

    metrics.record_object("uid-1", "", "", "", None)
    metrics.record_object("uid-2", "", "", "", None)
    assert (
        value(
            "icx_resource_condition",
            kind="TrainingRun",
            namespace="ns",
            name="run",
            condition="Submitted",
        )
        is None
    )
    assert (
        value("icx_inferenceservice_replicas", namespace="ns", name="chat", state="ready") is None
    )


def test_error_series_exist_before_the_first_error():
    metrics.initialise(["Evaluation"])
    assert value("icx_operator_reconcile_errors_total", kind="Evaluation") == 0
