"""One real node beside the simulated ones: containerd, a kubelet and kube-proxy on this
machine, joined to the control plane of ``cluster.py`` (docs/cluster.md, "A real node").

``tests/node/build.sh`` builds the kubelet and kube-proxy from the control plane's
Kubernetes release; containerd, runc and the CNI plugins are Debian's. ``up``:

1. writes containerd's configuration (its own root, state and socket under the cluster's
   state directory, so it never meets docker's containerd), a CNI bridge network and the
   node's client certificates (``system:node:<name>``, ``system:kube-proxy``);
2. starts containerd and imports the local images into it (``docker save | ctr import``),
   with a local sandbox image: nothing is ever pulled;
3. starts the kubelet and kube-proxy (iptables mode, so pods reach Services), and waits
   until the node is Ready.

What this machine asks for (see docs/cluster.md): cgroup v1 (``failCgroupV1: false``, the
cgroupfs driver) and ``restrict_oom_score_adj``, because root lacks CAP_SYS_RESOURCE.
One real node runs per machine: its bridge, routes and kube-proxy's iptables chains are
the machine's. ``down`` removes the pods' containers, unmounts what the kubelet mounted,
and deletes the bridge and kube-proxy's rules.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools.pki import issue_client_cert
from infinitecontext.devtools.waiting import wait_for

NODE_BUILD_SCRIPT = devcluster.REPO_ROOT / "tests" / "node" / "build.sh"
NODE_BINARIES = ("kubelet", "kube-proxy")
CONTAINERD = Path("/usr/bin/containerd")
CTR = Path("/usr/bin/ctr")
CNI_BIN_DIR = Path("/usr/lib/cni")
BUSYBOX = Path("/bin/busybox")
# Kubernetes' own label for a node's role; the local overlay pins the operator here.
REAL_NODE_LABEL = ("icx.dev/real-node", "true")
# A sandbox ("pause") image made here from busybox-static: it holds the pod's namespaces.
SANDBOX_IMAGE = "localhost/icx/pause:1"
SANDBOX_COMMAND = ["/bin/busybox", "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
# The images `up` imports unless told otherwise: the operator's (docs/images.md).
DEFAULT_IMAGES = ("ghcr.io/infinitecontext/operator:0.1.0",)


class NodeError(devcluster.ClusterError):
    """The real node could not be built, started or joined; the message says why."""


@dataclass(frozen=True)
class NodeSpec:
    """The real node: its name, pod network and the local images it can run."""

    name: str = "icx-real-0"
    pod_cidr: str = "10.244.0.0/24"
    bridge: str = "icx0"
    images: tuple[str, ...] = DEFAULT_IMAGES
    start_timeout_s: float = 120.0

    @property
    def gateway(self) -> str:
        """The bridge's address: the host as the pods see it."""
        return self.pod_cidr.rsplit(".", 1)[0] + ".1"


@dataclass
class NodeState:
    """What `up` recorded in node.json, which `down` and `status` read."""

    name: str
    node_ip: str
    bridge: str
    pids: dict[str, int] = field(default_factory=dict)
    ready_after_s: float = 0.0
    images_import_s: float = 0.0


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps its state: ``<cluster state>/node/``."""

    cluster: devcluster.ClusterLayout

    @property
    def root(self) -> Path:
        return self.cluster.state_dir / "node"

    @property
    def state_file(self) -> Path:
        return self.root / "node.json"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    def binary(self, name: str) -> Path:
        return CONTAINERD if name == "containerd" else self.cluster.binary(name)


# --- building --------------------------------------------------------------------------


def binaries_present(layout: devcluster.ClusterLayout) -> bool:
    return all(layout.binary(name).exists() for name in NODE_BINARIES)


def build(layout: devcluster.ClusterLayout) -> None:
    """Run tests/node/build.sh (a no-op when the kubelet and kube-proxy are current)."""
    if shutil.which("go") is None:
        raise NodeError("Go is not installed: `make cluster-build` installs it (Go >= 1.26)")
    subprocess.run([str(NODE_BUILD_SCRIPT), str(layout.bin_dir)], check=True)


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run a real node (`make realnode-prereqs` installs it)."""
    needed = {
        "containerd (Debian's containerd)": CONTAINERD,
        "ctr (Debian's containerd)": CTR,
        "runc (Debian's runc)": Path("/usr/sbin/runc"),
        "the CNI plugins (Debian's containernetworking-plugins)": CNI_BIN_DIR / "bridge",
        "busybox (Debian's busybox-static)": BUSYBOX,
        "iptables": Path("/usr/sbin/iptables"),
    }
    missing = [what for what, path in needed.items() if not path.exists()]
    if shutil.which("docker") is None:
        missing.append("docker (the local images come from it)")
    return missing


