"""`real_node`: a control plane of its own with one real node (containerd, kubelet,
kube-proxy; ``infinitecontext/devtools/realnode.py``), shared by every test that runs
real containers, and no simulated nodes, so that every pod runs for real.

The node runs the operator's image (built here, cached by docker) and a busybox sandbox
image. One real node fits a machine (its bridge and iptables chains are the
machine's): the tests that use it run under the e2e lock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugins.kube import KubeCluster, _binaries_built, go_is_new_enough
from plugins.prerequisites import missing

from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools import realnode

REPO = Path(__file__).resolve().parents[2]


SYSTEM = "infinitecontext-system"
DEPLOYMENT = "infinitecontext-operator"


@dataclass(frozen=True)
class RealNode:
    cluster: KubeCluster
    layout: devcluster.ClusterLayout
    name: str
    ip: str
    gateway: str

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.cluster.kubectl(*args, stdin=stdin)

    def load_images(self, *images: str) -> None:
        """Import docker images into the node's containerd (a no-op when current)."""
        realnode.import_images(realnode.NodeLayout(self.layout), images)

    def apply_kustomization(self, directory: Path) -> None:
        """As docs/operator.md says: server-side (the CRDs exceed client-side apply's
        annotation), and once more after the CRDs are established, because the first
        apply meets kopf's ClusterKopfPeering before its CRD serves."""
        try:
            self.kubectl("apply", "--server-side", "-k", str(directory))
        except devcluster.ClusterError as error:
            assert "ensure CRDs are installed first" in str(error), error
            self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
            self.kubectl("apply", "--server-side", "-k", str(directory))

    def operator_rolled_out(self) -> None:
        deployment = f"deployment/{DEPLOYMENT}"
        self.kubectl("rollout", "status", deployment, "-n", SYSTEM, "--timeout=300s")

    def operator_pods(self) -> list[dict[str, Any]]:
        selector = "app.kubernetes.io/name=infinitecontext-operator"
        listed = json.loads(self.kubectl("get", "pods", "-n", SYSTEM, "-l", selector, "-o=json"))
        return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]


def operator_overlay(directory: Path, patch: list[dict[str, Any]]) -> Path:
    """A kustomization of deploy-local/ with a JSON patch of the operator's Deployment."""
    directory.mkdir(parents=True, exist_ok=True)
    target = {"group": "apps", "version": "v1", "kind": "Deployment", "name": DEPLOYMENT}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes relative paths only.
        "resources": [os.path.relpath(REPO / "deploy-local", directory)],
        "patches": [{"target": target, "patch": yaml.safe_dump(patch)}],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def build_image(target: str) -> None:
    """scripts/build-images.sh TARGET from this checkout: docker's layer cache makes it
    a minute or less when only the code changed, and a tag that another checkout built
    never stands in for this one's. The node loads it from docker."""
    if shutil.which("docker") is None:
        missing("no docker for the images (make images-prereqs installs docker.io)")
    # The test environment's pip trusts a proxy's CA (PIP_CERT); the build needs it too.
    env = os.environ | {"ICX_EXTRA_CA": os.environ.get("PIP_CERT", "")}
    done = subprocess.run(
        [str(REPO / "scripts" / "build-images.sh"), target],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]


@pytest.fixture(scope="session")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealNode]:
    lacking = realnode.missing_prerequisites()
    if lacking:
        missing("a real node needs " + ", ".join(lacking) + " (make realnode-prereqs)")
    if os.geteuid() != 0:
        missing("a real node needs root (containerd, the kubelet, iptables)")
    layout = devcluster.ClusterLayout(state_dir=tmp_path_factory.mktemp("real-node"))
    if not _binaries_built(layout):
        missing("no Go >= 1.26 to build the local Kubernetes control plane")
    if not realnode.binaries_present(layout) and go_is_new_enough():
        realnode.build(layout)
    if not realnode.binaries_present(layout):
        missing("no Go >= 1.26 to build the kubelet")
    build_image("operator")
    spec = devcluster.ClusterSpec(cpu_nodes=0, gpu_nodes=0, serve_pods=True)
    node_spec = realnode.NodeSpec()
    with devcluster.running(layout, spec) as state:
        node = realnode.up(layout, state, node_spec)
        cluster = KubeCluster(layout.admin_kubeconfig, layout.kubectl, layout.state_dir, local=True)
        yield RealNode(cluster, layout, node.name, node.node_ip, node_spec.gateway)
