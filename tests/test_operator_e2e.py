"""End to end: the real API server (local control plane, kwok nodes), the real operator
process under the least-privilege RBAC of deploy/rbac.yaml, a real MLflow server, the
real trainer (`icx train sft`) and, for the SLURM backend, the local SLURM cluster.

Kubernetes backend: the Job's pod is held Pending (a nodeSelector no kwok node has),
the test runs the pod's own command and environment on this machine as a node would,
then marks the pod Succeeded; the Job controller completes the Job and the operator
registers the model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugins.kube import KubeCluster
from plugins.mlflow_server import MlflowServer
from plugins.operator import OperatorProcess, StartOperator
from plugins.trainer import VllmServer

from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools import waiting

REPO = Path(__file__).resolve().parents[1]
HOLD = {"infinitecontext.dev/test": "hold"}  # no kwok node has it: pods stay Pending
TINY_TRAINING = {
    "model": {"preset": "tiny"},
    "data": {"synthetic": {"tasks": ["passkey"], "tokenizerSentences": 2000}},
    "hyperparameters": {
        "steps": 4,
        "tokensPerStep": 512,
        "microBatchTokens": 512,
        "seqLen": 128,
        "warmupSteps": 1,
        "precision": "fp32",
        "logEvery": 1,
    },
    "checkpoint": {"everySteps": 2},
    "resources": {"cpu": "1", "memory": "2Gi"},
}


def get(cluster: KubeCluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json")))


def apply(cluster: KubeCluster, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj))


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120, every: float = 0.5) -> Any:
    """`waiting.wait_for` where a kubectl error (the object is not there yet) means "not yet"."""
    return waiting.wait_for(what, check, timeout, every, retry_on=(devcluster.ClusterError,))


def reconciles(operator: OperatorProcess, kind: str) -> float:
    """The reconcile passes of `kind` that the operator's /metrics counts (any result)."""
    sample = re.compile(rf'^icx_operator_reconciles_total{{kind="{kind}",[^}}]*}} (\S+)$', re.M)
    return sum(float(value) for value in sample.findall(operator.metrics()))


def wait_phase(
    cluster: KubeCluster, kind: str, name: str, namespace: str, phase: str, timeout: float = 120
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, kind, name, namespace)
        return obj if (obj.get("status") or {}).get("phase") == phase else None

    return dict(wait_for(f"{kind} {name} {phase}", check, timeout))


