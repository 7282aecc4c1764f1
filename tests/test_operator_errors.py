"""Permanent errors: refused at admission where the schema can tell, else Ready=False
with a reason (InvalidSpec, Rejected) that is not retried until the spec changes.
Pure tests (no cluster): the planner, the error classification and the schema."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from mlflow.exceptions import RestException
from pydantic import ValidationError

from infinitecontext.crds.models import (
    TRAINING_RUN,
    AlignmentSpec,
    InferenceServiceSpec,
    SlurmOptions,
    TrainingRunSpec,
    WorkloadSpec,
)
from infinitecontext.operator import conditions as cond
from infinitecontext.operator import registry
from infinitecontext.operator.backoff import Backoff
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.failures import refusal
from infinitecontext.operator.inference.handlers import poll_inference
from infinitecontext.operator.inference.planner import InvalidSpec as InferenceInvalid
from infinitecontext.operator.inference.planner import invalid_plan
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.handlers import _in_flight, poll_object
from infinitecontext.operator.workloads.planner import (
    Observed,
    Plan,
    SubmitSlurm,
    parse,
    reconcile,
)
from infinitecontext.operator.workloads.slurm import observe_slurm
from infinitecontext.slurm_bridge.errors import (
    InvalidJobRequest,
    SlurmAuthError,
    SlurmRejected,
    SlurmUnavailable,
)
from infinitecontext.slurm_bridge.parse import job_status

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SLURM_SPEC = {
    "model": {"preset": "tiny"},
    "hyperparameters": {"steps": 8, "warmupSteps": 2},
    "backend": "slurm",
    "slurm": {"partition": "nosuch"},
}


def resource(spec: dict[str, Any], status: dict[str, Any], generation: int = 1) -> Resource:
    return Resource("TrainingRun", "run", "ns", "uid-1", generation, spec, status)


def ready(plan: Plan) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == "Ready")


def test_a_refused_submission_is_invalid_and_waits_for_a_spec_change() -> None:
    fresh = resource(SLURM_SPEC, {})
    spec = parse(fresh)
    submitted = reconcile(fresh, spec, Observed(), NOW)
    assert isinstance(submitted.actions[0], SubmitSlurm)
    refused = cond.Refusal(cond.REJECTED, "SLURM refused the job: invalid partition nosuch")
    plan = reconcile(fresh, spec, Observed(refused=refused), NOW)
    assert plan.status["phase"] == "Invalid"
    assert ready(plan) | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "False",
        "reason": "Rejected",
        "message": "SLURM refused the job: invalid partition nosuch",
        "lastTransitionTime": None,
        "observedGeneration": 1,
    }
    assert [e.reason for e in plan.events] == ["Invalid"]
    assert "job" not in plan.status and not plan.actions

    again = reconcile(resource(SLURM_SPEC, plan.status), spec, Observed(), NOW)
    assert again.status == plan.status and not again.actions and not again.events

    edited = {**SLURM_SPEC, "slurm": {"partition": "debug"}}
    changed = resource(edited, plan.status, generation=2)
    retried = reconcile(changed, parse(changed), Observed(), NOW)
    assert isinstance(retried.actions[0], SubmitSlurm)
    assert retried.status["phase"] == "Submitted"


def test_a_job_request_the_bridge_refuses_is_invalid_spec_not_a_crash() -> None:
    fresh = resource(SLURM_SPEC, {})
    spec = parse(fresh)
    assert isinstance(spec, WorkloadSpec)
    relative = SlurmOptions.model_construct(working_directory="relative/dir")
    plan = reconcile(fresh, spec.model_copy(update={"slurm": relative}), Observed(), NOW)
    assert plan.status["phase"] == "Invalid" and not plan.actions
    assert ready(plan)["reason"] == "InvalidSpec"
    assert "working_directory must be an absolute path" in ready(plan)["message"]


def test_the_timer_leaves_invalid_objects_alone_until_the_spec_changes() -> None:
    def body(phase: str, observed: int, generation: int) -> dict[str, Any]:
        status = {"phase": phase, "observedGeneration": observed}
        return {"metadata": {"generation": generation}, "status": status}

    assert not _in_flight(body=body("Invalid", 3, 3))
    assert _in_flight(body=body("Invalid", 3, 4))
    assert _in_flight(body=body("Running", 3, 3))


def _api_error(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Unprocessable Entity")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


def test_refusals_are_told_apart_from_outages() -> None:
    assert refusal(InvalidJobRequest("partition 'a b' must match")) == cond.Refusal(
        cond.INVALID_SPEC, "the SLURM job request is invalid: partition 'a b' must match"
    )
    rejected = refusal(SlurmRejected("invalid partition specified"))
    assert rejected is not None and rejected.reason == cond.REJECTED
    invalid_child = refusal(_api_error(422, 'Service "a.b" is invalid'))
    assert invalid_child == cond.Refusal(
        cond.REJECTED, 'the API server refused a child: Service "a.b" is invalid'
    )
    assert refusal(registry.RegistryRejected("MLflow: bad name")) is not None
    for transient in (
        SlurmUnavailable("down"),
        SlurmAuthError("token refused"),
        _api_error(500, "etcd timeout"),
        _api_error(409, "conflict"),
        RuntimeError("bug"),
    ):
        assert refusal(transient) is None, transient


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("INVALID_PARAMETER_VALUE", registry.RegistryRejected),
        ("PERMISSION_DENIED", registry.RegistryRejected),
        ("INTERNAL_ERROR", registry.RegistryUnavailable),
        ("TEMPORARILY_UNAVAILABLE", registry.RegistryUnavailable),
    ],
)
def test_mlflow_4xx_answers_are_refusals_and_5xx_are_outages(code: str, expected: type) -> None:
    def search(*_: Any, **__: Any) -> Any:
        raise RestException({"error_code": code, "message": "no"})

    class Mlflow:
        search_model_versions = staticmethod(search)

    with pytest.raises(expected):
        registry.find_version(Mlflow(), "name", "run")
    with pytest.raises(registry.RegistryUnavailable):
        registry.find_version(_Unreachable(), "name", "run")


class _Unreachable:
    def search_model_versions(self, *_: Any) -> Any:
        raise ConnectionError("connection refused")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("resources", "cpu"), "inf"),
        (("resources", "cpu"), "-4"),
        (("resources", "cpu"), "1e400"),
        (("resources", "memory"), "lots"),
        (("slurm", "workingDirectory"), "/tmp\n/etc"),
        (("slurm", "workingDirectory"), "relative"),
        (("slurm", "containerImage"), "image\x07"),
        (("slurm", "partition"), "a b"),
        (("mlflow", "registeredModelName"), "it's"),
        (("mlflow", "registeredModelName"), "team/model"),
        (("hyperparameters", "steps"), 1_000_000_000_000),
    ],
)
def test_the_schema_refuses_values_no_backend_can_run(field: tuple[str, str], value: Any) -> None:
    section, key = field
    spec: dict[str, Any] = {"model": {"preset": "tiny"}, "backend": "slurm"}
    spec[section] = {key: value}
    with pytest.raises(ValidationError):
        TrainingRunSpec.model_validate(spec)


def test_an_input_model_name_that_would_break_the_search_filter_is_refused() -> None:
    with pytest.raises(ValidationError):
        AlignmentSpec.model_validate({"baseModel": {"mlflow": {"name": "x' or name != '"}}})


def test_an_inference_service_refused_by_a_backend_is_degraded_and_says_why_once() -> None:
    spec = {"model": {"mlflow": {"name": "m", "version": "1"}}}
    InferenceServiceSpec.model_validate(spec)
    isvc = Resource("InferenceService", "svc", "ns", "uid-2", 1, spec, {})
    refused = InferenceInvalid("the API server refused a child: bad", cond.REJECTED)
    plan = invalid_plan(isvc, refused, NOW)
    assert ready(plan)["reason"] == "Rejected" and ready(plan)["status"] == "False"
    assert [e.reason for e in plan.events] == ["Rejected"]
    again = invalid_plan(Resource(**{**isvc.__dict__, "status": plan.status}), refused, NOW)
    assert again.events == []
    assert cond.refused_at(_conditions(plan.status), 1)
    assert not cond.refused_at(_conditions(plan.status), 2)


def _conditions(status: dict[str, Any]) -> list[Any]:
    from infinitecontext.crds.models import Condition

    return [Condition.model_validate(c) for c in status["conditions"]]


_BAD = "BadConstraints"


@pytest.mark.parametrize(
    ("state_reason", "exit_code", "reason"),
    [
        (
            "BadConstraints",
            {"return_code": {"number": 1}, "signal": {"id": {"number": 9}}},
            "BadConstraints",
        ),
        ("JobLaunchFailure", 256, "JobLaunchFailure"),
        ("RaisedSignal", 9, "Signaled"),
        ("NonZeroExitCode", 256, "Failed"),
    ],
)
def test_a_failed_slurm_job_is_reported_with_slurms_own_cause(
    state_reason: str, exit_code: Any, reason: str
) -> None:
    job = {
        "job_id": 7,
        "job_state": ["FAILED"],
        "exit_code": exit_code,
        "state_reason": state_reason,
    }
    assert job_status(job).reason == reason


def test_a_failed_slurm_jobs_message_ends_with_its_last_output() -> None:
    job = {"job_id": 7, "job_state": "FAILED", "exit_code": 256, "state_reason": "NonZeroExitCode"}
    tail = "Traceback (most recent call last): | FileNotFoundError: /data/missing.jsonl"
    seen = observe_slurm(job_status(job), tail)
    assert seen.phase == "Failed" and seen.reason == "Failed"
    assert seen.message == f"SLURM job 7 FAILED, exit code 1; the job's last output: {tail}"


def test_an_outage_is_retried_5_s_after_then_twice_as_late_up_to_300_s() -> None:
    backoff = Backoff()
    delays = [backoff.failed("uid", now=100.0).delay for _ in range(9)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert backoff.wait_left("uid", now=250.0) == 150.0
    assert backoff.failed("uid", 0).describe("MLflow: refused") == (
        "MLflow: refused (attempt 10; next attempt in 300 s)"
    )
    backoff.recovered("uid")
    assert backoff.wait_left("uid", now=0.0) == 0.0
    assert backoff.failed("uid", now=0.0).attempts == 1


def test_the_timer_sleeps_until_the_next_attempt_is_due_without_a_pass() -> None:
    ctx = OperatorContext(
        kube=None,  # type: ignore[arg-type]  # no pass may run: it would need them
        dynamic=None,  # type: ignore[arg-type]
        tracking_uri="",
        slurm_url="",
        slurm_user="",
        prometheus_url="",
    )
    ctx.backoff.failed("uid-1", time.monotonic())
    body = {"metadata": {"uid": "uid-1", "generation": 1}, "spec": {}, "status": {}}
    with pytest.raises(kopf.TemporaryError) as retry:
        poll_object(ctx, TRAINING_RUN, body)
    assert retry.value.delay is not None and 4 < retry.value.delay <= 5
    with pytest.raises(kopf.TemporaryError):
        poll_inference(ctx, body)
