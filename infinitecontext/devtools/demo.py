"""The quickstart (`icx demo up|down|status`, docs/quickstart.md): the whole model
lifecycle on one machine, through the real operator.

`up` brings up, or reuses when already healthy, each piece: the Kubernetes API (the
cluster of $KUBECONFIG when it answers, else the local control plane of
``devcluster.py``), an MLflow server (sqlite, under ``.cache/demo/``), the one-node
SLURM cluster (our Ansible roles), the CRDs and the operator. It then applies
``examples/lifecycle/`` (TrainingRun → Alignment → Evaluation → InferenceService, all
`backend: slurm`, because the local control plane's kwok nodes only fake pods), shows a
live table until the InferenceService is Available, and prints a summary: the MLflow
versions with their lineage, the evaluation, and a completion from the served model.

Every process `up` starts is recorded in ``.cache/demo/processes.json``; `down` deletes
the resources first (so the operator cancels their SLURM jobs), then stops exactly those
processes and the demo's local plane, and says what it leaves running. Re-running `up`
re-applies the same manifests: resources that are already Succeeded keep their
registered models and are not trained again. Each fresh lifecycle (after `down`, or
once its resources are gone) gets job and checkpoint folders of its own,
``.cache/demo/jobs/<key>/``, so a new TrainingRun never resumes an earlier demo's
checkpoints (nor logs into that demo's MLflow run). `up` and `status` look only at the
lifecycle's own resources, whatever else the namespace holds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from infinitecontext.crds.models import CATEGORY
from infinitecontext.devtools import cluster as devcluster

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO / ".cache" / "demo"
API_VERSION = "infinitecontext.dev/v1alpha1"
# Plural resource names, in lifecycle order.
KINDS = ("trainingrun", "alignment", "evaluation", "inferenceservice")
DemoPreset = Literal["tiny", "small"]

# `small` is what examples/lifecycle/ says; `tiny` (CI) shortens every stage.
_TINY_OVERRIDES: dict[str, dict[str, Any]] = {
    "TrainingRun": {
        "data": {"synthetic": {"tasks": ["passkey"], "tokenizerSentences": 2000}},
        "hyperparameters": {
            "steps": 4,
            "tokensPerStep": 512,
            "microBatchTokens": 512,
            "seqLen": 128,
            "warmupSteps": 1,
            "logEvery": 1,
        },
        "checkpoint": {"everySteps": 2},
    },
    "Alignment": {
        "dpo": {"steps": 2, "batchSize": 2},
        "preferenceData": {"pairs": 4, "length": 64, "synthetic": {"tokenizerSentences": 2000}},
    },
    "Evaluation": {"passkey": {"lengths": [64, 128], "depths": [0.0, 1.0], "samples": 1}},
    "InferenceService": {"server": {"maxModelLen": 512}},
}


class DemoError(RuntimeError):
    """A step of the demo failed; the message names the resource or process and why."""


@dataclass(frozen=True)
class DemoConfig:
    preset: DemoPreset = "small"
    namespace: str = "icx-demo"
    state_dir: Path = DEFAULT_STATE_DIR
    examples_dir: Path = REPO / "examples" / "lifecycle"
    mlflow_port: int = 5000
    """Preferred MLflow port; the next free one is taken when it is busy."""
    serve_port: int | None = None
    """Overrides the InferenceService's server.port (the tests pick a free one)."""
    kubeconfig: Path | None = None
    """A cluster to use; None: $KUBECONFIG when it answers, else the local plane."""
    timeout_s: float = 1800.0
    live: bool = True

    @property
    def jobs_root(self) -> Path:
        """One folder per lifecycle (`jobs_dir`) for the SLURM jobs' work and checkpoints."""
        return self.state_dir / "jobs"

    def jobs_dir(self, key: str) -> Path:
        return self.jobs_root / key

    @property
    def processes_file(self) -> Path:
        return self.state_dir / "processes.json"

    @property
    def cluster_layout(self) -> devcluster.ClusterLayout:
        return devcluster.ClusterLayout(state_dir=self.state_dir / "cluster")


