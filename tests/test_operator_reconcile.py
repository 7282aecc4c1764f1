"""The pure reconcilers, transition by transition (no cluster, no SLURM, no MLflow)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from infinitecontext.crds.models import EvaluationSpec, RegisteredModel
from infinitecontext.operator import conditions as cond
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.jobs import JobObservation
from infinitecontext.operator.workloads.planner import (
    ApplyChildren,
    CancelSlurm,
    InputModel,
    LogRunMetrics,
    Observed,
    Plan,
    RegisterModel,
    RunObservation,
    SetModelAlias,
    SubmitSlurm,
    TagModelVersion,
    evaluation_results,
    input_from_object,
    judge_from_object,
    parse,
    reconcile,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
URI = "http://mlflow.test"
TINY = {"model": {"preset": "tiny"}, "hyperparameters": {"steps": 8, "warmupSteps": 2}}
MODEL = RegisteredModel(run_id="r0", name="base", version="3", uri="models:/base/3")


def resource(
    kind: str = "TrainingRun",
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 1,
) -> Resource:
    return Resource(kind, "run", "ns", "uid-1", generation, spec or dict(TINY), status or {})


def condition(plan: Plan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def step(res: Resource, observed: Observed, now: datetime = NOW) -> tuple[Resource, Plan]:
    plan = reconcile(res, parse(res), observed, now)
    return Resource(
        res.kind, res.name, res.namespace, res.uid, res.generation, res.spec, plan.status
    ), plan


def observed(**kwargs: Any) -> Observed:
    return Observed(tracking_uri=URI, **kwargs)


def test_new_training_run_submits_a_job_and_says_so() -> None:
    _, plan = step(resource(), observed())
    [apply] = plan.actions
    assert isinstance(apply, ApplyChildren)
    assert [o["kind"] for o in apply.objects] == ["ConfigMap", "Job"]
    assert plan.status["phase"] == "Submitted"
    assert plan.status["observedGeneration"] == 1
    assert condition(plan, "Submitted")["status"] == "True"
    assert condition(plan, "Ready")["status"] == "False"
    assert [e.reason for e in plan.events] == ["Submitted"]


def test_running_job_reports_progress_from_the_run() -> None:
    res, _ = step(resource(), observed())
    run = RunObservation("run-9", "RUNNING", {"loss": 2.5}, step=4)
    job = JobObservation("Running", "PodsRunning", name="run-train")
    _, plan = step(res, observed(job=job, run=run))
    assert plan.actions == []
    assert plan.status["phase"] == "Running"
    assert plan.status["progress"] == {"step": 4, "totalSteps": 8, "loss": 2.5}
    assert plan.status["runId"] == "run-9"
    assert condition(plan, "Running")["status"] == "True"


def test_quiet_pass_changes_nothing_and_keeps_transition_times() -> None:
    res, first = step(resource(), observed())
    job = JobObservation("Pending", "PodsPending", name="run-train")
    later = NOW + timedelta(minutes=5)
    _, second = step(res, observed(job=job), later)
    assert second.actions == [] and second.events == []
    assert (
        condition(second, "Submitted")["lastTransitionTime"]
        == condition(first, "Submitted")["lastTransitionTime"]
    )


def test_success_registers_the_model_then_becomes_ready() -> None:
    res, _ = step(resource(), observed())
    job = JobObservation("Succeeded", "Completed", name="run-train")
    run = RunObservation("run-9", "FINISHED", {"loss": 1.0}, step=8, has_model=True)
    res, plan = step(res, observed(job=job, run=run))
    [register] = plan.actions
    assert isinstance(register, RegisterModel)
    assert register.name == "ns.run" and register.source == "runs:/run-9/model"
    assert register.tags["infinitecontext.uid"] == "uid-1"
    assert plan.needs_another_pass
    registered = RegisteredModel(run_id="run-9", name="ns.run", version="1", uri="models:/ns.run/1")
    _, done = step(res, observed(job=job, run=run, registered=registered))
    assert done.status["phase"] == "Succeeded"
    assert condition(done, "Ready")["status"] == "True"
    assert done.status["model"]["uri"] == "models:/ns.run/1"
    assert "Succeeded" in [e.reason for e in done.events]


def test_success_without_a_model_artifact_fails_with_a_reason() -> None:
    res, _ = step(resource(), observed())
    job = JobObservation("Succeeded", "Completed")
    _, plan = step(res, observed(job=job, run=RunObservation("r", "FINISHED")))
    assert plan.status["phase"] == "Failed"
    assert condition(plan, "Ready")["reason"] == "NoModelArtifact"


def test_success_without_a_run_fails_with_a_reason() -> None:
    res, _ = step(resource(), observed())
    _, plan = step(res, observed(job=JobObservation("Succeeded", "Completed")))
    assert condition(plan, "Ready")["reason"] == "NoMlflowRun"
    assert "icx-uid-1" in condition(plan, "Ready")["message"]


def test_finished_run_stays_finished() -> None:
    res = resource(status={"phase": "Succeeded", "observedGeneration": 1, "conditions": []})
    _, plan = step(Resource(**{**res.__dict__, "generation": 2}), observed())
    assert plan.actions == [] and plan.status["phase"] == "Succeeded"
    assert plan.status["observedGeneration"] == 2


AT = NOW.isoformat()


def test_a_finished_run_never_contradicts_itself_after_an_edit() -> None:
    succeeded = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "conditions": [
            {"type": t, "status": "True", "reason": "ModelRegistered", "lastTransitionTime": AT}
            for t in ("Ready", "Succeeded")
        ],
    }
    invalid = {"model": {"config": {"qkRopeHeadDim": 3}}}  # an edit admission missed
    res = resource(spec=invalid, status=succeeded, generation=2)
    _, plan = step(res, observed())
    assert plan.actions == [] and plan.status["phase"] == "Succeeded"
    assert {c["type"]: c["reason"] for c in plan.status["conditions"]} == {
        "Ready": "ModelRegistered",
        "Succeeded": "ModelRegistered",
    }


def test_invalid_spec_ends_ready_false_instead_of_crashing() -> None:
    spec = {"model": {"config": {"qkRopeHeadDim": 3}}}
    _, plan = step(resource(spec=spec), observed())
    assert plan.status["phase"] == "Invalid"
    ready = condition(plan, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "qk_rope_head_dim must be even" in ready["message"]
    assert plan.actions == [] and plan.events[0].type == "Warning"


def test_semantic_errors_are_invalid_too() -> None:
    spec = {
        **TINY,
        "curriculum": [{"seqLen": 128, "untilStep": 4}, {"seqLen": 256, "untilStep": 4}],
    }
    _, plan = step(resource(spec=spec), observed())
    assert "untilStep must grow" in condition(plan, "Ready")["message"]
    uri_data = {**TINY, "data": {"uri": "hf://x/y"}}
    _, plan = step(resource(spec=uri_data), observed())
    assert condition(plan, "Ready")["reason"] == "InvalidSpec"


def test_unreachable_backend_is_shown_and_nothing_is_done() -> None:
    res, _ = step(resource(), observed())
    _, plan = step(res, observed(unavailable="MLflow: ConnectionError"))
    ready = condition(plan, "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "BackendUnavailable"
    assert plan.actions == []


def test_suspend_then_resume_on_kubernetes_toggles_the_job() -> None:
    res, _ = step(resource(), observed())
    running = JobObservation("Running", "PodsRunning", name="run-train")
    suspended_spec = {**TINY, "suspend": True}
    res = Resource(**{**res.__dict__, "spec": suspended_spec, "generation": 2})
    res, plan = step(res, observed(job=running))
    [apply] = plan.actions
    assert isinstance(apply, ApplyChildren) and apply.objects[-1]["spec"]["suspend"] is True
    assert plan.status["phase"] == "Suspended"
    assert condition(plan, "Suspended")["status"] == "True"
    res = Resource(**{**res.__dict__, "spec": dict(TINY), "generation": 3})
    suspended_job = JobObservation("Suspended", "JobSuspended", name="run-train")
    _, plan = step(res, observed(job=suspended_job))
    [apply] = plan.actions
    assert isinstance(apply, ApplyChildren) and apply.objects[-1]["spec"]["suspend"] is False
    assert condition(plan, "Suspended")["reason"] == "Resumed"


SLURM_SPEC = {**TINY, "backend": "slurm", "slurm": {"partition": "debug"}}


def test_slurm_backend_submits_with_the_uid_as_key() -> None:
    _, plan = step(resource(spec=SLURM_SPEC), observed())
    [submit] = plan.actions
    assert isinstance(submit, SubmitSlurm)
    assert submit.request.key == "uid-1" and submit.request.partition == "debug"
    assert plan.status["job"] == {"backend": "slurm", "attempt": 0}


def test_slurm_suspend_cancels_and_resume_submits_a_new_attempt() -> None:
    res, _ = step(resource(spec=SLURM_SPEC), observed())
    job = JobObservation("Running", "Running", slurm_job_id=42)
    res, _ = step(res, observed(job=job))
    res = Resource(**{**res.__dict__, "spec": {**SLURM_SPEC, "suspend": True}})
    res, plan = step(res, observed(job=job))
    assert plan.actions == [CancelSlurm(42)]
    cancelled = JobObservation("Failed", "Cancelled", slurm_job_id=42)
    res = Resource(**{**res.__dict__, "spec": dict(SLURM_SPEC)})
    _, plan = step(res, observed(job=cancelled))
    [submit] = plan.actions
    assert isinstance(submit, SubmitSlurm) and submit.request.key == "uid-1.1"


def test_slurm_infrastructure_failure_is_retried_but_code_errors_fail_fast() -> None:
    res, _ = step(resource(spec=SLURM_SPEC), observed())
    node_fail = JobObservation("Failed", "NodeFail", "node died", retryable=True, slurm_job_id=7)
    _, plan = step(res, observed(job=node_fail))
    [submit] = plan.actions
    assert isinstance(submit, SubmitSlurm) and submit.attempt == 1
    exit_1 = JobObservation("Failed", "Failed", "exit code 1", slurm_job_id=7)
    _, plan = step(res, observed(job=exit_1))
    assert plan.status["phase"] == "Failed" and condition(plan, "Failed")["reason"] == "Failed"


def test_slurm_deadline_cancels_the_job() -> None:
    spec = {**SLURM_SPEC, "activeDeadlineSeconds": 60}
    res, _ = step(resource(spec=spec), observed())
    job = JobObservation("Running", "Running", slurm_job_id=5)
    _, plan = step(res, observed(job=job), NOW + timedelta(minutes=2))
    assert plan.actions == [CancelSlurm(5)]
    assert condition(plan, "Ready")["reason"] == "DeadlineExceeded"


def lost_slurm_run(annotations: dict[str, str] | None = None) -> tuple[Resource, JobObservation]:
    res, _ = step(resource(spec=SLURM_SPEC), observed())
    res, _ = step(res, observed(job=JobObservation("Running", "Running", slurm_job_id=42)))
    res = Resource(**{**res.__dict__, "annotations": annotations or {}})
    return res, JobObservation("Lost", "JobLost", "SLURM no longer knows job 42", slurm_job_id=42)


def test_a_lost_slurm_job_is_not_submitted_again_but_asked_about() -> None:
    res, lost = lost_slurm_run()
    res, plan = step(res, observed(job=lost))
    assert plan.actions == []
    ready = condition(plan, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "JobLost")
    assert "infinitecontext.dev/resubmit-lost-job=42" in ready["message"]
    assert [e.reason for e in plan.events] == ["JobLost"]
    _, again = step(res, observed(job=lost, run=RunObservation("r", "RUNNING")))
    assert again.actions == [] and again.events == []  # asked once, still waiting


def test_a_lost_slurm_job_is_submitted_again_when_the_annotation_names_it() -> None:
    res, lost = lost_slurm_run({"infinitecontext.dev/resubmit-lost-job": "41"})
    _, plan = step(res, observed(job=lost))
    assert plan.actions == []  # another job's id: not an answer about this one
    res, lost = lost_slurm_run({"infinitecontext.dev/resubmit-lost-job": "42"})
    _, plan = step(res, observed(job=lost))
    [submit] = plan.actions
    assert isinstance(submit, SubmitSlurm) and submit.request.key == "uid-1.1"


def test_a_lost_slurm_job_whose_run_ended_takes_the_run_as_its_result() -> None:
    res, lost = lost_slurm_run()
    finished = RunObservation("r", "FINISHED", has_model=True)
    _, plan = step(res, observed(job=lost, run=finished))
    [register] = plan.actions
    assert isinstance(register, RegisterModel) and register.run_id == "r"
    _, plan = step(res, observed(job=lost, run=RunObservation("r", "FAILED")))
    assert (
        plan.status["phase"] == "Failed" and "ended FAILED" in condition(plan, "Ready")["message"]
    )


ALIGN = {"baseModel": {"trainingRun": "base"}}


def test_alignment_waits_for_its_input() -> None:
    waiting = InputModel(False, message="waiting for TrainingRun base (phase Running)")
    _, plan = step(resource("Alignment", ALIGN), observed(input=waiting))
    assert plan.actions == []
    assert plan.status["phase"] == "Waiting"
    assert condition(plan, "Ready")["reason"] == "WaitingForInput"


def test_alignment_with_ready_input_passes_it_to_the_job_and_lineage() -> None:
    res, plan = step(resource("Alignment", ALIGN), observed(input=InputModel(True, MODEL)))
    [apply] = plan.actions
    assert isinstance(apply, ApplyChildren)
    env = {
        e["name"]: e.get("value")
        for e in apply.objects[-1]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["ICX_INPUT_MODEL_URI"] == "models:/base/3"
    job = JobObservation("Succeeded", "Completed")
    run = RunObservation("r2", "FINISHED", has_model=True)
    _, plan = step(res, observed(input=InputModel(True, MODEL), job=job, run=run))
    [register] = plan.actions
    assert isinstance(register, RegisterModel)
    assert register.tags["infinitecontext.parent_model"] == "models:/base/3"


def test_alignment_whose_parent_goes_mid_run_still_registers_its_model() -> None:
    res, _ = step(resource("Alignment", ALIGN), observed(input=InputModel(True, MODEL)))
    gone = InputModel(False, message="TrainingRun base does not exist (yet)")
    res, plan = step(res, observed(input=gone, job=JobObservation("Running", "PodsRunning")))
    assert plan.status["phase"] == "Running"
    job = JobObservation("Succeeded", "Completed")
    run = RunObservation("r2", "FINISHED", has_model=True)
    _, plan = step(res, observed(input=gone, job=job, run=run))
    [register] = plan.actions
    assert isinstance(register, RegisterModel)
    assert register.tags["infinitecontext.parent_model"] == "models:/base/3"


EVAL = {
    "model": {"mlflow": {"name": "base", "version": "3"}},
    "thresholds": {"passkeyAccuracy": 0.5},
}


def test_evaluation_writes_results_and_tags_the_version() -> None:
    res, _ = step(resource("Evaluation", EVAL), observed(input=InputModel(True, MODEL)))
    job = JobObservation("Succeeded", "Completed")
    metrics = {"passkey_acc_512": 0.5, "passkey_acc_1k": 0.75, "passkey_acc_mean": 0.625}
    run = RunObservation("r3", "FINISHED", metrics)
    _, plan = step(res, observed(input=InputModel(True, MODEL), job=job, run=run))
    assert plan.status["phase"] == "Succeeded"
    results = plan.status["results"]
    assert results["passkeyAccuracy"] == 0.625 and results["passed"] is True
    assert results["perLength"] == [
        {"length": 512, "accuracy": 0.5},
        {"length": 1024, "accuracy": 0.75},
    ]
    tag, metrics, alias = plan.actions
    assert isinstance(tag, TagModelVersion) and (tag.name, tag.version) == ("base", "3")
    assert tag.tags["infinitecontext.eval.ns.run.passed"] == "true"
    assert isinstance(metrics, LogRunMetrics) and metrics.run_id == "r0"  # the version's run
    assert metrics.metrics == {
        "eval/ns/run/passkey_accuracy": 0.625,
        "eval/ns/run/passkey_accuracy_512": 0.5,
        "eval/ns/run/passkey_accuracy_1024": 0.75,
        "eval/ns/run/passed": 1.0,
    }
    assert alias == SetModelAlias("base", "3", "champion")
    assert condition(plan, "Passed")["status"] == "True"


def test_a_failing_evaluation_logs_its_metrics_but_sets_no_alias() -> None:
    spec = {**EVAL, "thresholds": {"passkeyAccuracy": 0.9}, "aliasOnPass": "prod"}
    res, _ = step(resource("Evaluation", spec), observed(input=InputModel(True, MODEL)))
    job = JobObservation("Succeeded", "Completed")
    run = RunObservation("r3", "FINISHED", {"passkey_acc_mean": 0.5})
    _, plan = step(res, observed(input=InputModel(True, MODEL), job=job, run=run))
    assert plan.status["results"]["passed"] is False
    assert [type(a) for a in plan.actions] == [TagModelVersion, LogRunMetrics]
    [metrics] = [a for a in plan.actions if isinstance(a, LogRunMetrics)]
    assert metrics.metrics["eval/ns/run/passed"] == 0.0


def test_an_empty_alias_on_pass_sets_none() -> None:
    spec = {**EVAL, "aliasOnPass": ""}
    res, _ = step(resource("Evaluation", spec), observed(input=InputModel(True, MODEL)))
    job = JobObservation("Succeeded", "Completed")
    run = RunObservation("r3", "FINISHED", {"passkey_acc_mean": 0.75})
    _, plan = step(res, observed(input=InputModel(True, MODEL), job=job, run=run))
    assert plan.status["results"]["passed"] is True
    assert not [a for a in plan.actions if isinstance(a, SetModelAlias)]


def test_the_input_version_is_pinned_once_the_job_is_submitted() -> None:
    """An Evaluation of `alias: champion` keeps the version its job downloaded, even when
    the alias moves (e.g. another Evaluation passed) while the job runs."""
    spec = {**EVAL, "model": {"mlflow": {"name": "base", "alias": "champion"}}}
    res, plan = step(resource("Evaluation", spec), observed(input=InputModel(True, MODEL)))
    assert plan.status["inputModel"]["version"] == "3"
    moved = RegisteredModel(run_id="r9", name="base", version="4", uri="models:/base/4")
    job = JobObservation("Running", "Running")
    res, plan = step(res, observed(input=InputModel(True, moved), job=job))
    assert plan.status["inputModel"]["version"] == "3"
    done = JobObservation("Succeeded", "Completed")
    run = RunObservation("r3", "FINISHED", {"passkey_acc_mean": 0.75})
    _, plan = step(res, observed(input=InputModel(True, moved), job=done, run=run))
    assert plan.status["model"]["uri"] == "models:/base/3"
    assert SetModelAlias("base", "3", "champion") in plan.actions


def test_evaluation_thresholds() -> None:
    spec = EvaluationSpec.model_validate(
        {**EVAL, "thresholds": {"passkeyAccuracy": 0.9, "judgeScore": 0.5}}
    )
    assert evaluation_results(spec, {"passkey_acc_mean": 0.95}).passed is False  # no judge
    assert evaluation_results(spec, {"passkey_acc_mean": 0.95, "judge_score": 0.6}).passed
    assert not evaluation_results(spec, {"passkey_acc_mean": 0.5, "judge_score": 0.6}).passed


def test_input_from_object() -> None:
    assert not input_from_object("TrainingRun", "x", None).ready
    done = {"status": {"phase": "Succeeded", "model": MODEL.model_dump(by_alias=True)}}
    found = input_from_object("TrainingRun", "x", done)
    assert found.ready and found.model == MODEL
    failed = input_from_object("TrainingRun", "x", {"status": {"phase": "Failed"}})
    assert not failed.ready and failed.reason == "InputFailed"


def test_conditions_helpers() -> None:
    conditions = cond.set_condition([], "Ready", "False", "A", "", NOW, 1)
    same = cond.set_condition(conditions, "Ready", "False", "B", "", NOW + timedelta(1), 2)
    assert same[0].last_transition_time == NOW and same[0].reason == "B"
    moved = cond.set_condition(same, "Ready", "True", "C", "", NOW + timedelta(2), 2)
    assert moved[0].last_transition_time == NOW + timedelta(2)
    assert cond.is_true(moved, "Ready") and not cond.is_true(moved, "Running")


# ---------------------------------------------------------------- the Evaluation's judge

JUDGED = {**EVAL, "judge": {"inferenceService": "judge"}, "thresholds": {"judgeScore": 0.5}}
SERVING = {
    "status": {
        "url": "http://judge.ns.svc.cluster.local:8000",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
    }
}


def _recipe_of(plan: Plan) -> dict[str, Any]:
    import yaml

    [apply] = plan.actions
    assert isinstance(apply, ApplyChildren)
    config_map = apply.objects[0]
    return dict(yaml.safe_load(config_map["data"]["recipe.yaml"]))


def test_judge_from_object() -> None:
    missing = judge_from_object("judge", None)
    assert not missing.ready and missing.reason == "WaitingForInput"
    assert "InferenceService judge does not exist" in missing.message
    pending = {"status": {"phase": "Progressing", "url": "http://x:8000", "conditions": [
        {"type": "Ready", "status": "False", "reason": "NotServing"}]}}  # fmt: skip
    waiting = judge_from_object("judge", pending)
    assert not waiting.ready and "NotServing" in waiting.message
    found = judge_from_object("judge", SERVING)
    assert found.ready and found.endpoint is not None
    assert found.endpoint.url == "http://judge.ns.svc.cluster.local:8000/v1"
    assert found.endpoint.served_model == "judge"  # the InferenceService serves its name
    slurm = {
        "status": {"url": "http://node1:8123/v1/", "conditions": SERVING["status"]["conditions"]}
    }
    assert judge_from_object("j", slurm).endpoint.url == "http://node1:8123/v1"  # type: ignore[union-attr]


def test_evaluation_waits_for_its_judge_inference_service() -> None:
    ready_input = InputModel(True, MODEL)
    for judge in (None, judge_from_object("judge", None)):
        _, plan = step(resource("Evaluation", JUDGED), observed(input=ready_input, judge=judge))
        assert plan.actions == [] and plan.status["phase"] == "Waiting"
        assert condition(plan, "Ready")["reason"] == "WaitingForInput"
    res, plan = step(
        resource("Evaluation", JUDGED),
        observed(input=ready_input, judge=judge_from_object("judge", SERVING)),
    )
    assert plan.status["phase"] == "Submitted"
    assert plan.status["judge"] == {
        "url": "http://judge.ns.svc.cluster.local:8000/v1",
        "servedModel": "judge",
    }
    judge = _recipe_of(plan)["judge"]
    assert judge["url"] == "http://judge.ns.svc.cluster.local:8000/v1"
    assert judge["model"] == "judge" and judge["max_items"] == 16
    # Submitted: a judge that stops serving no longer matters (the job has its URL).
    job = JobObservation("Running", "PodsRunning")
    gone = judge_from_object("judge", None)
    _, plan = step(res, observed(input=ready_input, judge=gone, job=job))
    assert plan.status["phase"] == "Running"
    assert plan.status["judge"]["url"].endswith(":8000/v1")


def test_evaluation_with_a_judge_url_and_rubric_runs_the_judge_after_the_grid() -> None:
    rubric = 'Score 5: "exact".\nScore 1: anything else; $(rm -rf /) `x`'
    spec = {**EVAL, "judge": {"url": "http://judge:9000/v1", "rubric": rubric, "guided": True}}
    res, plan = step(resource("Evaluation", spec), observed(input=InputModel(True, MODEL)))
    recipe = _recipe_of(plan)
    assert recipe["judge"] == {
        "url": "http://judge:9000/v1",
        "model": None,
        "rubric": rubric,
        "api": "completions",
        "guided": True,
        "max_items": 16,
        "max_tokens": 512,
        "timeout": 120.0,
    }
    [apply] = plan.actions
    assert isinstance(apply, ApplyChildren)
    command = apply.objects[-1]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert not any("judge" in arg for arg in command)  # user text only in the recipe env
    assert command[-6:] == [
        "--model-dir", "/checkpoints/uid-1/input-model", "--out", "/checkpoints/uid-1/eval",
        "--run-name", "icx-uid-1",
    ]  # fmt: skip
    job = JobObservation("Succeeded", "Completed")
    metrics = {"passkey_acc_mean": 0.75, "judge_score": 0.625, "judge_items": 4.0}
    run = RunObservation("r4", "FINISHED", metrics)
    _, plan = step(res, observed(input=InputModel(True, MODEL), job=job, run=run))
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["results"]["judgeScore"] == 0.625
    tag, metrics, _ = plan.actions
    assert isinstance(tag, TagModelVersion)
    assert tag.tags["infinitecontext.eval.ns.run.judge_score"] == "0.6250"
    assert isinstance(metrics, LogRunMetrics)
    assert metrics.metrics["eval/ns/run/judge_score"] == 0.625
    assert "judge score 0.625" in condition(plan, "Ready")["message"]


def test_an_unreachable_or_unparsable_judge_fails_the_evaluation_with_a_reason() -> None:
    spec = {**EVAL, "judge": {"url": "http://judge:9/v1"}}
    res, _ = step(resource("Evaluation", spec), observed(input=InputModel(True, MODEL)))
    job = JobObservation("Succeeded", "Completed")
    cases = {
        "JudgeUnavailable": {"judge_items": 4.0, "judge_request_errors": 4.0},
        "JudgeUnparsable": {"judge_items": 4.0, "judge_unparsable": 4.0},
        "NoJudgeScore": {},
    }
    for reason, judge_metrics in cases.items():
        run = RunObservation("r5", "FINISHED", {"passkey_acc_mean": 1.0, **judge_metrics})
        _, plan = step(res, observed(input=InputModel(True, MODEL), job=job, run=run))
        assert plan.status["phase"] == "Failed"
        ready = condition(plan, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", reason)
        assert condition(plan, "Passed")["status"] == "False"
        assert plan.status["results"]["passkeyAccuracy"] == 1.0
        assert plan.status["results"]["passed"] is False
        assert not [a for a in plan.actions if isinstance(a, TagModelVersion)]
    run = RunObservation("r5", "FINISHED", {"passkey_acc_mean": 1.0, **cases["JudgeUnavailable"]})
    _, plan = step(res, observed(input=InputModel(True, MODEL), job=job, run=run))
    assert (
        "the judge at http://judge:9/v1 answered none of 4 requests"
        in (condition(plan, "Ready")["message"])
    )
