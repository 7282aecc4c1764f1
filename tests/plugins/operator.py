"""The operator for end-to-end tests: CRDs installed on the test cluster, and the real
`icx operator run` process (started, health-checked, killed at the end).

`operator_account` gives a kubeconfig for a ServiceAccount bound to exactly the rules
of deploy/rbac.yaml, so the e2e tests prove those rules are enough.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugins.kube import KubeCluster
from plugins.processes import free_port, wait_http_ok

from infinitecontext.crds.models import KINDS
from infinitecontext.devtools.cluster import ClusterError
from infinitecontext.devtools.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_NAMESPACE = "icx-operator-test"
ACCOUNT = "icx-operator"


@pytest.fixture(scope="session")
def icx_crds(kube_cluster: KubeCluster) -> KubeCluster:
    """Our CRDs (and kopf's peering CRDs), installed and established."""
    kube_cluster.kubectl("apply", "-f", str(REPO / "crds"))
    peering = yaml.safe_load_all((REPO / "deploy" / "peering.yaml").read_text())
    crds = [doc for doc in peering if doc["kind"] == "CustomResourceDefinition"]
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    names = [f"crd/{kind.crd_name}" for kind in KINDS] + [
        "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
    ]
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
    # Established comes before the API server's cache of the new kind has its first list:
    # until then lists and watches answer 429 "storage is (re)initializing". The
    # InferenceService e2e starts its operator right after this fixture; on CI that
    # operator's first list got the 429 and the first test timed out waiting on it (twice
    # in three runs). A list that succeeds here closes the window.
    plurals = ",".join(name.removeprefix("crd/") for name in names)

    def lists_answer() -> bool:
        kube_cluster.kubectl("get", plurals, "--all-namespaces")  # ClusterError until then
        return True

    wait_for("the new kinds to answer a list", lists_answer, 60, retry_on=(ClusterError,))
    return kube_cluster


@pytest.fixture(scope="session")
def operator_account(icx_crds: KubeCluster) -> Path:
    """A kubeconfig of a ServiceAccount with exactly deploy/rbac.yaml's rules."""
    cluster = icx_crds
    documents = list(yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()))
    for doc in documents:
        doc["metadata"]["name"] = "icx-operator-test"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = "icx-operator-test"
            doc["subjects"] = [
                {"kind": "ServiceAccount", "name": ACCOUNT, "namespace": ACCOUNT_NAMESPACE}
            ]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ACCOUNT_NAMESPACE}}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([namespace, *documents]))
    return cluster.service_account_kubeconfig(ACCOUNT_NAMESPACE, ACCOUNT)


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    metrics_url: str
    log: Path

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crashed pod."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


StartOperator = Callable[..., OperatorProcess]


def start_operator(
    kubeconfig: Path,
    namespaces: list[str],
    log: Path,
    tracking_uri: str = "",
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> OperatorProcess:
    metrics_port, health_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "infinitecontext.cli", "operator", "run",
        "--kubeconfig", str(kubeconfig),
        "--metrics-port", str(metrics_port), "--health-port", str(health_port),
        "--tracking-uri", tracking_uri,
        "--slurm-job-path", f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
    ]  # fmt: skip
    for namespace in namespaces:
        command += ["--namespace", namespace]
    command += extra_args or []
    env = os.environ | {"ICX_OPERATOR_POLL_SECONDS": "1"} | (extra_env or {})
    handle = log.open("ab")
    process = subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    operator = OperatorProcess(process, f"http://127.0.0.1:{metrics_port}/metrics", log)
    healthz = f"http://127.0.0.1:{health_port}/healthz"
    wait_http_ok(healthz, operator.process, operator.log, timeout=90, every=0.3)
    return operator


@pytest.fixture
def operator_factory(tmp_path: Path) -> Iterator[StartOperator]:
    """Start `icx operator run` processes; all are stopped after the test."""
    started: list[OperatorProcess] = []

    def start(kubeconfig: Path, namespaces: list[str], **kwargs: Any) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        operator = start_operator(kubeconfig, namespaces, log, **kwargs)
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()