@dataclass
class Processes:
    """What `up` started and `down` stops: pids, ports and the kubeconfig in use."""

    kubeconfig: str = ""
    mlflow_pid: int = 0
    mlflow_port: int = 0
    operator_pid: int = 0
    operator_health_port: int = 0
    jobs_key: str = ""
    """The lifecycle's job folder under `jobs_root` (see `jobs_key_for`)."""

    @classmethod
    def load(cls, path: Path) -> Processes:
        if not path.is_file():
            return cls()
        known = {f.name for f in fields(cls)}  # a file from an older demo may hold others
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=1) + "\n")


@dataclass(frozen=True)
class Row:
    """One line of the live table."""

    kind: str
    name: str
    phase: str
    reason: str
    message: str
    progress: str


@dataclass
class Summary:
    tracking_uri: str
    models: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    heatmap: str = ""
    url: str = ""
    question: str = ""
    expected: str = ""
    completion: str = ""
    completion_tokens: int = 0
    kubectl_hint: str = ""

    @property
    def answered_right(self) -> bool:
        """Whether the completion's first word is the pass key (what the grid scores)."""
        words = re.findall(r"[\w-]+", self.completion)
        return bool(words) and words[0] == self.expected.strip()

    def answer_line(self) -> str:
        if self.answered_right:
            return f"✓ the served model answered the pass key {self.expected.strip()}"
        return (
            f"✗ the served model answered {self.completion.strip()[:40]!r}; "
            f"the pass key is {self.expected.strip()}"
        )


# --- pure logic ------------------------------------------------------------------------


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render(
    documents: list[dict[str, Any]],
    config: DemoConfig,
    jobs_dir: Path,
    serve_port: int | None = None,
) -> list[dict[str, Any]]:
    """The lifecycle manifests for this demo: the preset's overrides, the namespace, and
    job directories under `jobs_dir` (paths the SLURM jobs can write)."""
    rendered = []
    for doc in documents:
        kind, name = doc["kind"], doc["metadata"]["name"]
        spec = doc["spec"]
        if config.preset == "tiny":
            spec = deep_merge(spec, _TINY_OVERRIDES.get(kind, {}))
        directories: dict[str, Any] = {"slurm": {"workingDirectory": str(jobs_dir)}}
        if "checkpoint" in spec:
            directories["checkpoint"] = {"path": str(jobs_dir / name)}
        if kind == "InferenceService" and serve_port is not None:
            directories["server"] = {"port": serve_port}
        spec = deep_merge(spec, directories)
        metadata = doc["metadata"] | {"namespace": config.namespace}
        rendered.append(doc | {"metadata": metadata, "spec": spec})
    return rendered


def jobs_key_for(processes: Processes, lifecycle_exists: bool, now: float) -> str:
    """The job folder key of this `up`: the recorded one while the whole lifecycle still
    exists (re-applying it changes no spec, so nothing trains again), else a new one, so
    a new TrainingRun starts from step 0 instead of resuming an earlier demo's
    checkpoints. The time keeps keys apart and says when that lifecycle began."""
    if processes.jobs_key and lifecycle_exists:
        return processes.jobs_key
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))


def kubectl_hint(kubectl: Path, kubeconfig: Path, namespace: str) -> str:
    """How to point kubectl at the demo's cluster, as shell lines to paste."""
    return (
        f"export KUBECONFIG={kubeconfig}\n"
        f"export PATH={kubectl.parent}:$PATH\n"
        f"kubectl get {CATEGORY} -n {namespace}"
    )


def condition(obj: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), {})


def _total_steps(obj: dict[str, Any]) -> int | None:
    spec = obj.get("spec") or {}
    steps = (spec.get("hyperparameters") or spec.get("dpo") or {}).get("steps")
    return int(steps) if steps else None


