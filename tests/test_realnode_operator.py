"""The operator as shipped, on the real node (docs/cluster.md, "The operator as
shipped"): `kubectl apply -k deploy-local/` (deploy/ with the local images) runs the
operator's pods under their uid, read-only root filesystem, RBAC and probes, and they
reconcile; then, from inside its pod, the operator drives a TrainingRun through the local
slurmrestd to a model registered in MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from plugins.mlflow_server import MlflowServer
from plugins.processes import free_port
from plugins.realnode import SYSTEM, RealNode, operator_overlay

from infinitecontext.crds.models import API_VERSION
from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
TINY_TRAINING: dict[str, Any] = {
    "model": {"preset": "tiny"},
    "data": {"synthetic": {"tasks": ["passkey"], "tokenizerSentences": 2000}},
    "hyperparameters": {
        "steps": 2,
        "tokensPerStep": 512,
        "microBatchTokens": 512,
        "seqLen": 128,
        "warmupSteps": 1,
        "precision": "fp32",
        "logEvery": 1,
    },
    "resources": {"cpu": "1", "memory": "2Gi"},
}


@pytest.fixture(scope="module")
def shipped_operator(real_node: RealNode) -> RealNode:
    real_node.apply_kustomization(REPO / "deploy-local")
    real_node.operator_rolled_out()
    return real_node


@pytest.mark.slow
def test_the_shipped_operator_runs_as_its_user_on_a_read_only_root(shipped_operator):
    pods = shipped_operator.operator_pods()
    assert len(pods) == 2
    assert {p["spec"]["nodeName"] for p in pods} == {shipped_operator.name}
    name = pods[0]["metadata"]["name"]
    exec_ = ("exec", "-n", SYSTEM, name, "--")
    assert shipped_operator.kubectl(*exec_, "id", "-u").strip() == "65532"
    with pytest.raises(devcluster.ClusterError, match="Read-only file system"):
        shipped_operator.kubectl(*exec_, "touch", "/opt/written")
    # The readiness probe passed: the pods are Ready, which `rollout status` awaited.
    assert all(c["ready"] for p in pods for c in p["status"]["containerStatuses"]), json.dumps(
        [p["status"] for p in pods]
    )[-3000:]


@pytest.mark.slow
def test_the_shipped_operator_reconciles_with_its_rbac(shipped_operator):
    """A TrainingRun on the Kubernetes backend gets its Job from the operator's pod (which
    only its ClusterRole lets it create); the Job's pod itself is not the point here."""
    namespace = "rn-shipped"
    shipped_operator.kubectl("create", "namespace", namespace)
    run = {
        "apiVersion": API_VERSION,
        "kind": "TrainingRun",
        "metadata": {"name": "tiny", "namespace": namespace},
        "spec": TINY_TRAINING,
    }
    shipped_operator.kubectl("apply", "-f", "-", stdin=json.dumps(run))
    wait_for(
        "the operator's pod to create the Job",
        lambda: shipped_operator.kubectl("get", "job", "tiny-train", "-n", namespace),
        timeout_s=120,
        retry_on=(devcluster.ClusterError,),
    )
    shipped_operator.kubectl("delete", "namespace", namespace, "--wait=false")


def host_network_patch(env: dict[str, str], metrics: int, health: int) -> list[dict[str, Any]]:
    """What reaching the host's loopback services takes: the host network (slurmrestd
    listens on 127.0.0.1 only), ports of its own there, and one replica (two would want
    the same host ports)."""
    command = [
        "icx", "operator", "run", "--all-namespaces", "--peering", "infinitecontext",
        "--metrics-port", str(metrics), "--health-port", str(health),
    ]  # fmt: skip
    container = "/spec/template/spec/containers/0"
    ports = [
        {"name": "metrics", "containerPort": metrics},
        {"name": "health", "containerPort": health},
    ]
    return [
        {"op": "replace", "path": "/spec/replicas", "value": 1},
        {"op": "add", "path": "/spec/template/spec/hostNetwork", "value": True},
        {"op": "add", "path": "/spec/template/spec/dnsPolicy", "value": "ClusterFirstWithHostNet"},
        {"op": "replace", "path": f"{container}/command", "value": command},
        {"op": "replace", "path": f"{container}/ports", "value": ports},
        {
            "op": "replace",
            "path": f"{container}/env",
            "value": [{"name": k, "value": v} for k, v in env.items()],
        },
    ]


@pytest.mark.slow
def test_the_operator_pod_trains_through_the_local_slurmrestd(
    shipped_operator: RealNode,
    slurm_cluster: None,
    mlflow_server: MlflowServer,
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    token = subprocess.run(
        ["scontrol", "token", "username=root", "lifespan=7200"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "slurm-token", "namespace": SYSTEM},
        "stringData": {"token": token.removeprefix("SLURM_JWT=")},
    }
    shipped_operator.kubectl("apply", "-f", "-", stdin=json.dumps(secret))
    env = {
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "ICX_SLURM_URL": "http://127.0.0.1:6820",
        "ICX_SLURM_USER": "root",
        "ICX_SLURM_TOKEN_FILE": "/var/run/secrets/slurm/token",
        # The jobs run `icx` on the SLURM node (this machine): this environment's.
        "ICX_SLURM_JOB_PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": "/tmp",
    }
    patch = host_network_patch(env, free_port(), free_port())
    overlay = operator_overlay(tmp_path / "overlay", patch)
    shipped_operator.apply_kustomization(overlay)
    shipped_operator.operator_rolled_out()
    pods = shipped_operator.operator_pods()
    assert [p["spec"].get("hostNetwork") for p in pods] == [True]

    namespace = "rn-slurm"
    shipped_operator.kubectl("create", "namespace", namespace)
    workdir = tmp_path / "work"
    workdir.mkdir()
    workdir.chmod(0o755)
    model_name = "realnode-slurm"
    spec = TINY_TRAINING | {
        "backend": "slurm",
        "slurm": {"partition": "debug", "workingDirectory": str(workdir), "timeLimitMinutes": 30},
        "checkpoint": {"path": str(workdir / "ckpt"), "everySteps": 2},
        "mlflow": {"registeredModelName": model_name},
    }
    run = {
        "apiVersion": API_VERSION,
        "kind": "TrainingRun",
        "metadata": {"name": "tiny", "namespace": namespace},
        "spec": spec,
    }
    shipped_operator.kubectl("apply", "-f", "-", stdin=json.dumps(run))

    def finished() -> dict[str, Any] | None:
        found = json.loads(
            shipped_operator.kubectl("get", "trainingrun", "tiny", "-n", namespace, "-o=json")
        )
        status = found.get("status") or {}
        assert status.get("phase") != "Failed", json.dumps(status, indent=1) + "".join(
            p.read_text()[-2000:] for p in workdir.glob("slurm-*.out")
        )
        return found if status.get("phase") == "Succeeded" else None

    done = wait_for("the TrainingRun to succeed on SLURM", finished, timeout_s=900, every_s=2)
    assert done["status"]["job"]["slurmJobId"] > 0
    model = done["status"]["model"]
    assert model["uri"] == f"models:/{model_name}/1"
    version = MlflowClient(mlflow_server.url).get_model_version(model["name"], model["version"])
    assert version.tags["infinitecontext.kind"] == "TrainingRun"
