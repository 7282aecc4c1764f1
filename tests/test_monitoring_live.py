"""A real Prometheus scrapes a running operator, a trainer run and the vLLM CPU server:
every dashboard query and every metric the alerts read returns series, and an alert fires."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from plugins.processes import free_port, wait_http_ok
from plugins.prometheus import Prometheus, rule_groups
from test_monitoring_static import dashboard_queries

from infinitecontext.devtools.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
ICX = str(Path(sys.executable).with_name("icx"))
NAMESPACE = "icx-monitoring"
pytestmark = pytest.mark.slow


def spawn(command: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=os.environ | env,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def operator_process(kube_cluster, mlflow_server, slurm_cluster, tmp_path) -> Iterator[str]:
    """The operator watching NAMESPACE, with TrainingRuns (Kubernetes and SLURM) and an
    InferenceService to reconcile; yields host:port of its metrics."""
    kubectl = [str(kube_cluster.kubectl_path), f"--kubeconfig={kube_cluster.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "--server-side", "-f", str(REPO / "crds")], check=True)
    subprocess.run([*kubectl, "create", "namespace", NAMESPACE], check=False)
    port, log = free_port(), tmp_path / "operator.log"
    process = spawn(
        [
            ICX,
            "operator",
            "run",
            "--namespace",
            NAMESPACE,
            "--metrics-port",
            str(port),
            "--health-port",
            str(free_port()),
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "--slurm-job-path",
            f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
        log,
        MLFLOW_TRACKING_URI=mlflow_server.url,
    )
    for example in ("trainingrun.yaml", "trainingrun-slurm.yaml", "inferenceservice-rolling.yaml"):
        manifest = yaml.safe_load((REPO / "examples" / example).read_text())
        manifest["metadata"] = {"name": example.removesuffix(".yaml"), "namespace": NAMESPACE}
        if manifest["spec"]["backend"] == "slurm":
            manifest["spec"]["slurm"]["workingDirectory"] = str(tmp_path)
            manifest["spec"]["checkpoint"]["path"] = str(tmp_path / "checkpoints")
        subprocess.run(
            [*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(manifest).encode(), check=True
        )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/metrics", process, log, 60, every=1)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)
        subprocess.run([*kubectl, "delete", "namespace", NAMESPACE, "--wait=false"], check=False)


@pytest.fixture
def trainer_process(tmp_path) -> Iterator[str]:
    """A tiny CPU SFT run long enough to be scraped while it trains."""
    recipe = yaml.safe_load((REPO / "recipes" / "tiny-cpu.yaml").read_text())
    recipe["train"]["steps"] = 100_000
    recipe["checkpoint"]["every_steps"] = 5
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    port, log = free_port(), tmp_path / "trainer.log"
    process = spawn(
        [ICX, "train", "sft", "--config", str(config), "--output-dir", str(tmp_path / "run")],
        log,
        ICX_METRICS_PORT=str(port),
        MLFLOW_TRACKING_URI="",
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/metrics", process, log, 180, every=1)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.fixture
def queued_vllm(tiny_hf_model, tmp_path) -> Iterator[str]:
    """vLLM's CPU server that runs one request at a time, so requests queue up."""
    port, log = free_port(), tmp_path / "vllm.log"
    process = spawn(
        [
            ICX,
            "serve",
            str(tiny_hf_model),
            "--port",
            str(port),
            "--served-model-name",
            "tiny",
            "--vllm-arg=--max-num-seqs=1",
        ],
        log,
        VLLM_CPU_KVCACHE_SPACE="1",
    )
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/ready", process, log, 420, every=1)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (ours, vLLM's and our recording rules)."""
    return set(re.findall(r"\b((?:icx_|vllm:|infinitecontext:)[a-zA-Z0-9_:]+)", expr))


def wait_for_prometheus(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    """Poll `check` every second until it holds. A server too busy to answer within its
    timeout (an OSError: a read timeout, a refused connection) counts as "not yet": under the
    load this test makes, Prometheus's API once took more than 10 s on the 2-core CI machine."""
    wait_for(what, check, timeout_s, every_s=1, retry_on=(OSError,))


def complete(url: str) -> None:
    body = json.dumps(
        {
            "model": "tiny",
            "prompt": "The pass key is",
            "max_tokens": 400,
            "temperature": 0,
            "ignore_eos": True,
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{url}/v1/completions", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        assert response.status == 200


def test_dashboards_and_alerts_against_live_targets(
    start_prometheus, operator_process, trainer_process, queued_vllm
):
    prometheus: Prometheus = start_prometheus(
        {"operator": operator_process, "trainer": trainer_process, "vllm": queued_vllm}
    )
    wait_for_prometheus(
        "the three targets to be up",
        lambda: all(prometheus.targets_up().values()) and len(prometheus.targets_up()) == 3,
        60,
    )

    # Load: 32 long requests against one slot keep more than 5 waiting for a while (16 once
    # drained before the rule fired, on a loaded 2-core CI machine).
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(complete, queued_vllm) for _ in range(32)]
        wait_for_prometheus(
            "VLLMQueueDepthHigh to fire",
            lambda: any(
                a["labels"]["alertname"] == "VLLMQueueDepthHigh" and a["state"] == "firing"
                for a in prometheus.alerts()
            ),
            120,
        )
        for future in futures:
            future.result()

    # Every panel's query returns at least one series once rates have two samples.
    empty = []
    for dashboard, title, expr in dashboard_queries():
        try:
            wait_for_prometheus(title, lambda expr=expr: bool(prometheus.query(expr)), 30)
        except TimeoutError:
            empty.append(f"{dashboard}/{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)

    # Every metric an alert or recording rule reads is being scraped.
    missing = set()
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            for name in metric_names(rule["expr"]) - {"vllm:gpu_cache_usage_perc"}:
                if name.startswith("infinitecontext:"):
                    continue  # recording rules: their inputs are checked here
                if not prometheus.query(f"{{__name__=~'{name}(_total|_bucket)?'}}"):
                    missing.add(name)
    assert not missing, f"metrics no target exposes: {sorted(missing)}"