def row_of(obj: dict[str, Any]) -> Row:
    status = obj.get("status") or {}
    ready = condition(obj)
    progress = status.get("progress") or {}
    if progress.get("step") is not None:
        # The SLURM backend reports step and loss; the total is the spec's.
        total = progress.get("totalSteps") or _total_steps(obj)
        done = f"step {progress['step']}" + (f"/{total}" if total else "")
        loss = progress.get("loss")
        text = done + (f" loss {loss:.3f}" if isinstance(loss, int | float) else "")
    elif obj["kind"] == "InferenceService":
        text = f"{status.get('readyReplicas') or 0}/{obj['spec'].get('replicas', 1)} ready"
    else:
        text = ""
    return Row(
        obj["kind"],
        obj["metadata"]["name"],
        status.get("phase") or "Pending",
        ready.get("reason") or "",
        ready.get("message") or "",
        text,
    )


def is_done(obj: dict[str, Any]) -> bool:
    """Succeeded (a workload) or Available (the InferenceService), with Ready=True."""
    phase = (obj.get("status") or {}).get("phase")
    finished = phase == ("Available" if obj["kind"] == "InferenceService" else "Succeeded")
    return finished and condition(obj).get("status") == "True"


def failure_of(obj: dict[str, Any]) -> str | None:
    """A line naming the resource and its message when it can no longer succeed."""
    phase = (obj.get("status") or {}).get("phase")
    if phase not in ("Failed", "Invalid"):
        return None
    ready = condition(obj)
    return f"{obj['kind']} {obj['metadata']['name']} is {phase}: {ready.get('message', '')}"


def free_port_from(preferred: int) -> int:
    """`preferred` or the next port that nothing listens on."""
    for port in range(preferred, preferred + 100):
        with socket.socket() as s:
            # As servers bind: a port whose last connections linger in TIME_WAIT is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise DemoError(f"no free port in {preferred}..{preferred + 99}")


# --- processes -------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie of ours is not alive; reap it.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        stat = Path(f"/proc/{pid}/stat")
        return stat.is_file() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _stop(pid: int, timeout_s: float = 30) -> bool:
    """SIGTERM the process group `pid` leads (SIGKILL after the timeout)."""
    if not _alive(pid):
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.3)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=os.environ | (env or {}),
            start_new_session=True,  # its own group: `down` stops its children too
            cwd=REPO,
        )
    return process.pid


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.HTTPError):
        return False