# --- pure builders: configuration files --------------------------------------------------


def _toml_string(value: str | Path) -> str:
    # A JSON string is a TOML basic string for the paths and names written here.
    return json.dumps(str(value))


def containerd_config(node: NodeLayout) -> str:
    """containerd's configuration: its own root, state and socket; the CRI plugin with
    the local sandbox image, the cgroupfs driver and restrict_oom_score_adj (root here
    lacks CAP_SYS_RESOURCE, and the kubelet's -998 for sandboxes is refused otherwise)."""
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = f"{cri[:-1]}.containerd.runtimes.runc]"
    return "\n".join(
        [
            "version = 2",
            f"root = {_toml_string(node.root / 'containerd-root')}",
            f"state = {_toml_string(node.root / 'containerd-state')}",
            "[grpc]",
            f"  address = {_toml_string(node.containerd_socket)}",
            "[ttrpc]",
            f"  address = {_toml_string(str(node.containerd_socket) + '.ttrpc')}",
            cri,
            f"  sandbox_image = {_toml_string(SANDBOX_IMAGE)}",
            "  restrict_oom_score_adj = true",
            '  stream_server_address = "127.0.0.1"',
            f"{cri[:-1]}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            runc,
            '  runtime_type = "io.containerd.runc.v2"',
            f"{runc[:-1]}.options]",
            "  SystemdCgroup = false",
            f"{cri[:-1]}.cni]",
            f"  bin_dir = {_toml_string(CNI_BIN_DIR)}",
            f"  conf_dir = {_toml_string(node.cni_conf_dir)}",
            "",
        ]
    )


