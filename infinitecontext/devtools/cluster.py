"""A real Kubernetes control plane on loopback, for development and tests.

``tests/cluster/build.sh`` builds etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl and kwok from the upstream Go modules; this module runs them:

1. ``write_pki`` makes a CA, serving and client certificates and the service-account
   key pair (``devcluster_pki.py``); one kubeconfig per component names its identity.
2. etcd (TLS, client certificates) and kube-apiserver (``--authorization-mode=Node,RBAC``)
   start on 127.0.0.1 at free ports; then the controller manager, the scheduler and kwok,
   which plays the kubelets of the simulated nodes through its Stage rules (pods become
   Running/Ready, Job pods Succeeded).
3. Simulated nodes are registered, some with ``nvidia.com/gpu`` capacity, and ``up``
   returns once they are Ready and the ``default`` ServiceAccount exists.

State lives in one directory (``.cache/cluster/run`` or ``$ICX_CLUSTER_DIR``):
``pki/``, ``logs/<component>.log``, ``etcd-data/``, the kubeconfigs and ``cluster.json``
(ports and process ids), which ``down`` and ``status`` read. Only the Python standard
library, PyYAML and ``cryptography`` are imported, so the operator side stays light.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infinitecontext.devtools.pki import write_pki
from infinitecontext.devtools.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN_DIR = REPO_ROOT / ".cache" / "cluster" / "bin"
DEFAULT_STATE_DIR = REPO_ROOT / ".cache" / "cluster" / "run"
BUILD_SCRIPT = REPO_ROOT / "tests" / "cluster" / "build.sh"
# Started in this order, stopped in the reverse one.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
BINARIES = (*COMPONENTS, "kubectl")
SERVICE_CIDR = "10.96.0.0/16"
# kwok manages only nodes that carry this annotation, as in its own documentation.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"


class ClusterError(RuntimeError):
    """The plane could not be built, started or reached; the message says which log to read."""


@dataclass(frozen=True)
class ClusterSpec:
    """What `up` starts: the simulated nodes and how long to wait for them."""

    cpu_nodes: int = 2
    gpu_nodes: int = 2
    gpus_per_node: int = 8
    node_cpu: str = "32"
    node_memory: str = "256Gi"
    start_timeout_s: float = 90.0
    # Pods of a real node (realnode.py) reach the API server through the `kubernetes`
    # Service, whose endpoint may not be loopback: serve on the host's address too.
    serve_pods: bool = False


@dataclass(frozen=True)
class ClusterLayout:
    """Where the binaries are and where one cluster keeps its state."""

    state_dir: Path = DEFAULT_STATE_DIR
    bin_dir: Path = DEFAULT_BIN_DIR

    @classmethod
    def from_env(cls) -> ClusterLayout:
        state = os.environ.get("ICX_CLUSTER_DIR")
        return cls(state_dir=Path(state).resolve()) if state else cls()

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def kubeconfig(self, component: str) -> Path:
        return self.state_dir / f"{component}.kubeconfig"


@dataclass
class ClusterState:
    """What `up` recorded in cluster.json: the ports and the process of each component."""

    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    ready_after_s: float = 0.0
    advertise_address: str = "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int
    running: bool
    rss_mib: float


@dataclass(frozen=True)
class ClusterStatus:
    server: str | None
    ready: bool
    components: tuple[ComponentStatus, ...]
    admin_kubeconfig: Path

    @property
    def rss_mib(self) -> float:
        return sum(c.rss_mib for c in self.components)


# --- building -------------------------------------------------------------------------


def binaries_present(layout: ClusterLayout) -> bool:
    return all(os.access(layout.binary(name), os.X_OK) for name in BINARIES)


def build(layout: ClusterLayout) -> None:
    """Run tests/cluster/build.sh (a no-op when the binaries are current)."""
    if shutil.which("go") is None:
        raise ClusterError("Go is not installed: `make cluster-build` installs it (Go >= 1.26)")
    subprocess.run([str(BUILD_SCRIPT), str(layout.bin_dir)], check=True)


# --- pure builders: kubeconfigs, command lines, node manifests --------------------------


def _b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_dict(
    cluster: dict[str, Any], user: dict[str, str], name: str, namespace: str = "default"
) -> dict[str, Any]:
    """A one-context kubeconfig: `cluster` holds server and certificate-authority-data,
    `user` client-certificate-data/client-key-data or a token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "icx-dev", "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": "icx-dev", "user": name, "namespace": namespace}}
        ],
        "current-context": name,
    }