def _wait(check: Callable[[], bool], what: str, timeout_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log and log.is_file() else ""
    raise DemoError(
        f"{what} not ready after {timeout_s:.0f} s" + (f"; log:\n{tail}" if tail else "")
    )


# --- bring-up --------------------------------------------------------------------------


def _kubectl_path(config: DemoConfig) -> Path:
    built = config.cluster_layout.kubectl
    found = shutil.which("kubectl")
    if built.exists():
        return built
    if found:
        return Path(found)
    raise DemoError("no kubectl: run `make cluster-build`")


def _answers(kubectl: Path, kubeconfig: Path) -> bool:
    probe = [str(kubectl), f"--kubeconfig={kubeconfig}", "get", "--raw=/readyz"]
    probe.append("--request-timeout=5s")
    return subprocess.run(probe, capture_output=True, check=False, timeout=30).returncode == 0


def ensure_cluster(config: DemoConfig, processes: Processes) -> Path:
    """The kubeconfig of a cluster that answers: the given one, $KUBECONFIG's, the
    demo's local plane when it is running, or a freshly started local plane."""
    kubectl = _kubectl_path(config)
    layout = config.cluster_layout
    env_value = os.environ.get("KUBECONFIG", "")
    for candidate in (config.kubeconfig, Path(env_value) if env_value else None):
        if candidate is not None and candidate.is_file() and _answers(kubectl, candidate):
            processes.kubeconfig = str(candidate)
            return candidate
    if not devcluster.status(layout).ready:
        if not devcluster.binaries_present(layout):
            raise DemoError("no control-plane binaries: run `make cluster-build`")
        devcluster.up(layout, devcluster.ClusterSpec(cpu_nodes=1, gpu_nodes=0))
    processes.kubeconfig = str(layout.admin_kubeconfig)
    return layout.admin_kubeconfig


def ensure_mlflow(config: DemoConfig, processes: Processes) -> str:
    """A tracking server with a sqlite store under the state dir (reused when healthy)."""
    if processes.mlflow_port and _alive(processes.mlflow_pid):
        url = f"http://127.0.0.1:{processes.mlflow_port}"
        if _http_ok(f"{url}/health"):
            return url
        _stop(processes.mlflow_pid)
    root = config.state_dir / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port_from(config.mlflow_port)
    command = [sys.executable, "-m", "mlflow", "server"]
    command += ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(root / "artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = root / "server.log"
    pid = _spawn(command, log, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    processes.mlflow_pid, processes.mlflow_port = pid, port
    processes.save(config.processes_file)
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: _http_ok(f"{url}/health"), "MLflow server", 180, log)
    return url


def ensure_slurm() -> None:
    """The local SLURM cluster, set up by our Ansible roles when it is not healthy."""
    from infinitecontext.slurm_bridge.health import cluster_problems

    if not cluster_problems():
        return
    if os.geteuid() != 0:
        raise DemoError("SLURM is not healthy and setting it up needs root: make slurm-cluster")
    from infinitecontext.devtools.provision import run_playbook

    result = run_playbook("slurm_cluster.yml", "ansible/inventory/local.yml", on_line=None)
    problems = cluster_problems()
    if not result.succeeded or problems:
        raise DemoError(f"SLURM set-up failed: {result.failures or problems}")


def install_crds(kubectl: Path, kubeconfig: Path) -> None:
    from infinitecontext.crds.models import KINDS as CRD_KINDS

    devcluster.kubectl(kubectl, kubeconfig, "apply", "--server-side", "-f", str(REPO / "crds"))
    peering = yaml.safe_load_all((REPO / "deploy" / "peering.yaml").read_text())
    crds = [doc for doc in peering if doc["kind"] == "CustomResourceDefinition"]
    devcluster.kubectl(kubectl, kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(crds))
    names = [f"crd/{kind.crd_name}" for kind in CRD_KINDS]
    names += ["crd/kopfpeerings.kopf.dev", "crd/clusterkopfpeerings.kopf.dev"]
    devcluster.kubectl(kubectl, kubeconfig, "wait", "--for=condition=Established", *names)


def ensure_operator(
    config: DemoConfig, processes: Processes, kubeconfig: Path, tracking_uri: str
) -> None:
    """`icx operator run` in the background (reused when healthy and on the same MLflow)."""
    health = f"http://127.0.0.1:{processes.operator_health_port}/healthz"
    if _alive(processes.operator_pid) and _http_ok(health):
        return
    _stop(processes.operator_pid)
    metrics_port = free_port_from(18080)
    health_port = free_port_from(metrics_port + 1)
    venv_bin = Path(sys.executable).parent
    command = [sys.executable, "-m", "infinitecontext.cli", "operator", "run"]
    command += ["--namespace", config.namespace, "--kubeconfig", str(kubeconfig)]
    command += ["--tracking-uri", tracking_uri]
    command += ["--slurm-job-path", f"{venv_bin}:/usr/sbin:/usr/bin:/sbin:/bin"]
    command += ["--metrics-port", str(metrics_port), "--health-port", str(health_port)]
    log = config.state_dir / "operator.log"
    pid = _spawn(command, log, {"ICX_OPERATOR_POLL_SECONDS": "2"})
    processes.operator_pid, processes.operator_health_port = pid, health_port
    processes.save(config.processes_file)
    url = f"http://127.0.0.1:{health_port}/healthz"
    _wait(lambda: _http_ok(url), "the operator", 120, log)


def lifecycle_documents(config: DemoConfig) -> list[dict[str, Any]]:
    files = sorted(config.examples_dir.glob("*.yaml"))
    return [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]


def lifecycle_keys(config: DemoConfig) -> set[tuple[str, str]]:
    """(kind, name) of the lifecycle's resources: the only ones the demo looks at."""
    return {(d["kind"], d["metadata"]["name"]) for d in lifecycle_documents(config)}


def lifecycle_names(config: DemoConfig) -> list[str]:
    """The lifecycle's resources as kubectl names them (`trainingrun/passkey-train` …)."""
    return [f"{kind.lower()}/{name}" for kind, name in sorted(lifecycle_keys(config))]


def apply_lifecycle(
    config: DemoConfig, kubectl: Path, kubeconfig: Path, processes: Processes
) -> list[dict[str, Any]]:
    """Apply the lifecycle, into this lifecycle's job folder (`jobs_key_for`)."""
    documents = lifecycle_documents(config)
    existing = read_resources(config, kubectl, kubeconfig)
    processes.jobs_key = jobs_key_for(processes, len(existing) == len(documents), time.time())
    processes.save(config.processes_file)
    jobs_dir = config.jobs_dir(processes.jobs_key)
    rendered = render(documents, config, jobs_dir, config.serve_port)
    for folder in (config.jobs_root, jobs_dir):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)  # SLURM jobs may run as another user
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.namespace}}
    manifests = yaml.safe_dump_all([namespace, *rendered])
    devcluster.kubectl(kubectl, kubeconfig, "apply", "-f", "-", stdin=manifests)
    return rendered