def cni_config(node: NodeLayout, spec: NodeSpec) -> dict[str, Any]:
    """A bridge network for the pods. No masquerading: pod traffic may not leave this
    machine, only reach the host (the bridge's gateway) and other pods."""
    return {
        "cniVersion": "1.0.0",
        "name": "icx-pods",
        "plugins": [
            {
                "type": "bridge",
                "bridge": spec.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": spec.pod_cidr, "gateway": spec.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    # Its leases live with the node, so `down` forgets them.
                    "dataDir": str(node.root / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(node: NodeLayout, spec: NodeSpec, ports: dict[str, int]) -> dict[str, Any]:
    """The KubeletConfiguration for this machine: cgroup v1 with the cgroupfs driver, no
    swap check, no image garbage collection (nothing can be pulled back), and only the
    cluster CA's clients (the API server) may use its API."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "podCIDR": spec.pod_cidr,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet-healthz"],
        "enforceNodeAllocatable": [],
        "localStorageCapacityIsolation": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%"},
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(node.cluster.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "resolvConf": "/etc/resolv.conf",
    }


def kube_proxy_config(
    node: NodeLayout, spec: NodeSpec, node_ip: str, ports: dict[str, int]
) -> dict[str, Any]:
    """kube-proxy in iptables mode. It leaves the machine's conntrack limits alone (root
    may not raise them here) and opens NodePorts on the node's address only."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(node.cluster.kubeconfig("kube-proxy"))},
        "hostnameOverride": spec.name,
        "clusterCIDR": spec.pod_cidr,
        "healthzBindAddress": f"127.0.0.1:{ports['kube-proxy-healthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['kube-proxy-metrics']}",
        "nodePortAddresses": [f"{node_ip}/32"],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def node_commands(node: NodeLayout, spec: NodeSpec, node_ip: str) -> dict[str, list[str]]:
    cluster = node.cluster
    return {
        "containerd": [str(CONTAINERD), f"--config={node.containerd_config}"],
        "kubelet": [
            str(cluster.binary("kubelet")),
            f"--config={node.root / 'kubelet.yaml'}",
            f"--kubeconfig={cluster.kubeconfig('kubelet')}",
            f"--root-dir={node.kubelet_dir}",
            f"--cert-dir={node.root / 'kubelet-pki'}",
            f"--hostname-override={spec.name}",
            # The kubelet refuses a loopback node IP, and `kubectl logs` needs one.
            f"--node-ip={node_ip}",
            "--node-labels={}={}".format(*REAL_NODE_LABEL),
        ],
        "kube-proxy": [
            str(cluster.binary("kube-proxy")),
            f"--config={node.root / 'kube-proxy.yaml'}",
        ],
    }


# --- the machine ------------------------------------------------------------------------


def _run(*command: str, stdin: Any = None) -> str:
    done = subprocess.run(command, stdin=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NodeError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _ctr(node: NodeLayout, *args: str, stdin: Any = None) -> str:
    return _run(str(CTR), f"--address={node.containerd_socket}", "-n", "k8s.io", *args, stdin=stdin)


def build_sandbox_image() -> None:
    """docker-import a busybox-static rootfs as SANDBOX_IMAGE (a no-op when present)."""
    if (
        subprocess.run(
            ["docker", "image", "inspect", SANDBOX_IMAGE], capture_output=True
        ).returncode
        == 0
    ):
        return
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "rootfs.tar"
        with tarfile.open(archive, "w") as rootfs:
            rootfs.add(BUSYBOX, arcname="bin/busybox")
        change = f"CMD {json.dumps(SANDBOX_COMMAND)}"
        with archive.open("rb") as data:
            _run("docker", "import", "--change", change, "-", SANDBOX_IMAGE, stdin=data)


def import_images(node: NodeLayout, images: Iterable[str]) -> None:
    """`docker save | ctr images import` each image that containerd lacks or holds in
    another build than docker's. containerd's CRI plugin names an image by its config
    digest too, which is docker's image id: the tag is current when both name one
    manifest."""
    manifests = {}  # containerd's image name -> its manifest digest
    for line in _ctr(node, "images", "ls").splitlines()[1:]:
        if line.strip():
            ref, _media_type, digest, *_ = line.split()
            manifests[ref] = digest
    for image in images:
        inspect = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", image],
            capture_output=True,
            text=True,
            check=False,
        )
        if inspect.returncode != 0:
            raise NodeError(f"image {image} is not in docker: build it (`make images`)")
        current = manifests.get(_containerd_name(image))
        if current is not None and current == manifests.get(inspect.stdout.strip()):
            continue
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            _ctr(node, "images", "import", "-", stdin=save.stdout)
        finally:
            if save.stdout is not None:
                save.stdout.close()
            if save.wait() != 0:
                raise NodeError(f"docker save {image} failed (exit code {save.returncode})")


def _containerd_name(image: str) -> str:
    """The name containerd gives a docker image name (docker.io/library/ for short ones)."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


# --- up / down --------------------------------------------------------------------------


def read_state(node: NodeLayout) -> NodeState | None:
    if not node.state_file.exists():
        return None
    return NodeState(**json.loads(node.state_file.read_text()))


def node_processes(cluster: devcluster.ClusterLayout) -> dict[str, bool]:
    """The real node's processes, and whether each runs; empty without a real node."""
    node = NodeLayout(cluster)
    state = read_state(node)
    if state is None:
        return {}
    return {name: devcluster.process_is(pid, node.binary(name)) for name, pid in state.pids.items()}


def _write_state(node: NodeLayout, state: NodeState) -> None:
    node.state_file.write_text(json.dumps(asdict(state), indent=2))


def _write_yaml(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _prepare(node: NodeLayout, spec: NodeSpec, server: str, ip: str) -> None:
    cluster = node.cluster
    node.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    node.containerd_config.write_text(containerd_config(node))
    conflist = node.cni_conf_dir / "10-icx-pods.conflist"
    conflist.write_text(json.dumps(cni_config(node, spec), indent=2))
    issue_client_cert(cluster.pki, "kubelet", f"system:node:{spec.name}", ("system:nodes",))
    issue_client_cert(cluster.pki, "kube-proxy", "system:kube-proxy", ())
    for stem in ("kubelet", "kube-proxy"):
        devcluster.write_component_kubeconfig(cluster, server, stem)
    names = ("kubelet", "kubelet-healthz", "kube-proxy-healthz", "kube-proxy-metrics")
    ports = dict(zip(names, devcluster.free_ports(len(names)), strict=True))
    _write_yaml(node.root / "kubelet.yaml", kubelet_config(node, spec, ports))
    _write_yaml(node.root / "kube-proxy.yaml", kube_proxy_config(node, spec, ip, ports))


def _check_alive(node: NodeLayout, state: NodeState) -> None:
    for name, pid in state.pids.items():
        ended = devcluster.reap(pid)
        if ended or not devcluster.process_is(pid, node.binary(name)):
            log = node.cluster.logs / f"{name}.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            # Not a NodeError, which waiting for containerd's socket retries.
            raise devcluster.ClusterError(
                f"{name} (pid {pid}) ended ({ended or 'not our child'}); {log}:\n{tail}"
            )


def _node_ready(
    cluster: devcluster.ClusterLayout, server_state: devcluster.ClusterState, name: str
) -> bool:
    code, body = devcluster.api_get(cluster, server_state, f"/api/v1/nodes/{name}")
    if code != 200:
        return False
    conditions = json.loads(body)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def up(
    cluster: devcluster.ClusterLayout,
    server_state: devcluster.ClusterState,
    spec: NodeSpec | None = None,
) -> NodeState:
    """Start containerd, import the images, start the kubelet and kube-proxy, and wait
    until the node is Ready; `down` first if a previous node of this cluster is left."""
    spec = spec or NodeSpec()
    missing = missing_prerequisites()
    if missing:
        raise NodeError("a real node needs " + ", ".join(missing) + " (`make realnode-prereqs`)")
    if not binaries_present(cluster):
        raise NodeError(f"no kubelet in {cluster.bin_dir}: run `make realnode-build`")
    node = NodeLayout(cluster)
    down(cluster)
    if _link_exists(spec.bridge):
        raise NodeError(
            f"network interface {spec.bridge} exists: another real node runs on this machine "
            "(one per machine); stop it with `icx dev cluster down` in its state directory"
        )
    node.root.mkdir(parents=True, exist_ok=True)
    ip = server_state.advertise_address
    if ip.startswith("127."):
        raise NodeError(
            "the control plane was started for simulated nodes only: start it with a real node"
        )
    _prepare(node, spec, server_state.server, ip)
    state = NodeState(spec.name, ip, spec.bridge)
    begin = time.monotonic()
    commands = node_commands(node, spec, ip)
    try:
        state.pids["containerd"] = devcluster.start_process(
            cluster, "containerd", commands["containerd"]
        )
        _write_state(node, state)

        def containerd_answers() -> str:
            _check_alive(node, state)
            return _ctr(node, "version")

        wait_for("containerd to answer", containerd_answers, timeout_s=30, retry_on=(NodeError,))
        imported = time.monotonic()
        build_sandbox_image()
        import_images(node, (SANDBOX_IMAGE, *spec.images))
        state.images_import_s = round(time.monotonic() - imported, 1)
        for name in ("kubelet", "kube-proxy"):
            state.pids[name] = devcluster.start_process(cluster, name, commands[name])
        _write_state(node, state)

        def ready() -> bool:
            _check_alive(node, state)
            return _node_ready(cluster, server_state, spec.name)

        wait_for(
            f"node {spec.name} to be Ready", ready, timeout_s=spec.start_timeout_s, every_s=0.5
        )
    except BaseException:
        down(cluster)
        raise
    state.ready_after_s = round(time.monotonic() - begin, 1)
    _write_state(node, state)
    return state


def _sandbox_netns(node: NodeLayout, container: str) -> str | None:
    """The network namespace file that containerd made for a pod sandbox (outside the
    node's directory, under /run/netns), or None for an app container."""
    info = json.loads(_ctr(node, "containers", "info", container))
    namespaces = info.get("Spec", {}).get("linux", {}).get("namespaces", [])
    paths = [ns.get("path", "") for ns in namespaces if ns.get("type") == "network"]
    return next((p for p in paths if "/netns/" in p), None)


def _remove_containers(node: NodeLayout) -> list[str]:
    """Kill and delete every container of the node's containerd (the shims outlive
    containerd); returns the pods' network namespace files, which outlive them."""
    containers = _ctr(node, "containers", "ls", "-q").split()
    netns = [path for c in containers if (path := _sandbox_netns(node, c))]
    for container in containers:
        for args in (("tasks", "rm", "-f", container), ("containers", "rm", container)):
            with contextlib.suppress(NodeError):  # no task: never started, or gone
                _ctr(node, *args)
    return netns


def _unmount_under(root: Path) -> None:
    """Unmount what the kubelet and containerd left mounted under root, deepest first."""
    prefix = str(root.resolve()) + "/"
    mounts = [
        line.split()[1].encode().decode("unicode_escape")
        for line in Path("/proc/self/mounts").read_text().splitlines()
    ]
    for target in sorted({m for m in mounts if m.startswith(prefix)}, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def down(cluster: devcluster.ClusterLayout) -> list[str]:
    """Stop the node's processes and clean up what they left; returns what was stopped."""
    node = NodeLayout(cluster)
    state = read_state(node)
    if state is None:
        return []
    stopped = []
    for name in ("kube-proxy", "kubelet"):
        pid = state.pids.get(name)
        if pid is not None and devcluster.process_is(pid, node.binary(name)):
            devcluster.stop_process(pid, node.binary(name))
            stopped.append(name)
    pid = state.pids.get("containerd")
    netns: list[str] = []
    if pid is not None and devcluster.process_is(pid, CONTAINERD):
        with contextlib.suppress(NodeError):  # containerd no longer answers
            netns = _remove_containers(node)
        devcluster.stop_process(pid, CONTAINERD)
        stopped.append("containerd")
    for path in netns:  # its pod's end of the veth pair goes with it
        subprocess.run(["umount", path], capture_output=True, check=False)
        Path(path).unlink(missing_ok=True)
    if cluster.binary("kube-proxy").exists():
        subprocess.run(
            [str(cluster.binary("kube-proxy")), "--cleanup"], capture_output=True, check=False
        )
    _unmount_under(node.root)
    if _link_exists(state.bridge):
        subprocess.run(["ip", "link", "delete", state.bridge], capture_output=True, check=False)
    node.state_file.unlink(missing_ok=True)
    return stopped
