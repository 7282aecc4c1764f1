"""The SLURM finalizers always finish: purged or finished jobs count as cancelled, an
unreachable SLURM is retried a bounded number of times (shown in a condition), and an
annotation skips the remote cancel; a purged job is observed as lost, never as not
submitted (no cluster, no SLURM: a fake of each)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest

from infinitecontext.crds.models import TRAINING_RUN, Kind
from infinitecontext.operator import finalizers
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.finalizers import (
    SKIP_REMOTE_CANCEL,
    cancel_live,
    finalize_remote_jobs,
    retry_delay,
)
from infinitecontext.operator.inference.apply import cancel_replicas
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.handlers import slurm_jobs_of
from infinitecontext.operator.workloads.observe import job_of
from infinitecontext.slurm_bridge.errors import JobNotFound, SlurmUnavailable
from infinitecontext.slurm_bridge.models import JobStatus
from infinitecontext.slurm_bridge.states import Phase

LOG = logging.getLogger(__name__)


def job(job_id: int, phase: Phase, key: str) -> JobStatus:
    return JobStatus(job_id, "j", str(phase), phase, "", None, None, key, "n1", "/", "", "")


@dataclass
class FakeSlurm:
    jobs: dict[int, JobStatus] = field(default_factory=dict)
    down: bool = False
    cancelled: list[int] = field(default_factory=list)

    def get(self, job_id: int) -> JobStatus:
        self._answer()
        if job_id not in self.jobs:
            raise JobNotFound(f"job {job_id} is unknown to slurmctld")
        return self.jobs[job_id]

    def list(self, key: str | None = None, phases: Any = None) -> list[JobStatus]:
        self._answer()
        return [j for j in self.jobs.values() if key is None or j.key == key]

    def cancel(self, job_id: int) -> None:
        self._answer()
        self.cancelled.append(job_id)

    def _answer(self) -> None:
        if self.down:
            raise SlurmUnavailable("slurmrestd at http://slurm did not answer")


@dataclass
class FakeKube:
    patches: list[dict[str, Any]] = field(default_factory=list)

    def patch_status(self, kind: Kind, name: str, namespace: str, status: dict[str, Any]) -> str:
        self.patches.append(status)
        return "1"


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    posted: list[tuple[str, str]] = []
    monkeypatch.setattr(
        kopf, "event", lambda body, type, reason, message: posted.append((reason, message))
    )
    return posted


def context(slurm: FakeSlurm, attempts: int = 3) -> OperatorContext:
    ctx = OperatorContext(
        kube=FakeKube(),  # type: ignore[arg-type]
        dynamic=None,  # type: ignore[arg-type]
        tracking_uri="",
        slurm_url="",
        slurm_user="",
        prometheus_url="",
        remote_cancel_attempts=attempts,
    )
    ctx._slurm = slurm  # type: ignore[assignment]
    return ctx


def body(job_id: int | None = 7, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [], "job": {"backend": "slurm", "attempt": 0}}
    if job_id is not None:
        status["job"]["slurmJobId"] = job_id
    meta = {"name": "run", "namespace": "ns", "uid": "uid-1", "generation": 1}
    return {"metadata": {**meta, "annotations": annotations or {}}, "status": status}


def finalize(ctx: OperatorContext, obj: dict[str, Any], retry: int = 0) -> None:
    finalize_remote_jobs(ctx, TRAINING_RUN, obj, retry, slurm_jobs_of(obj), LOG)


def test_a_purged_or_finished_job_counts_as_cancelled(events: list[tuple[str, str]]) -> None:
    slurm = FakeSlurm({8: job(8, Phase.SUCCEEDED, "uid-1")})
    finalize(context(slurm), body(job_id=7))  # 7 purged after MinJobAge, 8 finished
    assert slurm.cancelled == [] and events == []


def test_a_live_job_is_cancelled_once_whether_recorded_or_found_by_key() -> None:
    slurm = FakeSlurm({7: job(7, Phase.RUNNING, "uid-1"), 9: job(9, Phase.PENDING, "uid-1")})
    finalize(context(slurm), body(job_id=7))
    assert slurm.cancelled == [7, 9]


def test_unreachable_slurm_is_retried_and_shown_then_given_up(
    events: list[tuple[str, str]],
) -> None:
    slurm = FakeSlurm({7: job(7, Phase.RUNNING, "uid-1")}, down=True)
    ctx = context(slurm, attempts=3)
    for retry in (0, 1):
        with pytest.raises(kopf.TemporaryError) as raised:
            finalize(ctx, body(), retry)
        assert raised.value.delay == retry_delay(retry)
    [deleting] = ctx.kube.patches[-1]["conditions"]  # type: ignore[attr-defined]
    assert deleting["type"] == "Deleting" and deleting["reason"] == "RemoteCancelRetrying"
    assert "try 2 of 3" in deleting["message"] and SKIP_REMOTE_CANCEL in deleting["message"]
    finalize(ctx, body(), retry=2)  # the last try: the deletion goes on
    [(reason, message)] = events
    assert reason == "RemoteCancelAbandoned" and "uid-1" in message


def test_the_annotation_skips_the_remote_cancel_with_an_event(
    events: list[tuple[str, str]],
) -> None:
    slurm = FakeSlurm(down=True)
    finalize(context(slurm), body(annotations={SKIP_REMOTE_CANCEL: "true"}))
    assert [reason for reason, _ in events] == ["RemoteCancelSkipped"]


def test_retry_delays_grow_and_are_capped() -> None:
    assert [retry_delay(r) for r in range(7)] == [15, 30, 60, 120, 240, 300, 300]
    assert retry_delay(10_000) == finalizers.MAX_DELAY_SECONDS


def test_inference_replicas_purged_meanwhile_count_as_cancelled() -> None:
    key = "svc-uid.v1.r0.a0"
    slurm = FakeSlurm({3: job(3, Phase.RUNNING, key)})
    slurm.get = lambda job_id: (_ for _ in ()).throw(JobNotFound("gone"))  # type: ignore[method-assign]
    assert cancel_replicas(slurm, "svc-uid") == []  # type: ignore[arg-type]
    assert slurm.cancelled == []


def test_cancel_live_skips_duplicates() -> None:
    slurm = FakeSlurm({5: job(5, Phase.RUNNING, "k")})
    assert cancel_live(slurm, [5, 5]) == [5]  # type: ignore[arg-type]


def test_a_recorded_job_slurm_forgot_is_observed_as_lost_not_as_missing() -> None:
    status = {"job": {"backend": "slurm", "slurmJobId": 42, "attempt": 0}}
    run = Resource("TrainingRun", "run", "ns", "uid-1", 1, {}, status)
    observed = job_of(context(FakeSlurm()), run)  # 42 purged after MinJobAge
    assert observed is not None and observed.phase == "Lost" and observed.slurm_job_id == 42