# --- watching --------------------------------------------------------------------------


def read_resources(config: DemoConfig, kubectl: Path, kubeconfig: Path) -> list[dict[str, Any]]:
    """The lifecycle's resources as they are now, in lifecycle order (others in the
    namespace are left out: their state is not the demo's)."""
    listed = devcluster.kubectl(
        kubectl, kubeconfig, "get", ",".join(KINDS), "-n", config.namespace, "-o", "json"
    )
    return own_resources(json.loads(listed)["items"], lifecycle_keys(config))


def own_resources(items: list[dict[str, Any]], keys: set[tuple[str, str]]) -> list[dict[str, Any]]:
    order = {kind: i for i, kind in enumerate(KINDS)}
    own = [o for o in items if (o["kind"], o["metadata"]["name"]) in keys]
    return sorted(own, key=lambda o: order.get(o["kind"].lower(), 99))


def render_table(rows: list[Row], elapsed_s: float) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    title = f"InfiniteContext lifecycle ({elapsed_s:.0f} s)"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    # Names and states stay whole in an 80-column terminal; the Ready reason and its
    # message share the last column, folded into what is left.
    for column in ("Kind", "Name", "Phase", "Progress"):
        table.add_column(column, no_wrap=True)
    table.add_column("Ready reason: message", overflow="fold")
    for row in rows:
        style = {"Failed": "red", "Succeeded": "green", "Available": "green"}.get(row.phase)
        ready = Text(row.reason, style="bold")
        if row.message:
            ready.append(f": {row.message[:200]}", style="default")
        table.add_row(row.kind, row.name, row.phase, row.progress, ready, style=style)
    return table


