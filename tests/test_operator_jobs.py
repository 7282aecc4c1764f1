"""Rendering of Jobs, Indexed Jobs, SLURM requests and trainer recipes (pure)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from infinitecontext.crds.models import (
    AlignmentSpec,
    EvaluationSpec,
    TrainingRunSpec,
    WorkloadSpec,
)
from infinitecontext.operator.kube import status_patch
from infinitecontext.operator.workloads.jobs import job_name, observe_job, render_children
from infinitecontext.operator.workloads.recipe import (
    RECIPE_PATH,
    Owner,
    WorkloadCommand,
    accuracy_by_length,
    command,
    recipe_for,
)
from infinitecontext.operator.workloads.slurm import cpus, memory_mb, observe_slurm, slurm_request
from infinitecontext.slurm_bridge.models import JobStatus
from infinitecontext.slurm_bridge.states import Phase

OWNER = Owner("TrainingRun", "tiny", "ns", "0b6f5e2a-uid")


def spec(**extra: Any) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate({"model": {"preset": "tiny"}, **extra})


def work_of(owner: Owner, s: WorkloadSpec, tracking_uri: str = "http://m") -> WorkloadCommand:
    return command(owner, s, recipe_for(owner, s), tracking_uri)


def children(s: TrainingRunSpec, suspend: bool = False) -> list[dict[str, Any]]:
    return render_children(OWNER, s, work_of(OWNER, s, "http://mlflow"), suspend)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_single_node_job() -> None:
    [_, job] = children(spec(resources={"gpusPerNode": 1, "cpu": "4", "memory": "16Gi"}))
    assert job["kind"] == "Job" and job["metadata"]["name"] == "tiny-train"
    assert job["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert "completionMode" not in job["spec"]
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["restartPolicy"] == "Never"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert container["command"][-5:] == ["icx", "train", "sft", "--recipe", RECIPE_PATH]
    env = env_of(job)
    assert env["NNODES"] == "1" and env["NODE_RANK"] == "0"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow"
    assert not any("RECIPE" in name for name in env)
    assert container["volumeMounts"] == [
        {"name": "recipe", "mountPath": "/etc/icx", "readOnly": True},
        {"name": "checkpoints", "mountPath": "/checkpoints"},
    ]


def test_the_recipe_is_a_config_map_owned_like_the_job() -> None:
    [config_map, job] = children(spec())
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"] == job["metadata"]  # name, labels, owner reference
    recipe = yaml.safe_load(config_map["data"]["recipe.yaml"])
    assert recipe["mlflow"]["run_name"] == f"icx-{OWNER.uid}"
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "recipe", "configMap": {"name": job["metadata"]["name"]}} in volumes


def test_several_nodes_make_an_indexed_job_and_a_headless_service() -> None:
    _, service, job = children(spec(resources={"nodes": 3, "gpusPerNode": 8}))
    name = job_name(OWNER)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert job["spec"]["template"]["spec"]["subdomain"] == name
    env = env_of(job)
    assert env["MASTER_ADDR"] == f"{name}-0.{name}"
    assert env["NNODES"] == "3" and env["NPROC_PER_NODE"] == "8"
    assert "job-completion-index" in env["NODE_RANK"]["fieldRef"]["fieldPath"]
    argv = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert argv[0] == "torchrun" and "--node_rank=$(NODE_RANK)" in argv
    assert "--no-python" in argv


def test_pod_failure_policy_fails_fast_on_our_errors_and_retries_disruptions() -> None:
    [_, job] = children(spec(retryPolicy={"backoffLimit": 5}, activeDeadlineSeconds=600))
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailJob"
    codes = rules[1]["onExitCodes"]["values"]
    assert 1 in codes and 127 in codes and 137 not in codes
    assert job["spec"]["backoffLimit"] == 5 and job["spec"]["activeDeadlineSeconds"] == 600


def test_backend_options_reach_the_pod() -> None:
    s = spec(
        kubernetes={
            "image": "registry/trainer:1",
            "nodeSelector": {"gpu": "h100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "training",
        },
        checkpoint={"persistentVolumeClaim": "ckpt"},
    )
    [_, job] = children(s, suspend=True)
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["suspend"] is True
    assert pod["containers"][0]["image"] == "registry/trainer:1"
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "training"
    assert pod["volumes"][1:] == [
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}}
    ]


def test_long_names_stay_within_hostname_limits() -> None:
    owner = Owner("TrainingRun", "x" * 200, "ns", "uid")
    assert len(job_name(owner)) <= 50


@pytest.mark.parametrize(
    ("status", "phase", "reason"),
    [
        ({"conditions": [{"type": "Complete", "status": "True"}]}, "Succeeded", "Complete"),
        (
            {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]},
            "Failed",
            "PodFailurePolicy",
        ),
        ({"conditions": [{"type": "Suspended", "status": "True"}]}, "Suspended", "JobSuspended"),
        ({"active": 1, "ready": 1}, "Running", "PodsRunning"),
        ({"active": 1, "ready": 0}, "Pending", "PodsPending"),
        ({}, "Pending", "PodsPending"),
    ],
)
def test_observe_job(status: dict[str, Any], phase: str, reason: str) -> None:
    seen = observe_job({"metadata": {"name": "j"}, "status": status})
    assert (seen.phase, seen.reason) == (phase, reason)


def test_slurm_request_from_spec() -> None:
    s = TrainingRunSpec.model_validate(
        {
            "model": {"preset": "tiny"},
            "backend": "slurm",
            "slurm": {"partition": "gpu", "account": "ml", "qos": "high", "timeLimitMinutes": 30},
            "resources": {"nodes": 2, "gpusPerNode": 4, "cpu": "8", "memory": "32Gi"},
        }
    )
    request = slurm_request(OWNER, s, work_of(OWNER, s), attempt=2)
    assert request.key == f"{OWNER.uid}.2"
    assert (request.partition, request.account, request.qos) == ("gpu", "ml", "high")
    assert request.nodes == 2 and request.gpus_per_node == 4 and request.cpus_per_node == 8
    assert request.memory_mb == 32 * 1024 and request.time_limit_minutes == 30
    assert request.torchrun is not None and request.torchrun.nproc_per_node == 4
    assert request.environment["MLFLOW_TRACKING_URI"] == "http://m"
    assert request.command[-2:] == ["--recipe", f"/checkpoints/{OWNER.uid}/recipe.yaml"]
    assert list(request.files) == [f"/checkpoints/{OWNER.uid}/recipe.yaml"]


def test_quantities() -> None:
    assert memory_mb("4Gi") == 4096 and memory_mb("512Mi") == 512 and memory_mb("1G") == 954
    assert cpus("500m") == 1 and cpus("2") == 2 and cpus("2500m") == 3
    with pytest.raises(ValueError):
        memory_mb("lots")


def _slurm_status(state: str, phase: Phase, reason: str, exit_code: int | None) -> JobStatus:
    return JobStatus(7, "n", state, phase, reason, exit_code, None, "k", "", "/", "", "")


def test_observe_slurm() -> None:
    seen = observe_slurm(_slurm_status("NODE_FAIL", Phase.FAILED, "NodeFail", None))
    assert seen.phase == "Failed" and seen.retryable and seen.slurm_job_id == 7
    seen = observe_slurm(_slurm_status("FAILED", Phase.FAILED, "Failed", 1))
    assert not seen.retryable and "exit code 1" in seen.message
    assert (
        observe_slurm(_slurm_status("RUNNING", Phase.RUNNING, "Running", None)).phase == "Running"
    )


def test_recipes_are_the_trainers_typed_recipes() -> None:
    from infinitecontext.trainer.recipe import CurriculumStage, DPORecipe, EvalSpec, SFTRecipe

    s = spec(
        curriculum=[{"seqLen": 128, "untilStep": 4}],
        hyperparameters={"steps": 8, "warmupSteps": 2, "learningRate": 0.002},
    )
    sft = recipe_for(OWNER, s)
    assert isinstance(sft, SFTRecipe) and sft.optim.lr == 0.002
    assert sft.train.curriculum == (CurriculumStage(128, 4),)
    align = AlignmentSpec.model_validate({"baseModel": {"trainingRun": "tiny"}})
    assert isinstance(recipe_for(Owner("Alignment", "a", "ns", "u"), align), DPORecipe)
    ev = EvaluationSpec.model_validate({"model": {"trainingRun": "tiny"}})
    assert isinstance(recipe_for(Owner("Evaluation", "e", "ns", "u"), ev), EvalSpec)


def test_the_recipe_file_reads_back_to_the_same_recipe() -> None:
    """What the job reads: floats still floats (1e-05), tuples as lists."""
    from infinitecontext.trainer.recipe import DPORecipe, SFTRecipe, from_dict

    align = AlignmentSpec.model_validate(
        {"baseModel": {"trainingRun": "t"}, "dpo": {"learningRate": 1e-5}}
    )
    owner = Owner("Alignment", "a", "ns", "u")
    work = work_of(owner, align)
    loaded = from_dict(DPORecipe, yaml.safe_load(work.recipe))
    assert loaded == recipe_for(owner, align) and loaded.lr == 1e-5
    s = spec(
        curriculum=[{"seqLen": 128, "untilStep": 4}], hyperparameters={"steps": 8, "warmupSteps": 2}
    )
    assert from_dict(SFTRecipe, yaml.safe_load(work_of(OWNER, s).recipe)) == recipe_for(OWNER, s)


def test_a_full_config_reaches_the_trainer_as_it_is() -> None:
    from infinitecontext.trainer.recipe import SFTRecipe, from_dict

    config = {
        "vocabSize": 512,
        "hiddenSize": 128,
        "maxPositionEmbeddings": 4096,
        "yarn": {"factor": 4.0, "originalMaxPositionEmbeddings": 1024, "betaFast": 16.0},
    }
    s = TrainingRunSpec.model_validate({"model": {"config": config}})
    sft = recipe_for(OWNER, s)
    assert isinstance(sft, SFTRecipe) and sft.model.config == s.model.config
    loaded = from_dict(SFTRecipe, yaml.safe_load(work_of(OWNER, s).recipe))
    assert loaded.model.config == s.model.config
    assert loaded.model.config is not None and loaded.model.config.yarn.beta_fast == 16.0


def test_accuracy_by_length_reads_the_evaluators_names() -> None:
    metrics = {"passkey_acc_512": 0.5, "passkey_acc_2k": 1.0, "passkey_acc_mean": 0.75}
    assert accuracy_by_length("passkey", metrics) == {512: 0.5, 2048: 1.0}


def test_status_patch_is_empty_when_nothing_changed() -> None:
    old = {"phase": "Running", "job": {"name": "j"}, "kopf": {}}
    assert status_patch(old, {"phase": "Running", "job": {"name": "j"}}) == {}
    assert status_patch(old, {"phase": "Succeeded"}) == {"phase": "Succeeded", "job": None}


def test_a_data_uri_becomes_the_trainers_dataset() -> None:
    from infinitecontext.trainer.recipe import SFTRecipe, from_dict

    for uri in ("/data/train.jsonl", "file:///data/train.jsonl", "runs:/abc123/data/t.jsonl"):
        s = spec(data={"uri": uri}, hyperparameters={"seed": 7, "steps": 8, "warmupSteps": 1})
        loaded = from_dict(SFTRecipe, yaml.safe_load(work_of(OWNER, s).recipe))
        assert loaded.data.uri == uri and loaded.data.seed == 7
    with pytest.raises(ValueError, match="unsupported scheme"):
        recipe_for(OWNER, spec(data={"uri": "s3://bucket/train.jsonl"}))


def test_the_judge_reaches_the_job_only_inside_the_recipe_file(tmp_path: Any) -> None:
    """A rubric with newlines, quotes and shell syntax: the sbatch argv and the script's
    commands are fixed text, and the quoted here-doc writes exactly the rubric."""
    import subprocess

    from infinitecontext.crds.models import ResolvedJudge
    from infinitecontext.slurm_bridge.render import file_lines, render_script, sbatch_argv
    from infinitecontext.trainer.recipe import EvalSpec, load

    marker = tmp_path / "pwned"
    rubric = f'Score 5: it\'s "exact".\nScore 1: $(touch {marker}); `id` | rm -rf ~\nICX_FILE_EOF'
    ev = EvaluationSpec.model_validate(
        {
            "model": {"trainingRun": "t"},
            "backend": "slurm",
            "judge": {"inferenceService": "judge", "rubric": rubric, "maxItems": 3},
        }
    )
    owner = Owner("Evaluation", "e", "ns", "u")
    placeholder = recipe_for(owner, ev)  # before resolution: a placeholder URL
    with pytest.raises(ValueError, match="not resolved"):
        command(owner, ev, placeholder, "http://m")
    endpoint = ResolvedJudge(url="http://node1:8000/v1", served_model="judge")
    work = command(owner, ev, recipe_for(owner, ev, endpoint), "http://m")
    request = slurm_request(owner, ev, work, attempt=0)
    assert "pwned" not in " ".join([*sbatch_argv(request), *request.command])
    script = render_script(request)
    body = script.split("<<'ICX_FILE_EOF'\n", 1)[1].split("\nICX_FILE_EOF\n", 1)
    assert "pwned" not in body[1]  # after the here-doc: only the fixed command
    written = tmp_path / "recipe.yaml"
    subprocess.run(["bash", "-c", "\n".join(file_lines(str(written), work.recipe))], check=True)
    assert not marker.exists() and written.read_text() == work.recipe
    loaded = load(written, EvalSpec)
    assert loaded.judge is not None and loaded.judge.rubric == rubric
    assert (loaded.judge.url, loaded.judge.model, loaded.judge.max_items) == (
        "http://node1:8000/v1",
        "judge",
        3,
    )
    assert work.argv[-6:-4] == ["--model-dir", "/checkpoints/u/input-model"]
