"""The real node (docs/cluster.md, "A real node"): its configuration for this machine
(fast, no cluster), then on the node itself a pod from a local image runs to Completed,
a Service carries a pod's request to another pod, a pod reaches the API server through
the `kubernetes` Service, and `kubectl logs` reads a container's output."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from plugins.realnode import RealNode

from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools import realnode
from infinitecontext.devtools.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
OPERATOR_IMAGE = realnode.DEFAULT_IMAGES[0]


# ---------------------------------------------------------------- configuration (fast)


def _kubernetes_pins(go_mod: Path) -> tuple[str, list[str]]:
    text = go_mod.read_text()
    version = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", text, re.MULTILINE)
    assert version is not None, go_mod
    replaces = re.findall(r"^\s*(k8s\.io/\S+ => \S+ \S+)$", text, re.MULTILINE)
    return version.group(1), sorted(replaces)


def test_node_binaries_pin_the_control_planes_kubernetes_release():
    plane = _kubernetes_pins(REPO / "tests" / "cluster" / "go.mod")
    node = _kubernetes_pins(REPO / "tests" / "node" / "go.mod")
    assert node == plane


def test_containerd_is_a_second_instance_that_this_machine_can_run(tmp_path):
    node = realnode.NodeLayout(devcluster.ClusterLayout(state_dir=tmp_path))
    config = realnode.containerd_config(node)
    # Root lacks CAP_SYS_RESOURCE here: without this every pod sandbox fails to start.
    assert "restrict_oom_score_adj = true" in config
    assert f'address = "{tmp_path}/node/containerd.sock"' in config
    assert f'root = "{tmp_path}/node/containerd-root"' in config
    assert f'sandbox_image = "{realnode.SANDBOX_IMAGE}"' in config
    assert "SystemdCgroup = false" in config


def test_kubelet_runs_on_cgroup_v1_and_never_collects_images(tmp_path):
    node = realnode.NodeLayout(devcluster.ClusterLayout(state_dir=tmp_path))
    ports = {"kubelet": 1, "kubelet-healthz": 2}
    config = realnode.kubelet_config(node, realnode.NodeSpec(), ports)
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["imageGCHighThresholdPercent"] == 100
    assert config["authentication"]["anonymous"]["enabled"] is False


def test_pod_traffic_is_not_masqueraded_off_the_machine(tmp_path):
    node = realnode.NodeLayout(devcluster.ClusterLayout(state_dir=tmp_path))
    bridge = realnode.cni_config(node, realnode.NodeSpec())["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"].startswith(str(tmp_path))


def test_api_server_listens_beyond_loopback_only_for_a_real_node():
    loopback = devcluster.apiserver_address_flags("127.0.0.1")
    assert "--bind-address=127.0.0.1" in loopback
    assert "--endpoint-reconciler-type=none" in loopback
    served = devcluster.apiserver_address_flags("192.0.2.2")
    assert "--advertise-address=192.0.2.2" in served
    assert not any(flag.startswith("--endpoint-reconciler") for flag in served)


def test_a_second_node_on_the_machine_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(realnode, "missing_prerequisites", lambda: [])
    monkeypatch.setattr(realnode, "binaries_present", lambda layout: True)
    monkeypatch.setattr(realnode, "_link_exists", lambda name: True)
    state = devcluster.ClusterState(1, 2, 3, advertise_address="192.0.2.2")
    layout = devcluster.ClusterLayout(state_dir=tmp_path)
    with pytest.raises(realnode.NodeError, match="another real node runs"):
        realnode.up(layout, state)


def test_a_loopback_only_plane_is_refused_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(realnode, "missing_prerequisites", lambda: [])
    monkeypatch.setattr(realnode, "binaries_present", lambda layout: True)
    monkeypatch.setattr(realnode, "_link_exists", lambda name: False)
    state = devcluster.ClusterState(1, 2, 3)
    layout = devcluster.ClusterLayout(state_dir=tmp_path)
    with pytest.raises(realnode.NodeError, match="simulated nodes only"):
        realnode.up(layout, state)


def test_a_plane_without_simulated_nodes_registers_none(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("kubectl must not be asked to apply an empty List")

    monkeypatch.setattr(devcluster, "kubectl", refuse)
    layout = devcluster.ClusterLayout(state_dir=tmp_path)
    assert devcluster._register_nodes(layout, devcluster.ClusterSpec(cpu_nodes=0, gpu_nodes=0)) == 0


def test_the_kubelet_authenticates_as_its_node_for_the_node_authorizer(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from infinitecontext.devtools.pki import issue_client_cert, write_pki

    write_pki(tmp_path)
    issue_client_cert(tmp_path, "kubelet", "system:node:icx-real-0", ("system:nodes",))
    cert = x509.load_pem_x509_certificate((tmp_path / "kubelet.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:icx-real-0"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"


@pytest.mark.parametrize(
    ("docker_name", "containerd_name"),
    [
        ("ghcr.io/infinitecontext/operator:0.1.0", "ghcr.io/infinitecontext/operator:0.1.0"),
        ("localhost/icx/pause:1", "localhost/icx/pause:1"),
        ("local/debian:bookworm", "docker.io/local/debian:bookworm"),
        ("busybox:1", "docker.io/library/busybox:1"),
    ],
)
def test_image_names_as_containerd_records_them(docker_name, containerd_name):
    assert realnode._containerd_name(docker_name) == containerd_name


# ---------------------------------------------------------------- on the real node (slow)


def pod(name: str, image: str, command: list[str], **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}
            ],
            **spec,
        },
    }


def apply(node: RealNode, namespace: str, *objects: dict[str, object]) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    node.cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(document))


def phase(node: RealNode, namespace: str, name: str) -> str:
    return node.cluster.kubectl("get", "pod", name, "-n", namespace, "-o=jsonpath={.status.phase}")


def wait_completed(node: RealNode, namespace: str, name: str, timeout_s: float = 180) -> str:
    """Wait for the pod to succeed; returns its output (kubectl logs, through the kubelet)."""

    def describe() -> str:
        status = node.cluster.kubectl("get", "pod", name, "-n", namespace, "-o=yaml")[-2000:]
        return status + node.cluster.kubectl("get", "events", "-n", namespace)[-3000:]

    wait_for(
        f"pod {name} to succeed",
        lambda: {"Succeeded": True, "Failed": False}.get(phase(node, namespace, name)) is not None,
        timeout_s=timeout_s,
        every_s=1,
        on_timeout=describe,
    )
    assert phase(node, namespace, name) == "Succeeded", describe()
    return node.cluster.kubectl("logs", name, "-n", namespace)


@pytest.fixture
def node_namespace(real_node: RealNode, request: pytest.FixtureRequest):
    name = "rn-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    real_node.cluster.kubectl("create", "namespace", name)
    wait_for(
        "the default ServiceAccount",
        lambda: real_node.cluster.kubectl("get", "serviceaccount", "default", "-n", name),
        timeout_s=60,
        retry_on=(devcluster.ClusterError,),
    )
    yield name
    real_node.cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.mark.slow
def test_a_pod_from_the_local_image_runs_to_completed(real_node, node_namespace):
    script = "import infinitecontext, os; print('ran as', os.getuid())"
    apply(real_node, node_namespace, pod("hello", OPERATOR_IMAGE, ["python", "-c", script]))
    # The operator image runs as its non-root user (docs/images.md).
    assert wait_completed(real_node, node_namespace, "hello").strip() == "ran as 65532"


@pytest.mark.slow
def test_a_service_carries_a_pods_request_to_another_pod(real_node, node_namespace):
    server_script = textwrap.dedent(
        """
        import http.server
        class Hello(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"hello from a pod")
        http.server.HTTPServer(("", 8080), Hello).serve_forever()
        """
    )
    server = pod("web", OPERATOR_IMAGE, ["python", "-c", server_script])
    server["spec"]["restartPolicy"] = "Always"  # type: ignore[index]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    apply(real_node, node_namespace, server, service)
    cluster_ip = real_node.cluster.kubectl(
        "get", "service", "web", "-n", node_namespace, "-o=jsonpath={.spec.clusterIP}"
    )
    # Retried inside the pod: kube-proxy writes the Service's rules within a second or so.
    client_script = textwrap.dedent(
        f"""
        import time, urllib.request
        for attempt in range(60):
            try:
                print(urllib.request.urlopen("http://{cluster_ip}:80/", timeout=2).read().decode())
                break
            except OSError:
                time.sleep(1)
        else:
            raise SystemExit("the Service never answered")
        """
    )
    apply(real_node, node_namespace, pod("client", OPERATOR_IMAGE, ["python", "-c", client_script]))
    assert wait_completed(real_node, node_namespace, "client").strip() == "hello from a pod"


@pytest.mark.slow
def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(real_node, node_namespace):
    # What the operator's pod does: the in-cluster configuration of the `kubernetes` client.
    script = textwrap.dedent(
        """
        from kubernetes import client, config
        config.load_incluster_config()
        print(client.VersionApi().get_code().git_version)
        """
    )
    apply(real_node, node_namespace, pod("api", OPERATOR_IMAGE, ["python", "-c", script]))
    version = wait_completed(real_node, node_namespace, "api").strip()
    assert version.startswith("v1.")