def wait_condition(
    cluster: KubeCluster, kind: str, name: str, namespace: str, type_: str, field: str, value: str
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(cluster, kind, name, namespace)
        return obj if condition(obj, type_).get(field) == value else None

    return dict(wait_for(f"{kind} {name} {type_}.{field}={value}", check))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "infinitecontext.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def run_pod_as_a_node(cluster: KubeCluster, namespace: str, job: str, workdir: Path) -> None:
    """Run the Job pod's own command and environment here, then mark the pod done.

    ConfigMap volumes (the recipe) are written to a local folder, as the kubelet would
    mount them, and the command names that folder instead of the mount path."""
    pods = json.loads(
        cluster.kubectl("get", "pods", "-n", namespace, "-l", f"job-name={job}", "-o", "json")
    )["items"]
    [pod] = pods
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(workdir)}
    command = list(container["command"])
    volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        config_map = volumes[mount["name"]].get("configMap")
        if config_map is None:
            continue
        local = workdir / "configmaps" / config_map["name"]
        local.mkdir(parents=True, exist_ok=True)
        for key, text in get(cluster, "configmap", config_map["name"], namespace)["data"].items():
            (local / key).write_text(text)
        command = [arg.replace(mount["mountPath"], str(local)) for arg in command]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    terminated = {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
    status = {
        "phase": "Succeeded",
        "containerStatuses": [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    cluster.kubectl(
        "patch", "pod", pod["metadata"]["name"], "-n", namespace,
        "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_crds_install_and_an_invalid_training_run_is_rejected(
    icx_crds: KubeCluster, kube_namespace: str
) -> None:
    bad = resource(
        "TrainingRun",
        "bad",
        {
            "model": {"preset": "tiny", "config": {"vocabSize": 10}},
            "slurm": {"partition": "debug"},
            "hyperparameters": {"steps": 5, "warmupSteps": 10},
        },
    )
    bad["metadata"]["namespace"] = kube_namespace
    with pytest.raises(devcluster.ClusterError) as rejected:
        apply(icx_crds, bad)
    message = str(rejected.value)
    assert "set exactly one of: preset, config" in message
    assert "slurm options need backend: slurm" in message
    assert "warmupSteps must be smaller than hyperparameters.steps" in message
    explained = icx_crds.kubectl("explain", "trainingrun.spec.hyperparameters.seqLen")
    assert "Target context length" in explained


def test_kubectl_explain_shows_every_field(icx_crds: KubeCluster) -> None:
    """The descriptions reach `kubectl explain` through the installed CRDs (the unit test
    in test_crds_models.py checks that no field lacks one)."""
    expected = {
        "alignment.spec.dpo.beta": ["DPO's β", "Default `0.1`"],
        "inferenceservice.spec.autoscaling.minReplicas": ["Fewest replicas", "Default `1`"],
        "trainingrun.spec.kubernetes.tolerations.key": ["Taint key"],
        "evaluation.status.results.passkeyAccuracy": ["Mean accuracy over the grid"],
        "trainingrun.apiVersion": ["APIVersion defines the versioned schema"],
        "trainingrun.metadata": ["Standard object's metadata"],
    }
    for field, texts in expected.items():
        explained = " ".join(icx_crds.kubectl("explain", field).split())
        for text in texts:
            assert text in explained, f"kubectl explain {field}: {explained}"


def test_the_api_server_refuses_bad_dataset_uris_and_judges(
    icx_crds: KubeCluster, kube_namespace: str
) -> None:
    bad_data = resource(
        "TrainingRun", "bad-data", {"model": {"preset": "tiny"}, "data": {"uri": "s3://b/x"}}
    )
    bad_judge = resource(
        "Evaluation",
        "bad-judge",
        {"model": {"trainingRun": "t"}, "judge": {"url": "ftp://judge/v1"}},
    )
    no_judge = resource(
        "Evaluation", "no-judge", {"model": {"trainingRun": "t"}, "thresholds": {"judgeScore": 0.5}}
    )
    messages = {
        "data.uri must be an absolute path, or a file:///…, runs:/… or mlflow-artifacts:/…": (
            bad_data
        ),
        "judge.url must be an http:// or https:// URL": bad_judge,
        "thresholds.judgeScore needs a judge": no_judge,
    }
    for message, obj in messages.items():
        obj["metadata"]["namespace"] = kube_namespace
        with pytest.raises(devcluster.ClusterError) as rejected:
            apply(icx_crds, obj)
        assert message in str(rejected.value)
    good = resource(
        "TrainingRun", "good-data", {"model": {"preset": "tiny"}, "data": {"uri": "/d/t.jsonl"}}
    )
    icx_crds.kubectl("apply", "--dry-run=server", "-n", kube_namespace, "-f", "-",
                     stdin=yaml.safe_dump(good))  # fmt: skip


def test_the_api_server_refuses_ambiguous_or_reserved_mlflow_aliases(
    icx_crds: KubeCluster, kube_namespace: str
) -> None:
    both = resource(
        "InferenceService",
        "both",
        {"model": {"mlflow": {"name": "m", "version": "1", "alias": "champion"}}},
    )
    reserved = resource(
        "Evaluation", "reserved", {"model": {"trainingRun": "t"}, "aliasOnPass": "V2"}
    )
    latest = resource(
        "Alignment", "latest", {"baseModel": {"mlflow": {"name": "m", "alias": "Latest"}}}
    )
    messages = {
        "set at most one of: version, alias": both,
        "an MLflow alias cannot be `latest` or `v<number>`": reserved,
        "cannot be `latest`": latest,
    }
    for message, obj in messages.items():
        obj["metadata"]["namespace"] = kube_namespace
        with pytest.raises(devcluster.ClusterError) as rejected:
            apply(icx_crds, obj)
        assert message in str(rejected.value)
    good = resource(
        "Evaluation", "good", {"model": {"mlflow": {"name": "m", "alias": "v2-candidate"}}}
    )
    icx_crds.kubectl("apply", "--dry-run=server", "-n", kube_namespace, "-f", "-",
                     stdin=yaml.safe_dump(good))  # fmt: skip


def test_a_job_that_logs_no_run_fails_with_a_reason_and_is_garbage_collected(
    icx_crds: KubeCluster,
    operator_account: Path,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    """kwok completes Job pods at once: the operator must see the Job end without a run."""
    from test_operator_health import WORKLOAD, health

    operator_factory(operator_account, [kube_namespace], tracking_uri=mlflow_server.url)
    spec = TINY_TRAINING | {"checkpoint": {"path": str(tmp_path / "ckpt")}}
    obj = resource("TrainingRun", "empty", spec)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    done = wait_phase(icx_crds, "trainingrun", "empty", kube_namespace, "Failed")
    assert condition(done, "Ready")["reason"] == "NoMlflowRun"
    assert done["status"]["observedGeneration"] == done["metadata"]["generation"]
    assert health(WORKLOAD, done)[0] == "Degraded"
    events = icx_crds.kubectl("get", "events", "-n", kube_namespace, "-o", "json")
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"Submitted", "Failed"} <= reasons
    icx_crds.kubectl("delete", "trainingrun", "empty", "-n", kube_namespace, "--wait=true")
    wait_for(
        "the Job to be garbage-collected",
        lambda: (
            "empty-train" not in icx_crds.kubectl("get", "jobs", "-n", kube_namespace, "-o", "name")
        ),
    )


@pytest.mark.slow
def test_kubernetes_backend_trains_registers_and_becomes_ready(
    icx_crds: KubeCluster,
    operator_account: Path,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient
    from test_operator_health import WORKLOAD, health

    operator = operator_factory(operator_account, [kube_namespace], tracking_uri=mlflow_server.url)
    spec = TINY_TRAINING | {
        "kubernetes": {"image": "trainer:test", "nodeSelector": HOLD},
        "checkpoint": {"path": str(tmp_path / "ckpt"), "everySteps": 2},
        "mlflow": {"registeredModelName": f"e2e-{kube_namespace}"},
    }
    obj = resource("TrainingRun", "tiny", spec)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    job = wait_for("the Job", lambda: get(icx_crds, "job", "tiny-train", kube_namespace))

    def with_phase() -> dict[str, Any] | None:
        # The Job is created before the status that records it is written.
        found = get(icx_crds, "trainingrun", "tiny", kube_namespace)
        return found if (found.get("status") or {}).get("phase") else None

    run = wait_for("the TrainingRun's status", with_phase)
    assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert job["spec"]["podFailurePolicy"]["rules"][1]["action"] == "FailJob"
    assert run["status"]["phase"] in ("Submitted", "Running")
    assert condition(run, "Submitted")["status"] == "True"
    wait_for(
        "the pod", lambda: "tiny-train" in icx_crds.kubectl("get", "pods", "-n", kube_namespace)
    )

    run_pod_as_a_node(icx_crds, kube_namespace, "tiny-train", tmp_path)

    ready = wait_condition(
        icx_crds, "trainingrun", "tiny", kube_namespace, "Ready", "status", "True"
    )
    model = ready["status"]["model"]
    assert model["uri"] == f"models:/e2e-{kube_namespace}/1"
    assert ready["status"]["progress"]["step"] == 4
    assert health(WORKLOAD, ready)[0] == "Healthy"
    version = MlflowClient(mlflow_server.url).get_model_version(model["name"], model["version"])
    assert version.tags["infinitecontext.uid"] == run["metadata"]["uid"]
    assert version.tags["infinitecontext.kind"] == "TrainingRun"
    assert version.run_id == ready["status"]["runId"]
    metrics = operator.metrics()
    assert 'icx_operator_reconciles_total{kind="TrainingRun",result="ok"}' in metrics
    assert 'icx_operator_objects{kind="TrainingRun",phase="Succeeded"} 1.0' in metrics


def _slurm_jobs(key: str) -> list[Any]:
    from infinitecontext.slurm_bridge.commands import CommandClient

    return CommandClient().list(key=key)


@pytest.mark.slow
def test_slurm_backend_chain_train_align_evaluate(
    icx_crds: KubeCluster,
    slurm_cluster: None,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tiny_vllm: VllmServer,
    tmp_path: Path,
) -> None:
    """The Evaluation also asks an LLM judge: the tiny model the trainer fixtures already
    serve with vLLM (guided, so that its verdicts parse), by URL."""
    from mlflow.tracking import MlflowClient

    tmp_path.chmod(0o755)
    operator_factory(icx_crds.kubeconfig, [kube_namespace], tracking_uri=mlflow_server.url)
    slurm = {"partition": "debug", "workingDirectory": str(tmp_path), "timeLimitMinutes": 30}
    name = f"slurm-{kube_namespace}"
    training = TINY_TRAINING | {
        "backend": "slurm",
        "slurm": slurm,
        "checkpoint": {"path": str(tmp_path / "train"), "everySteps": 2},
        "mlflow": {"registeredModelName": name},
    }
    alignment = {
        "baseModel": {"trainingRun": "tiny"},
        "backend": "slurm",
        "slurm": slurm,
        "dpo": {"steps": 2, "batchSize": 2},
        "preferenceData": {"pairs": 4, "length": 64, "synthetic": {"tokenizerSentences": 2000}},
        "checkpoint": {"path": str(tmp_path / "align")},
        "resources": {"cpu": "1", "memory": "2Gi"},
        "mlflow": {"registeredModelName": f"{name}-dpo"},
    }
    evaluation = {
        "model": {"alignment": "tiny-dpo"},
        "backend": "slurm",
        "slurm": slurm,
        "passkey": {"lengths": [64, 128], "depths": [0.0, 1.0], "samples": 1},
        "judge": {"url": tiny_vllm.base_url, "guided": True, "maxItems": 4},
        "thresholds": {"passkeyAccuracy": 0.0, "judgeScore": 0.0},
        "checkpoint": {"path": str(tmp_path / "eval")},
        "resources": {"cpu": "1", "memory": "2Gi"},
    }
    for kind, obj_name, spec in (
        ("Evaluation", "tiny-eval", evaluation),
        ("Alignment", "tiny-dpo", alignment),
        ("TrainingRun", "tiny", training),
    ):  # created in reverse: the later stages wait for their input
        obj = resource(kind, obj_name, spec)
        obj["metadata"]["namespace"] = kube_namespace
        apply(icx_crds, obj)
    waiting = wait_condition(
        icx_crds, "evaluation", "tiny-eval", kube_namespace, "Ready", "reason", "WaitingForInput"
    )
    assert waiting["status"]["phase"] == "Waiting"

    def finished(kind: str, obj_name: str) -> dict[str, Any]:
        def check() -> Any:
            o = get(icx_crds, kind, obj_name, kube_namespace)
            phase = (o.get("status") or {}).get("phase")
            assert phase != "Failed", json.dumps(o.get("status"), indent=1) + _job_logs(tmp_path)
            return o if phase == "Succeeded" else None

        return dict(wait_for(f"{kind} {obj_name} Succeeded", check, timeout=900, every=2))

    trained = finished("trainingrun", "tiny")
    assert trained["status"]["job"]["slurmJobId"] > 0
    assert condition(trained, "Ready")["status"] == "True"
    aligned = finished("alignment", "tiny-dpo")
    assert aligned["status"]["inputModel"]["uri"] == trained["status"]["model"]["uri"]
    evaluated = finished("evaluation", "tiny-eval")
    results = evaluated["status"]["results"]
    assert results["passed"] is True and len(results["perLength"]) == 2
    assert 0.0 <= results["judgeScore"] <= 1.0
    assert evaluated["status"]["judge"] == {"url": tiny_vllm.base_url}
    assert "judge score" in condition(evaluated, "Ready")["message"]
    client = MlflowClient(mlflow_server.url)
    dpo_model = aligned["status"]["model"]
    version = client.get_model_version(dpo_model["name"], dpo_model["version"])
    assert version.tags["infinitecontext.parent_model"] == trained["status"]["model"]["uri"]
    prefix = f"infinitecontext.eval.{kube_namespace}.tiny-eval."
    assert version.tags[prefix + "passed"] == "true"
    assert float(version.tags[prefix + "passkey_accuracy"]) == pytest.approx(
        results["passkeyAccuracy"], abs=1e-4
    )
    assert float(version.tags[prefix + "judge_score"]) == pytest.approx(
        results["judgeScore"], abs=1e-4
    )
    # It passed: the version carries the alias, and its own run the results as metrics.
    assert (
        client.get_model_version_by_alias(name + "-dpo", "champion").version
        == (dpo_model["version"])
    )
    version_run = client.get_run(dpo_model["runId"]).data.metrics
    assert version_run[f"eval/{kube_namespace}/tiny-eval/passed"] == 1.0
    assert version_run[f"eval/{kube_namespace}/tiny-eval/passkey_accuracy"] == pytest.approx(
        results["passkeyAccuracy"]
    )
    run = client.get_run(evaluated["status"]["runId"])
    assert run.data.metrics["judge_items"] == 4 and run.data.metrics["judge_parsed"] == 4
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} >= {"eval/judge.json"}


def test_an_evaluation_waits_for_its_judge_inference_service_then_gets_its_url(
    icx_crds: KubeCluster,
    operator_account: Path,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    """No judge InferenceService yet: WaitingForInput. Once it serves (kwok runs its
    pod), the Evaluation's job carries its Service URL and served model name."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    name = f"judged-{kube_namespace}"
    experiment = client.get_experiment_by_name("e2e") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("e2e")
    run = client.create_run(experiment_id).info
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.run_id}/model", run.run_id)
    operator_factory(operator_account, [kube_namespace], tracking_uri=mlflow_server.url)
    evaluation = {
        "model": {"mlflow": {"name": name, "version": "1"}},
        "judge": {"inferenceService": "judge"},
        "kubernetes": {"image": "trainer:test", "nodeSelector": HOLD},
        "checkpoint": {"path": str(tmp_path)},
    }
    obj = resource("Evaluation", "judged", evaluation)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    waiting = wait_condition(
        icx_crds, "evaluation", "judged", kube_namespace, "Ready", "reason", "WaitingForInput"
    )
    assert "judge InferenceService judge does not exist" in condition(waiting, "Ready")["message"]
    server = {
        "model": {"mlflow": {"name": name, "version": "1"}},
        "resources": {"cpu": "100m", "memory": "256Mi"},
    }
    obj = resource("InferenceService", "judge", server)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    submitted = wait_phase(
        icx_crds, "evaluation", "judged", kube_namespace, "Submitted", timeout=180
    )
    url = f"http://judge.{kube_namespace}.svc.cluster.local:8000/v1"
    assert submitted["status"]["judge"] == {"url": url, "servedModel": "judge"}
    recipe = get(icx_crds, "configmap", "judged-evalu", kube_namespace)["data"]["recipe.yaml"]
    judge = yaml.safe_load(recipe)["judge"]
    assert (judge["url"], judge["model"]) == (url, "judge")


def _job_logs(directory: Path) -> str:
    return "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in directory.glob("slurm-*.out"))


@pytest.mark.slow
def test_slurm_job_survives_operator_restart_and_is_cancelled_on_delete(
    icx_crds: KubeCluster,
    slurm_cluster: None,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o755)
    start = {"kubeconfig": icx_crds.kubeconfig, "namespaces": [kube_namespace]}
    first = operator_factory(**start, tracking_uri=mlflow_server.url)
    spec = TINY_TRAINING | {
        "backend": "slurm",
        "slurm": {"partition": "debug", "workingDirectory": str(tmp_path)},
        "hyperparameters": TINY_TRAINING["hyperparameters"] | {"steps": 5000},
        "checkpoint": {"path": str(tmp_path / "ckpt"), "everySteps": 1000},
    }
    obj = resource("TrainingRun", "long", spec)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)

    def submitted() -> dict[str, Any] | None:
        obj = get(icx_crds, "trainingrun", "long", kube_namespace)
        return obj if ((obj.get("status") or {}).get("job") or {}).get("slurmJobId") else None

    running = wait_for("a SLURM job id", submitted)
    uid, job_id = running["metadata"]["uid"], running["status"]["job"]["slurmJobId"]
    first.kill()
    second = operator_factory(**start, tracking_uri=mlflow_server.url)
    waiting.wait_for(
        "three polls of the TrainingRun by the new operator",
        lambda: reconciles(second, "TrainingRun") >= 3,
        timeout_s=60,
        retry_on=(OSError,),  # /metrics not serving yet
    )
    jobs = _slurm_jobs(uid)
    assert [j.job_id for j in jobs] == [job_id], "the restart lost or duplicated the job"
    after = get(icx_crds, "trainingrun", "long", kube_namespace)
    assert after["status"]["job"]["slurmJobId"] == job_id
    icx_crds.kubectl("delete", "trainingrun", "long", "-n", kube_namespace, "--wait=true")
    cancelled = wait_for(
        "the SLURM job to be cancelled",
        lambda: [j for j in _slurm_jobs(uid) if j.state.startswith("CANCELLED")],
        timeout=60,
    )
    assert cancelled[0].job_id == job_id


def test_suspend_suspends_the_job_and_clearing_it_resumes(
    icx_crds: KubeCluster,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    from test_operator_health import WORKLOAD, health

    operator_factory(icx_crds.kubeconfig, [kube_namespace], tracking_uri=mlflow_server.url)
    spec = TINY_TRAINING | {
        "kubernetes": {"image": "trainer:test", "nodeSelector": HOLD},
        "checkpoint": {"path": str(tmp_path / "ckpt")},
    }
    obj = resource("TrainingRun", "pause", spec)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    wait_for("the Job", lambda: get(icx_crds, "job", "pause-train", kube_namespace))
    patch = json.dumps({"spec": {"suspend": True}})
    icx_crds.kubectl(
        "patch", "trainingrun", "pause", "-n", kube_namespace, "--type=merge", "-p", patch
    )
    suspended = wait_phase(icx_crds, "trainingrun", "pause", kube_namespace, "Suspended")
    assert health(WORKLOAD, suspended)[0] == "Suspended"
    wait_for(
        "Job.spec.suspend=true",
        lambda: get(icx_crds, "job", "pause-train", kube_namespace)["spec"]["suspend"],
    )
    patch = json.dumps({"spec": {"suspend": False}})
    icx_crds.kubectl(
        "patch", "trainingrun", "pause", "-n", kube_namespace, "--type=merge", "-p", patch
    )
    resumed = wait_condition(
        icx_crds, "trainingrun", "pause", kube_namespace, "Suspended", "reason", "Resumed"
    )
    assert resumed["status"]["phase"] in ("Submitted", "Running")
    assert get(icx_crds, "job", "pause-train", kube_namespace)["spec"]["suspend"] is False


def test_unreachable_mlflow_is_shown_and_retried(
    icx_crds: KubeCluster, kube_namespace: str, operator_factory: StartOperator, tmp_path: Path
) -> None:
    """kwok completes the pod; reading the run then fails: Ready=Unknown, not a crash."""
    operator_factory(icx_crds.kubeconfig, [kube_namespace], tracking_uri="http://127.0.0.1:9")
    obj = resource(
        "TrainingRun", "nomlflow", TINY_TRAINING | {"checkpoint": {"path": str(tmp_path)}}
    )
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    shown = wait_condition(
        icx_crds, "trainingrun", "nomlflow", kube_namespace, "Ready", "reason", "BackendUnavailable"
    )
    assert "MLflow" in condition(shown, "Ready")["message"]
    assert condition(shown, "Ready")["status"] == "Unknown"


@pytest.mark.slow
def test_two_peered_replicas_only_one_acts_and_the_other_takes_over(
    icx_crds: KubeCluster, kube_namespace: str, operator_factory: StartOperator, tmp_path: Path
) -> None:
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": "icx", "namespace": kube_namespace},
    }
    apply(icx_crds, peering)
    start = {"kubeconfig": icx_crds.kubeconfig, "namespaces": [kube_namespace]}
    low = operator_factory(**start, extra_args=["--peering", "icx", "--priority", "100"])
    high = operator_factory(**start, extra_args=["--peering", "icx", "--priority", "200"])
    spec = TINY_TRAINING | {
        "kubernetes": {"image": "trainer:test", "nodeSelector": HOLD},
        "checkpoint": {"path": str(tmp_path / "ckpt")},
    }
    for name in ("first", "second"):
        obj = resource("TrainingRun", name, spec)
        obj["metadata"]["namespace"] = kube_namespace
        if name == "second":
            high.stop()  # a graceful stop withdraws from peering: the other resumes
        apply(icx_crds, obj)
        wait_condition(icx_crds, "trainingrun", name, kube_namespace, "Submitted", "status", "True")
    high_log, low_log = high.log.read_text(), low.log.read_text()
    assert "Handler 'reconcile-create' succeeded" in high_log
    assert "Pausing operations in favour of" in low_log
    assert low_log.count("Handler 'reconcile-create' succeeded") == 1  # only "second"


def test_examples_are_accepted_by_the_api_server(
    icx_crds: KubeCluster, kube_namespace: str
) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        icx_crds.kubectl("apply", "--dry-run=server", "-n", kube_namespace, "-f", str(path))


def test_deploy_kustomization_is_valid(icx_crds: KubeCluster) -> None:
    rendered = icx_crds.kubectl("kustomize", str(REPO / "deploy"))
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
    assert {"CustomResourceDefinition", "ClusterRole", "Deployment", "Namespace"} <= kinds
    deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"] and container["readinessProbe"]
    assert container["resources"]["limits"]["memory"]
    assert deployment["spec"]["replicas"] == 2


def test_the_namespaced_variant_runs_under_its_role_only(
    icx_crds: KubeCluster,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    """deploy/namespaced/ as rendered by kustomize: only namespaced objects; the operator
    runs with the Deployment's own arguments (--namespace, --no-cluster-scans, peering)
    as a ServiceAccount bound to exactly its Role (no cluster rights at all) and
    reconciles a TrainingRun and an InferenceService."""
    rendered = [
        d
        for d in yaml.safe_load_all(
            icx_crds.kubectl("kustomize", str(REPO / "deploy" / "namespaced"))
        )
        if d
    ]
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == [
        "Deployment", "KopfPeering", "Role", "RoleBinding", "ServiceAccount",
    ]  # fmt: skip
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][3:] == [
        "--namespace", "$(POD_NAMESPACE)", "--no-cluster-scans", "--peering", "infinitecontext",
    ]  # fmt: skip
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    account = "icx-operator"
    documents = []
    for doc in rendered:
        if doc["kind"] in ("Role", "RoleBinding", "KopfPeering"):
            doc["metadata"]["namespace"] = kube_namespace
            if doc["kind"] == "RoleBinding":
                doc["subjects"] = [
                    {"kind": "ServiceAccount", "name": account, "namespace": kube_namespace}
                ]
            documents.append(doc)
    icx_crds.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    kubeconfig = icx_crds.service_account_kubeconfig(kube_namespace, account)
    operator = operator_factory(
        kubeconfig,
        [kube_namespace],
        tracking_uri=mlflow_server.url,
        extra_args=container["command"][5:],
    )
    obj = resource("TrainingRun", "scoped", TINY_TRAINING | {"checkpoint": {"path": str(tmp_path)}})
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    done = wait_phase(icx_crds, "trainingrun", "scoped", kube_namespace, "Failed")
    assert condition(done, "Ready")["reason"] == "NoMlflowRun"  # kwok ran the pod: no run
    server = {
        "model": {"mlflow": {"name": "tiny", "version": "1"}},
        "resources": {"cpu": "100m", "memory": "256Mi"},
    }
    obj = resource("InferenceService", "scoped", server)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    serving = wait_condition(
        icx_crds, "inferenceservice", "scoped", kube_namespace, "Ready", "status", "True"
    )
    assert serving["status"]["url"] == f"http://scoped.{kube_namespace}.svc.cluster.local:8000"
    log = operator.log.read_text()
    assert "Forbidden" not in log and "Not enough permissions" not in log, log[-3000:]
    assert "no right to read CRD httproutes.gateway.networking.k8s.io" in log


def test_two_standalone_operators_register_one_version_and_the_second_warns(
    icx_crds: KubeCluster,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    start = {"namespaces": [kube_namespace], "tracking_uri": mlflow_server.url}
    operator_factory(icx_crds.kubeconfig, **start)
    second = operator_factory(icx_crds.kubeconfig, **start)
    name = f"two-{kube_namespace}"
    spec = TINY_TRAINING | {
        "kubernetes": {"image": "trainer:test", "nodeSelector": HOLD},
        "checkpoint": {"path": str(tmp_path / "ckpt"), "everySteps": 2},
        "mlflow": {"registeredModelName": name},
    }
    obj = resource("TrainingRun", "twice", spec)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    wait_for(
        "the pod", lambda: "twice-train" in icx_crds.kubectl("get", "pods", "-n", kube_namespace)
    )
    run_pod_as_a_node(icx_crds, kube_namespace, "twice-train", tmp_path)
    ready = wait_condition(
        icx_crds, "trainingrun", "twice", kube_namespace, "Ready", "status", "True"
    )
    versions = MlflowClient(mlflow_server.url).search_model_versions(f"name = '{name}'")
    assert [f"models:/{name}/{v.version}" for v in versions] == [ready["status"]["model"]["uri"]]
    assert "another operator (" in second.log.read_text()
