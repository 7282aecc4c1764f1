"""The lifecycle on real pods (docs/cluster.md, "A real node"): the operator as shipped,
on the real node, runs a TrainingRun's Job there, which trains the tiny preset on CPU in
the trainer image and registers the model in MLflow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugins.mlflow_server import start_mlflow
from plugins.processes import free_port, wait_http_ok
from plugins.realnode import RealNode, build_image, operator_overlay

from infinitecontext.crds.models import API_VERSION, TRAINER_IMAGE
from infinitecontext.devtools.waiting import wait_for

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
    "checkpoint": {"path": "/checkpoints", "everySteps": 2},
    "resources": {"cpu": "1", "memory": "3Gi"},
}


@pytest.fixture(scope="module")
def pod_reachable_mlflow(
    real_node: RealNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An MLflow server on the node's address, which pods reach (not on loopback, which
    is the host's own)."""
    root = tmp_path_factory.mktemp("mlflow-pods")
    port = free_port()
    process = start_mlflow(root, port, host=real_node.ip)
    url = f"http://{real_node.ip}:{port}"
    try:
        wait_http_ok(f"{url}/health", process, root / "server.log", timeout=120)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_a_training_run_trains_on_the_real_node_and_registers_its_model(
    real_node: RealNode, pod_reachable_mlflow: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    build_image("trainer")
    real_node.load_images(TRAINER_IMAGE)
    patch = [
        {
            "op": "add",
            "path": "/spec/template/spec/containers/0/env/-",
            "value": {"name": "ICX_OPERATOR_POLL_SECONDS", "value": "2"},
        },
        {
            "op": "test",
            "path": "/spec/template/spec/containers/0/env/0/name",
            "value": "MLFLOW_TRACKING_URI",
        },
        {
            "op": "replace",
            "path": "/spec/template/spec/containers/0/env/0",
            "value": {"name": "MLFLOW_TRACKING_URI", "value": pod_reachable_mlflow},
        },
    ]
    real_node.apply_kustomization(operator_overlay(tmp_path / "overlay", patch))
    real_node.operator_rolled_out()

    namespace = "rn-lifecycle"
    real_node.kubectl("create", "namespace", namespace)
    model_name = "realnode-k8s"
    run = {
        "apiVersion": API_VERSION,
        "kind": "TrainingRun",
        "metadata": {"name": "tiny", "namespace": namespace},
        "spec": TINY_TRAINING | {"mlflow": {"registeredModelName": model_name}},
    }
    real_node.kubectl("apply", "-f", "-", stdin=json.dumps(run))

    def finished() -> dict[str, Any] | None:
        found = json.loads(
            real_node.kubectl("get", "trainingrun", "tiny", "-n", namespace, "-o=json")
        )
        status = found.get("status") or {}
        if status.get("phase") == "Failed":
            pods = real_node.kubectl("get", "pods", "-n", namespace, "-o=wide")
            logs = real_node.kubectl("logs", "-n", namespace, "job/tiny-train", "--tail=40")
            raise AssertionError(json.dumps(status, indent=1) + pods + logs)
        return found if status.get("phase") == "Succeeded" else None

    done = wait_for(
        "the TrainingRun to succeed on the real node", finished, timeout_s=900, every_s=2
    )
    pods = json.loads(real_node.kubectl("get", "pods", "-n", namespace, "-o=json"))["items"]
    assert {p["spec"]["nodeName"] for p in pods} == {real_node.name}
    model = done["status"]["model"]
    assert model["uri"] == f"models:/{model_name}/1"
    version = MlflowClient(pod_reachable_mlflow).get_model_version(model["name"], model["version"])
    assert version.tags["infinitecontext.kind"] == "TrainingRun"
