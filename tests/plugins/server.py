"""Server-test set-up: a tiny exported model, registered in the MLflow fixture server, and
one real `icx serve models:/…` (vLLM's CPU build here) shared by the whole session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from plugins.mlflow_server import MlflowServer
from plugins.processes import free_port, wait_http_ok

MODEL_NAME = "icx-tiny"
STARTUP_TIMEOUT_S = 420  # vLLM's CPU build loads the tiny model in 30-90 s on 2 cores


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    alias: str
    source_dir: Path
    tracking_uri: str
    run_id: str


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    model_dir: Path


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `tiny` preset exported as a HF DeepseekV3 directory, with our sha256 manifest."""
    from infinitecontext.model.workflows import export_model
    from infinitecontext.server.manifest import write_manifest

    out = export_model(tmp_path_factory.mktemp("tiny-hf") / "model", "tiny", None, seed=0)
    write_manifest(out)
    return out


@pytest.fixture(scope="session")
def registered_tiny(mlflow_server: MlflowServer, tiny_hf_model: Path) -> RegisteredModel:
    """Version 1 of MODEL_NAME, alias `champion`, logged as a run's `model` artifact."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    run = client.create_run(experiment_id="0")
    client.log_artifacts(run.info.run_id, str(tiny_hf_model), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(
        MODEL_NAME, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias(MODEL_NAME, "champion", version.version)
    return RegisteredModel(
        MODEL_NAME,
        str(version.version),
        "champion",
        tiny_hf_model,
        mlflow_server.url,
        run.info.run_id,
    )


def icx_command() -> list[str]:
    return [str(Path(sys.executable).with_name("icx"))]


def server_env(tracking_uri: str) -> dict[str, str]:
    return os.environ | {"MLFLOW_TRACKING_URI": tracking_uri, "VLLM_CPU_KVCACHE_SPACE": "1"}


def wait_ready(server: RunningServer, timeout: float = STARTUP_TIMEOUT_S) -> None:
    wait_http_ok(f"{server.url}/ready", server.process, server.log, timeout, every=2)


def stop(process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def vllm_server(
    registered_tiny: RegisteredModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """`icx serve models:/icx-tiny/1` on loopback, one per test module (vLLM starts in
    30-90 s); a module's SIGTERM test may stop it early."""
    root = tmp_path_factory.mktemp("icx-serve")
    port = free_port()
    log = root / "server.log"
    command = [
        *icx_command(),
        "serve",
        f"models:/{registered_tiny.name}/{registered_tiny.version}",
        "--served-model-name",
        registered_tiny.name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "2048",
        # float32 like our reference decoder: the contract test then compares the format
        # (names, rope layout, config), not bf16 rounding on a random model's near-ties.
        "--dtype",
        "float32",
        "--shutdown-timeout",
        "60",
        "--cache-dir",
        str(root / "cache"),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=server_env(registered_tiny.tracking_uri),
            start_new_session=True,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log, root / "cache")
    try:
        wait_ready(server)
        yield server
    finally:
        stop(process)


def completion(url: str, body: dict[str, object], timeout: float = 120) -> dict[str, object]:
    request = urllib.request.Request(
        f"{url}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.loads(response.read()))
