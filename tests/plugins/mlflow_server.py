"""A real MLflow tracking server (sqlite backend, local artifact store) on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from plugins.processes import free_port, wait_http_ok


@dataclass(frozen=True)
class MlflowServer:
    url: str
    root: Path


def start_mlflow(root: Path, port: int, host: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    root.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    if host != "127.0.0.1":
        # Beyond loopback and private ranges MLflow refuses Host headers it was not told.
        command += ["--allowed-hosts", f"{host}:{port},{host}"]
    log = (root / "server.log").open("wb")
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Session-wide MLflow server; tests set MLFLOW_TRACKING_URI from `.url` as needed."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    process = start_mlflow(root, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/health", process, root / "server.log", timeout=120)
        yield MlflowServer(url=url, root=root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