def watch(config: DemoConfig, kubectl: Path, kubeconfig: Path, expected: int) -> list[Any]:
    """Poll until every resource is done (or one failed, or the timeout), with a live table."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    begin = time.monotonic()
    objects: list[dict[str, Any]] = []
    with Live(console=console, refresh_per_second=1, transient=False) as live:
        while True:
            objects = read_resources(config, kubectl, kubeconfig)
            if config.live:
                live.update(render_table([row_of(o) for o in objects], time.monotonic() - begin))
            failures = [f for f in map(failure_of, objects) if f]
            if failures:
                raise DemoError("; ".join(failures) + f" (operator log: {config.state_dir})")
            if len(objects) >= expected and all(map(is_done, objects)):
                return objects
            if time.monotonic() - begin > config.timeout_s:
                waiting = [f"{o['kind']} {o['metadata']['name']}: {row_of(o).message}"
                           for o in objects if not is_done(o)]  # fmt: skip
                raise DemoError(f"timed out after {config.timeout_s:.0f} s: {waiting}")
            time.sleep(2)


# --- summary ---------------------------------------------------------------------------


def model_versions(tracking_uri: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The registered version of each TrainingRun/Alignment with its lineage tags."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions = []
    for obj in objects:
        model = (obj.get("status") or {}).get("model") or {}
        if obj["kind"] in ("TrainingRun", "Alignment") and model.get("name"):
            version = client.get_model_version(model["name"], model["version"])
            tags = {k: v for k, v in version.tags.items() if k.startswith("infinitecontext.")}
            versions.append({"resource": f"{obj['kind']}/{obj['metadata']['name']}",
                             "uri": model.get("uri"), "tags": tags})  # fmt: skip
    return versions


def ask_passkey(url: str, model: str, seed: int | None = None) -> tuple[str, str, str, int]:
    """Ask the served model for the pass key of a fresh haystack: (question, expected,
    completion, completion tokens). Lengths here count words, which keeps this
    tokenizer-free; the haystack stays well under the server's max-model-len."""
    from infinitecontext.trainer.data import TaskSpec, make_sample

    seed = int(time.time()) if seed is None else seed
    sample = make_sample(TaskSpec(length=60, depth=0.5), lambda t: [0] * len(t.split()), seed)
    body = {"model": model, "prompt": sample.prompt, "max_tokens": 8, "temperature": 0}
    request = urllib.request.Request(
        f"{url}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    text = str(answer["choices"][0]["text"])
    return sample.prompt, sample.answer, text, int(answer["usage"]["completion_tokens"])


def summarize(tracking_uri: str, objects: list[dict[str, Any]]) -> Summary:
    summary = Summary(tracking_uri, models=model_versions(tracking_uri, objects))
    for obj in objects:
        status = obj.get("status") or {}
        if obj["kind"] == "Evaluation":
            summary.evaluation = status.get("results") or {}
            checkpoint = obj["spec"].get("checkpoint", {}).get("path", "")
            summary.heatmap = str(Path(checkpoint) / "eval" / "passkey_yarn1.png")
        if obj["kind"] == "InferenceService":
            summary.url = status.get("url") or ""
            question, expected, text, tokens = ask_passkey(summary.url, obj["metadata"]["name"])
            summary.question, summary.expected = question, expected
            summary.completion, summary.completion_tokens = text, tokens
    return summary


def accuracy_text(value: Any) -> str:
    """An accuracy as people read it: 0.17, not 0.16666666666666666."""
    return f"{value:.2f}" if isinstance(value, int | float) else "not measured"


def _console() -> Any:
    """A console whose lines the terminal wraps (soft wrap), so that a path, a URI or a
    command is never broken by a newline inside it, whatever width rich assumes."""
    from rich.console import Console

    # No markup: the texts shown (a served completion) may hold brackets.
    return Console(soft_wrap=True, markup=False, highlight=False)


def print_kubectl_hint(hint: str) -> None:
    console = _console()
    console.rule("kubectl")
    console.print("To look at the resources with kubectl (e.g. in another terminal):")
    console.print(hint)


def print_summary(summary: Summary) -> None:
    console = _console()
    console.rule("Model versions (MLflow registry)")
    for model in summary.models:
        console.print(f"{model['resource']}: {model['uri']}")
        for key, value in sorted(model["tags"].items()):
            console.print(f"    {key} = {value}")
    console.rule("Evaluation")
    console.print(f"passkey accuracy: {accuracy_text(summary.evaluation.get('passkeyAccuracy'))}")
    for entry in summary.evaluation.get("perLength", []):
        console.print(f"    length {entry['length']}: {accuracy_text(entry['accuracy'])}")
    console.print(f"heatmap: {summary.heatmap} (also in the MLflow run's artifacts, eval/)")
    console.rule(f"Served model at {summary.url}")
    console.print(f"question (end): …{summary.question[-160:]}")
    console.print(f"expected:{summary.expected}   completion: {summary.completion!r}")
    console.print(summary.answer_line())
    console.rule("MLflow UI")
    port = summary.tracking_uri.rsplit(":", 1)[-1]
    console.print(
        f"open {summary.tracking_uri} in a browser (remote: ssh -L {port}:127.0.0.1:{port} …)"
    )
    if summary.kubectl_hint:
        print_kubectl_hint(summary.kubectl_hint)


# --- entry points ----------------------------------------------------------------------


def up(config: DemoConfig) -> Summary:
    """Bring everything up, run the lifecycle and return (and print) the summary."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    processes = Processes.load(config.processes_file)
    kubeconfig = ensure_cluster(config, processes)
    processes.save(config.processes_file)
    kubectl = _kubectl_path(config)
    tracking_uri = ensure_mlflow(config, processes)
    ensure_slurm()
    install_crds(kubectl, kubeconfig)
    ensure_operator(config, processes, kubeconfig, tracking_uri)
    rendered = apply_lifecycle(config, kubectl, kubeconfig, processes)
    hint = kubectl_hint(kubectl, kubeconfig, config.namespace)
    if config.live:
        print_kubectl_hint(hint)
    objects = watch(config, kubectl, kubeconfig, len(rendered))
    summary = summarize(tracking_uri, objects)
    summary.kubectl_hint = hint
    if config.live:
        print_summary(summary)
    return summary


@dataclass(frozen=True)
class DownReport:
    stopped: list[str]
    left_running: list[str]
    """What the demo used but did not start, and so leaves alone."""


def left_running(processes: Processes, layout: devcluster.ClusterLayout) -> list[str]:
    """What `down` leaves running, to be said: a cluster that is not the demo's plane
    (`up` used $KUBECONFIG's or the given one)."""
    used = Path(processes.kubeconfig) if processes.kubeconfig else None
    if used is None or used.resolve() == layout.admin_kubeconfig.resolve():
        return []
    return [f"the Kubernetes cluster of {used} (the demo did not start it)"]


def down(config: DemoConfig) -> DownReport:
    """Delete the demo's resources (their SLURM jobs are cancelled by the operator), then
    stop the operator, MLflow and the demo's local plane (whenever it runs, however `up`
    found it); returns what was stopped and what was left running."""
    processes = Processes.load(config.processes_file)
    stopped = []
    kubeconfig = Path(processes.kubeconfig) if processes.kubeconfig else None
    if kubeconfig is not None and kubeconfig.is_file():
        kubectl = _kubectl_path(config)
        if _answers(kubectl, kubeconfig) and _alive(processes.operator_pid):
            # The lifecycle's own resources only: others in the namespace are not ours.
            names = lifecycle_names(config)
            delete = ["delete", *names, "-n", config.namespace, "--ignore-not-found"]
            devcluster.kubectl(kubectl, kubeconfig, *delete, "--timeout=180s")
            stopped.append(f"the lifecycle's resources in namespace {config.namespace}")
    for name, pid in (("operator", processes.operator_pid), ("mlflow", processes.mlflow_pid)):
        if _stop(pid):
            stopped.append(name)
    stopped += devcluster.down(config.cluster_layout)
    config.processes_file.unlink(missing_ok=True)
    return DownReport(stopped, left_running(processes, config.cluster_layout))


def status(config: DemoConfig) -> list[Row]:
    """The table's rows now (empty when the demo's cluster is not up)."""
    processes = Processes.load(config.processes_file)
    if not processes.kubeconfig or not Path(processes.kubeconfig).is_file():
        return []
    kubectl = _kubectl_path(config)
    kubeconfig = Path(processes.kubeconfig)
    if not _answers(kubectl, kubeconfig):
        return []
    return [row_of(o) for o in read_resources(config, kubectl, kubeconfig)]
