"""InferenceService with `backend: slurm` on the local SLURM cluster: replica jobs run
the real `icx serve` (vLLM's CPU build) with the tiny model from the MLflow fixture
server; the status URL answers completions; scaling, a dying job and deletion drive the
jobs."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugins.processes import free_port

from infinitecontext.devtools.waiting import wait_for
from infinitecontext.operator.inference.slurm import replicas_of

pytestmark = pytest.mark.slow

STARTUP_S = 600  # vLLM's CPU build on 2 shared cores, model download included


def test_slurm_backed_service_serves_scales_and_cancels(
    inference_operator: Any,
    isvc_namespace: str,
    slurm_rest: Any,
    registered_tiny: Any,
    tmp_path: Path,
) -> None:
    cluster, ns = inference_operator, isvc_namespace
    tmp_path.chmod(0o755)
    port = free_port()
    body = {
        "apiVersion": "infinitecontext.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "tiny"},
        "spec": {
            "backend": "slurm",
            "model": {"mlflow": {"name": registered_tiny.name, "version": registered_tiny.version}},
            "mlflow": {"trackingUri": registered_tiny.tracking_uri},
            "replicas": 1,
            "resources": {"cpu": "1", "memory": "4Gi"},
            "server": {"port": port, "maxModelLen": 512},
            "slurm": {"workingDirectory": str(tmp_path)},
            "rollout": {"progressDeadlineSeconds": STARTUP_S},
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(body))

    def status() -> dict[str, Any]:
        obj = json.loads(cluster.kubectl("get", "inferenceservice", "tiny", "-n", ns, "-o", "json"))
        return dict(obj.get("status") or {})

    uid = json.loads(cluster.kubectl("get", "inferenceservice", "tiny", "-n", ns, "-o", "json"))[
        "metadata"
    ]["uid"]

    def jobs() -> list[Any]:
        return [r for r in replicas_of(uid, slurm_rest.list(), port) if r.alive]

    try:
        wait_for("Ready", lambda: status().get("phase") == "Available", STARTUP_S, every_s=2)
        url = status()["url"]
        assert url == f"http://vm:{port}" or url.endswith(f":{port}")
        request = urllib.request.Request(
            f"{url}/v1/completions",
            data=json.dumps({"model": "tiny", "prompt": [5, 6, 7], "max_tokens": 4}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert answer["usage"]["completion_tokens"] == 4

        cluster.kubectl("scale", "inferenceservice", "tiny", "-n", ns, "--replicas=2")
        two = wait_for("a second replica job", lambda: len(jobs()) == 2 and jobs(), 60, every_s=2)
        assert sorted(r.slot for r in two) == [0, 1]
        assert {r.port for r in two} == {port, port + 1}

        # A replica job that dies (here: cancelled behind the operator's back) is replaced.
        second = next(r for r in two if r.slot == 1)
        slurm_rest.cancel(second.job_id)
        replaced = wait_for(
            "a replacement job for slot 1",
            lambda: [r for r in jobs() if r.slot == 1 and r.attempt == second.attempt + 1],
            60,
            every_s=2,
        )
        assert replaced[0].job_id != second.job_id

        cluster.kubectl("delete", "inferenceservice", "tiny", "-n", ns, "--timeout=120s")
        wait_for("both jobs cancelled", lambda: not jobs(), 60, every_s=2)
    finally:
        for replica in replicas_of(uid, slurm_rest.list(), port):
            if replica.alive:
                slurm_rest.cancel(replica.job_id)
