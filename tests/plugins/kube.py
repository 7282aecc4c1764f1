"""A real Kubernetes API for the tests: `kube_cluster` (session) and `kube_namespace`.

`kube_cluster` uses the cluster that $KUBECONFIG points at when it answers; otherwise it
builds (incrementally) and starts the local control plane of
``infinitecontext/devtools/cluster.py`` once for the session, in a temporary state directory,
and stops it at the end. Without either, the tests that use it are skipped with one line
saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from plugins.prerequisites import missing

from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools.waiting import wait_for

GO_MIN = "1.26"


@dataclass(frozen=True)
class KubeCluster:
    """How a test reaches the cluster: the admin kubeconfig, kubectl, and helpers."""

    kubeconfig: Path
    kubectl_path: Path
    workdir: Path
    local: bool  # started by this session (False: the cluster of $KUBECONFIG)

    def kubectl(self, *args: str, stdin: str | None = None, kubeconfig: Path | None = None) -> str:
        return devcluster.kubectl(
            self.kubectl_path, kubeconfig or self.kubeconfig, *args, stdin=stdin
        )

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig acting as ServiceAccount namespace/name (created if missing)."""
        out = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return devcluster.service_account_kubeconfig(
            self.kubectl_path, self.kubeconfig, namespace, name, out
        )

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A `kubernetes` ApiClient for the admin, or for the given kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))


def _external_kubeconfig(kubectl_path: Path | None) -> Path | None:
    """$KUBECONFIG when it names one file whose cluster answers /readyz within 5 s."""
    value = os.environ.get("KUBECONFIG", "")
    if not value or os.pathsep in value or not Path(value).is_file() or kubectl_path is None:
        return None
    probe = [
        str(kubectl_path),
        f"--kubeconfig={value}",
        "get",
        "--raw=/readyz",
        "--request-timeout=5s",
    ]
    answered = subprocess.run(probe, capture_output=True, check=False, timeout=30).returncode == 0
    return Path(value) if answered else None


def go_is_new_enough() -> bool:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        return False
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=False
    ).stdout
    have = tuple(int(p) for p in version.strip().removeprefix("go").split(".")[:2] if p.isdigit())
    return have >= tuple(int(p) for p in GO_MIN.split("."))


def _binaries_built(layout: devcluster.ClusterLayout) -> bool:
    """True once the plane's binaries are there, building them (incrementally) with Go."""
    if not devcluster.binaries_present(layout) and go_is_new_enough():
        devcluster.build(layout)
    return devcluster.binaries_present(layout)


@pytest.fixture(scope="session")
def kube_binaries() -> Path:
    """The folder of the plane's binaries (kubectl among them), built if needed."""
    layout = devcluster.ClusterLayout()
    if not _binaries_built(layout):
        missing(f"no Go >= {GO_MIN} to build the local Kubernetes control plane")
    return layout.bin_dir


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    layout = devcluster.ClusterLayout(state_dir=tmp_path_factory.mktemp("kube-cluster"))
    built_kubectl = layout.kubectl if layout.kubectl.exists() else None
    kubectl_path = built_kubectl or (Path(p) if (p := shutil.which("kubectl")) else None)
    external = _external_kubeconfig(kubectl_path)
    if external is not None and kubectl_path is not None:
        yield KubeCluster(external, kubectl_path, layout.state_dir, local=False)
        return
    if not _binaries_built(layout):
        missing(f"no Kubernetes: KUBECONFIG reaches no cluster and no Go >= {GO_MIN} to build one")
    with devcluster.running(layout):
        yield KubeCluster(layout.admin_kubeconfig, layout.kubectl, layout.state_dir, local=True)


def wait_for_default_account(cluster: KubeCluster, namespace: str) -> None:
    """Pods need the namespace's `default` ServiceAccount, which a controller creates."""
    wait_for(
        f"the default ServiceAccount of {namespace}",
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace),
        timeout_s=30,
        every_s=0.2,
        retry_on=(devcluster.ClusterError,),
    )


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace whose `default` ServiceAccount exists (pods need it), deleted after."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube_cluster.kubectl("create", "namespace", name)
    wait_for_default_account(kube_cluster, name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false")
