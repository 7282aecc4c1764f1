"""Scale benchmark: N TrainingRuns created at once on the local control plane.

    python -m infinitecontext.devtools.operator_scale --runs 500 [--kubeconfig K] [--json out.json]

Starts the local control plane (kwok nodes) unless a kubeconfig is given, installs the
CRDs, runs the real operator process, creates N TrainingRuns (kubernetes backend) in
one request and waits until every one has `Submitted=True`. The Jobs' pods are held
Pending by a nodeSelector no node has, so the run measures the operator, not kwok.

Reported: wall time until all are Submitted, the operator's peak RSS (VmHWM), the
per-object latency from creation to `Submitted` (p50/p90/p99/max), and the operator's
own reconcile-duration histogram (`icx_operator_reconcile_duration_seconds`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from infinitecontext.devtools import cluster as devcluster

REPO = Path(__file__).resolve().parents[2]
HOLD = {"infinitecontext.dev/bench": "hold"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def histogram_quantile(metrics_text: str, name: str, q: float) -> float:
    """Prometheus-style quantile from cumulative buckets (upper bound of the bucket)."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket{{") and 'kind="TrainingRun"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("nan")


def metric_value(metrics_text: str, prefix: str) -> float:
    return sum(
        float(line.split()[-1])
        for line in metrics_text.splitlines()
        if line.startswith(prefix) and 'kind="TrainingRun"' in line
    )


def training_runs(namespace: str, count: int) -> dict[str, Any]:
    spec = {
        "model": {"preset": "tiny"},
        "hyperparameters": {"steps": 8, "warmupSteps": 2},
        "kubernetes": {"image": "trainer:bench", "nodeSelector": HOLD},
        "resources": {"cpu": "100m", "memory": "128Mi"},
    }
    items = [
        {
            "apiVersion": "infinitecontext.dev/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": f"bench-{i:04d}", "namespace": namespace},
            "spec": spec,
        }
        for i in range(count)
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def create_at_once(kubectl: Any, objects: dict[str, Any], clients: int = 8) -> None:
    """Create the objects from `clients` kubectl processes at once (one is serial)."""
    from concurrent.futures import ThreadPoolExecutor

    items = objects["items"]
    chunks = [items[i::clients] for i in range(clients)]
    documents = [yaml.safe_dump({**objects, "items": chunk}) for chunk in chunks if chunk]
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda text: kubectl("create", "-f", "-", stdin=text), documents))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def submitted_latencies(items: list[dict[str, Any]]) -> list[float]:
    latencies = []
    for item in items:
        conditions = (item.get("status") or {}).get("conditions") or []
        found = next((c for c in conditions if c["type"] == "Submitted"), None)
        if found and found["status"] == "True":
            created = _parse_time(item["metadata"]["creationTimestamp"])
            latencies.append(_parse_time(found["lastTransitionTime"]) - created)
    return latencies


def start_operator(
    kubeconfig: Path, namespace: str, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    metrics, health = devcluster.free_ports(2)
    command = [
        sys.executable, "-m", "infinitecontext.cli", "operator", "run", "-n", namespace,
        "--kubeconfig", str(kubeconfig), "--metrics-port", str(metrics),
        "--health-port", str(health),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2):
                return process, f"http://127.0.0.1:{metrics}/metrics"
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"operator not healthy; see {log}")


def run_benchmark(runs: int, kubeconfig: Path | None, workdir: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        layout = devcluster.ClusterLayout(state_dir=workdir / "cluster")
        if kubeconfig is None:
            stack.enter_context(devcluster.running(layout))
            kubeconfig = layout.admin_kubeconfig
        kubectl_path = layout.kubectl if layout.kubectl.exists() else Path("kubectl")

        def kubectl(*args: str, stdin: str | None = None) -> str:
            return devcluster.kubectl(kubectl_path, kubeconfig, *args, stdin=stdin)

        kubectl("apply", "-f", str(REPO / "crds"))
        names = [f"crd/{p.stem}" for p in sorted((REPO / "crds").glob("*.yaml"))]
        kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
        namespace = f"bench-{os.getpid()}"
        kubectl("create", "namespace", namespace)
        process, metrics_url = start_operator(kubeconfig, namespace, workdir / "operator.log")
        stack.callback(lambda: os.killpg(process.pid, signal.SIGTERM))
        started = time.monotonic()
        create_at_once(kubectl, training_runs(namespace, runs))
        created_s = time.monotonic() - started
        peak = 0.0
        items: list[dict[str, Any]] = []
        while time.monotonic() - started < 1800:
            peak = max(peak, peak_rss_mib(process.pid))
            items = json.loads(kubectl("get", "trainingruns", "-n", namespace, "-o", "json"))[
                "items"
            ]
            if len(submitted_latencies(items)) == runs:
                break
            time.sleep(1)
        all_submitted_s = time.monotonic() - started
        time.sleep(2)
        peak = max(peak, peak_rss_mib(process.pid))
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            metrics_text = response.read().decode()
        latencies = submitted_latencies(items)
        duration = "icx_operator_reconcile_duration_seconds"
        return {
            "runs": runs,
            "load_average_1m_at_end": os.getloadavg()[0],
            "submitted": len(latencies),
            "create_request_s": round(created_s, 2),
            "all_submitted_s": round(all_submitted_s, 1),
            "operator_peak_rss_mib": round(peak, 1),
            "submitted_latency_s": {
                q: round(percentile(latencies, float(q[1:])), 2) for q in ("p50", "p90", "p99")
            }
            | {"max": round(max(latencies, default=float("nan")), 2)},
            "reconciles": int(metric_value(metrics_text, "icx_operator_reconciles_total")),
            "reconcile_errors": int(metric_value(metrics_text, "icx_operator_reconcile_errors")),
            "reconcile_duration_s": {
                "mean": round(
                    metric_value(metrics_text, f"{duration}_sum")
                    / max(1.0, metric_value(metrics_text, f"{duration}_count")),
                    4,
                ),
                "p50_bucket": histogram_quantile(metrics_text, duration, 0.5),
                "p95_bucket": histogram_quantile(metrics_text, duration, 0.95),
                "p99_bucket": histogram_quantile(metrics_text, duration, 0.99),
            },
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="icx-bench-"))  # kept: the operator's log
    result = run_benchmark(args.runs, args.kubeconfig, workdir)
    result["workdir"] = str(workdir)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if result["submitted"] == result["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