def write_component_kubeconfig(layout: ClusterLayout, server: str, stem: str) -> Path:
    """Write <stem>.kubeconfig, authenticating with the client certificate pki/<stem>.crt."""
    user = {
        "client-certificate-data": _b64_file(layout.pki / f"{stem}.crt"),
        "client-key-data": _b64_file(layout.pki / f"{stem}.key"),
    }
    path = layout.kubeconfig(stem)
    cluster = {"server": server, "certificate-authority-data": _b64_file(layout.pki / "ca.crt")}
    config = kubeconfig_dict(cluster, user, stem)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def apiserver_address_flags(advertise_address: str) -> list[str]:
    """Where the API server listens: loopback only, unless pods of a real node must reach
    it; then on every address, with the host's as the `kubernetes` Service's endpoint."""
    if advertise_address.startswith("127."):
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The `kubernetes` Service's Endpoints may not hold a loopback address, and no
            # pod dials it without a real node: keep the reconciler from writing one.
            "--endpoint-reconciler-type=none",
        ]
    return ["--bind-address=0.0.0.0", f"--advertise-address={advertise_address}"]


def host_address() -> str:
    """This machine's IPv4 address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # TEST-NET-3: never dialled
        except OSError as error:
            raise ClusterError(f"no IPv4 default route for the host's address: {error}") from error
        return str(probe.getsockname()[0])


def component_commands(layout: ClusterLayout, state: ClusterState) -> dict[str, list[str]]:
    """The command line of each component; every listener binds 127.0.0.1 (the API
    server more widely when it serves a real node's pods)."""
    pki, etcd_url = layout.pki, f"https://127.0.0.1:{state.etcd_port}"
    peer_url = f"http://127.0.0.1:{state.etcd_peer_port}"
    return {
        "etcd": [
            str(layout.binary("etcd")),
            "--name=icx",
            f"--data-dir={layout.state_dir / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=icx={peer_url}",
            f"--cert-file={pki / 'etcd-server.crt'}",
            f"--key-file={pki / 'etcd-server.key'}",
            f"--trusted-ca-file={pki / 'ca.crt'}",
            "--client-cert-auth",
            # A throwaway development store: skipping fsync saves seconds per start.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(layout.binary("kube-apiserver")),
            *apiserver_address_flags(state.advertise_address),
            f"--secure-port={state.apiserver_port}",
            f"--etcd-servers={etcd_url}",
            f"--etcd-cafile={pki / 'ca.crt'}",
            f"--etcd-certfile={pki / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={pki / 'apiserver-etcd-client.key'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # How it authenticates to a real node's kubelet (logs, exec).
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            # A node's name does not resolve here; its address does.
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
            "--profiling=false",
        ],
        "kube-controller-manager": [
            str(layout.binary("kube-controller-manager")),
            f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            # Its default lies under /usr/libexec, which it would create.
            f"--flex-volume-plugin-dir={layout.state_dir / 'flexvolume'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ],
        "kube-scheduler": [
            str(layout.binary("kube-scheduler")),
            f"--kubeconfig={layout.kubeconfig('kube-scheduler')}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--profiling=false",
        ],
        "kwok": [
            str(layout.binary("kwok")),
            f"--kubeconfig={layout.kubeconfig('kwok')}",
            f"--config={layout.state_dir / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector={}={}".format(*KWOK_NODE_ANNOTATION),
            # The simulated kubelets "live" on loopback, so nothing ever dials elsewhere.
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
        ],
    }


def kwok_config(stage_files: list[Path]) -> str:
    """kwok's configuration: upstream's stage rules, copied next to the binaries at build.

    node-initialize and node-heartbeat-with-lease keep nodes Ready; pod-ready makes pods
    Running/Ready; pod-complete moves pods owned by a Job to Succeeded; pod-delete lets
    deleted pods go.
    """
    if not stage_files:
        raise ClusterError("no kwok stages next to the binaries: rerun `make cluster-build`")
    return "\n---\n".join(path.read_text().strip() for path in sorted(stage_files)) + "\n"


def node_manifest(name: str, spec: ClusterSpec, gpus: int) -> dict[str, Any]:
    """A simulated node; kwok keeps its status, and the capacity given here stays."""
    capacity = {"cpu": spec.node_cpu, "memory": spec.node_memory, "pods": "110"}
    labels = {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
        labels["nvidia.com/gpu.present"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": dict([KWOK_NODE_ANNOTATION])},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def node_manifests(spec: ClusterSpec) -> list[dict[str, Any]]:
    cpu = [node_manifest(f"icx-cpu-{i}", spec, 0) for i in range(spec.cpu_nodes)]
    gpu = [node_manifest(f"icx-gpu-{i}", spec, spec.gpus_per_node) for i in range(spec.gpu_nodes)]
    return cpu + gpu


# --- processes ------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 (held together while chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def start_process(layout: ClusterLayout, name: str, command: list[str]) -> int:
    log = (layout.logs / f"{name}.log").open("wb")  # each `up` starts its logs afresh
    # A session of its own: the plane outlives `icx dev cluster up`, and Ctrl-C in that
    # terminal does not reach it.
    process = subprocess.Popen(
        command,
        cwd=layout.state_dir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return process.pid


def process_is(pid: int, binary: Path) -> bool:
    """True while `pid` runs `binary` (so a recycled pid is never signalled)."""
    try:
        # A rebuild while it runs makes the link read "<path> (deleted)".
        exe = os.readlink(f"/proc/{pid}/exe")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return exe.startswith(str(binary.resolve())) and state != "Z"


def reap(pid: int) -> str:
    """Wait for `pid` if it is our child and has ended (when `up` ran in this process, as in
    tests); returns how it ended, or "" while it runs or when it is not our child."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return ""
    if reaped == 0:
        return ""
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def stop_process(pid: int, binary: Path, timeout_s: float = 15.0) -> None:
    if not process_is(pid, binary):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(pid)
        if not process_is(pid, binary):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    reap(pid)


# --- talking to the API server ----------------------------------------------------------


def _admin_ssl_context(layout: ClusterLayout) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    context.load_cert_chain(layout.pki / "admin.crt", layout.pki / "admin.key")
    return context


def api_get(
    layout: ClusterLayout, state: ClusterState, path: str, timeout_s: float = 2.0
) -> tuple[int, bytes]:
    """GET `path` as the admin; returns (status, body), status 0 when nothing answered."""
    request = urllib.request.Request(state.server + path)
    try:
        with urllib.request.urlopen(
            request, timeout=timeout_s, context=_admin_ssl_context(layout)
        ) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def kubectl(kubectl_path: Path, kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    """Run kubectl; raises ClusterError with its stderr on failure."""
    done = subprocess.run(
        [str(kubectl_path), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _nodes_ready(layout: ClusterLayout, state: ClusterState, count: int) -> bool:
    code, body = api_get(layout, state, "/api/v1/nodes")
    if code != 200:
        return False
    ready = [
        node
        for node in json.loads(body)["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node["status"].get("conditions", [])
        )
    ]
    return len(ready) >= count


# --- up / down / status -----------------------------------------------------------------


def read_state(layout: ClusterLayout) -> ClusterState | None:
    if not layout.state_file.exists():
        return None
    return ClusterState(**json.loads(layout.state_file.read_text()))


def _write_state(layout: ClusterLayout, state: ClusterState) -> None:
    layout.state_file.write_text(json.dumps(asdict(state), indent=2))


def _prepare(layout: ClusterLayout, state: ClusterState) -> None:
    """Certificates, kubeconfigs and kwok's configuration; etcd starts empty each time."""
    shutil.rmtree(layout.state_dir / "etcd-data", ignore_errors=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    write_pki(layout.pki)
    for stem in ("admin", "kube-controller-manager", "kube-scheduler", "kwok"):
        write_component_kubeconfig(layout, state.server, stem)
    stages = list((layout.bin_dir / "stages").glob("*.yaml"))
    (layout.state_dir / "kwok.yaml").write_text(kwok_config(stages))


def _check_alive(layout: ClusterLayout, state: ClusterState) -> None:
    for name, pid in state.pids.items():
        ended = reap(pid)
        if ended or not process_is(pid, layout.binary(name)):
            log = layout.logs / f"{name}.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise ClusterError(
                f"{name} (pid {pid}) ended ({ended or 'not our child'}); {log}:\n{tail}"
            )


@dataclass(frozen=True)
class _Waiter:
    """Waits for conditions against one start-up deadline, failing fast (with the log's
    tail) when a component has exited meanwhile."""

    layout: ClusterLayout
    state: ClusterState
    deadline: float

    def until(self, check: Callable[[], bool], what: str) -> None:
        def alive_and_checked() -> bool:
            _check_alive(self.layout, self.state)
            return check()

        timeout_s = max(self.deadline - time.monotonic(), 0.1)
        wait_for(what, alive_and_checked, timeout_s, every_s=0.2)


def _start_components(layout: ClusterLayout, state: ClusterState, names: tuple[str, ...]) -> None:
    commands = component_commands(layout, state)
    for name in names:
        state.pids[name] = start_process(layout, name, commands[name])
    _write_state(layout, state)


def _register_nodes(layout: ClusterLayout, spec: ClusterSpec) -> int:
    nodes = {"apiVersion": "v1", "kind": "List", "items": node_manifests(spec)}
    if not nodes["items"]:  # a plane for a real node alone (kubectl refuses an empty List)
        return 0
    kubectl(layout.kubectl, layout.admin_kubeconfig, "apply", "-f", "-", stdin=json.dumps(nodes))
    return len(nodes["items"])


DEFAULT_SERVICE_ACCOUNT = "/api/v1/namespaces/default/serviceaccounts/default"


def up(layout: ClusterLayout, spec: ClusterSpec | None = None) -> ClusterState:
    """Start the plane (stopping a previous one in the same state dir) and wait until it
    has Ready nodes and a `default` ServiceAccount; returns what cluster.json records."""
    spec = spec or ClusterSpec()
    if not binaries_present(layout):
        raise ClusterError(f"no binaries in {layout.bin_dir}: run `make cluster-build`")
    down(layout)
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    etcd_port, etcd_peer_port, apiserver_port = free_ports(3)
    state = ClusterState(etcd_port, etcd_peer_port, apiserver_port, started_at=time.time())
    if spec.serve_pods:
        state.advertise_address = host_address()
    _prepare(layout, state)
    begin = time.monotonic()
    waiter = _Waiter(layout, state, deadline=begin + spec.start_timeout_s)

    def answers(path: str) -> Callable[[], bool]:
        return lambda: api_get(layout, state, path)[0] == 200

    try:
        # The controllers and kwok start once the API answers: they need it at start-up.
        _start_components(layout, state, ("etcd", "kube-apiserver"))
        waiter.until(answers("/readyz"), "kube-apiserver /readyz")
        _start_components(layout, state, ("kube-controller-manager", "kube-scheduler", "kwok"))
        count = _register_nodes(layout, spec)
        waiter.until(lambda: _nodes_ready(layout, state, count), "kwok to make the nodes Ready")
        waiter.until(answers(DEFAULT_SERVICE_ACCOUNT), "the default ServiceAccount")
    except BaseException:
        down(layout)
        raise
    state.ready_after_s = round(time.monotonic() - begin, 2)
    _write_state(layout, state)
    return state


def down(layout: ClusterLayout) -> list[str]:
    """Stop a real node if one runs, then the components that cluster.json lists (newest
    first); returns their names."""
    # Imported here: realnode builds on this module.
    from infinitecontext.devtools import realnode

    stopped = realnode.down(layout)
    state = read_state(layout)
    if state is None:
        return stopped
    for name in reversed(COMPONENTS):
        pid = state.pids.get(name)
        if pid is not None and process_is(pid, layout.binary(name)):
            stop_process(pid, layout.binary(name))
            stopped.append(name)
    layout.state_file.unlink(missing_ok=True)
    return stopped


def status(layout: ClusterLayout) -> ClusterStatus:
    state = read_state(layout)
    if state is None:
        return ClusterStatus(None, False, (), layout.admin_kubeconfig)
    components = []
    for name in COMPONENTS:
        pid = state.pids.get(name, 0)
        running = pid > 0 and process_is(pid, layout.binary(name))
        components.append(ComponentStatus(name, pid, running, _rss_mib(pid) if running else 0.0))
    ready = api_get(layout, state, "/readyz")[0] == 200
    return ClusterStatus(state.server, ready, tuple(components), layout.admin_kubeconfig)


@contextlib.contextmanager
def running(layout: ClusterLayout, spec: ClusterSpec | None = None) -> Iterator[ClusterState]:
    """`up` for the duration of a with-block, then `down`."""
    state = up(layout, spec)
    try:
        yield state
    finally:
        down(layout)


# --- ServiceAccount kubeconfigs --------------------------------------------------------


def service_account_kubeconfig(
    kubectl_path: Path,
    admin_kubeconfig: Path,
    namespace: str,
    name: str,
    out: Path,
    duration: str = "24h",
) -> Path:
    """Create ServiceAccount `namespace/name` if missing and write a kubeconfig at `out`
    that authenticates with a bound token for it, so a test acts with exactly the RBAC
    granted to it. Works against any cluster the admin kubeconfig reaches."""

    def run(*args: str, stdin: str | None = None) -> str:
        return kubectl(kubectl_path, admin_kubeconfig, *args, stdin=stdin)

    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }
    run("apply", "-f", "-", stdin=json.dumps(account))
    token = run("create", "token", name, "-n", namespace, f"--duration={duration}").strip()
    # The admin's cluster entry as it stands (server, CA data or TLS options), files inlined.
    view = json.loads(run("config", "view", "--raw", "--minify", "--flatten", "-o", "json"))
    cluster = view["clusters"][0]["cluster"]
    config = kubeconfig_dict(cluster, {"token": token}, f"{namespace}-{name}", namespace)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config))
    out.chmod(0o600)
    return out
