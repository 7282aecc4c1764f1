"""The SLURM clusters for tests.

- The local one-node cluster (SLURM 22.05, REST API v0.0.38): set up by our Ansible
  roles when it is not healthy (`make slurm-cluster` normally did that already), plus
  helpers to stop and start its daemons the way the roles start them.
- A two-node SLURM 24.11 cluster (REST API v0.0.40-v0.0.42) in three containers
  (tests/slurm_container/, built by scripts/build-slurm-image.sh), started once per
  session next to the host's cluster (ports 6917-6920) and removed after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from plugins.prerequisites import missing

from infinitecontext.devtools.waiting import wait_for
from infinitecontext.slurm_bridge.auth import ScontrolToken, TokenFile
from infinitecontext.slurm_bridge.commands import CommandClient
from infinitecontext.slurm_bridge.errors import SlurmUnavailable
from infinitecontext.slurm_bridge.health import cluster_problems
from infinitecontext.slurm_bridge.models import JobStatus
from infinitecontext.slurm_bridge.rest import RestClient

REPO = Path(__file__).resolve().parents[2]
SLURM24_URL = "http://127.0.0.1:6920"
_SLURM24_CONTROLLER = "icx-test-slurm24-controller"
# Container name -> entrypoint.sh arguments (tests/slurm_container/).
_SLURM24_CONTAINERS = {
    _SLURM24_CONTROLLER: ["controller"],
    "icx-test-slurm24-n1": ["node", "n1"],
    "icx-test-slurm24-n2": ["node", "n2"],
}

# How ansible/roles/slurm starts each daemon on hosts without systemd.
_DAEMONS = {
    "slurmctld": ["--pidfile", "/run/slurmctld.pid", "--exec", "/usr/sbin/slurmctld"],
    "slurmrestd": [
        "--pidfile", "/run/slurmrestd.pid", "--exec", "/usr/sbin/slurmrestd",
        "--chuid", "slurmrestd", "--background", "--make-pidfile",
        "--output", "/var/log/slurm/slurmrestd.log",
        "--startas", "/usr/bin/env", "--", "SLURM_JWT=daemon", "/usr/sbin/slurmrestd",
        "-a", "rest_auth/jwt", "-s", "openapi/v0.0.38", "127.0.0.1:6820",
    ],
}  # fmt: skip


def _uses_systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


def stop_daemon(name: str) -> None:
    if _uses_systemd():
        subprocess.run(["systemctl", "stop", name], check=True)
        return
    pid_and_exec = _DAEMONS[name][:4]
    subprocess.run(
        ["start-stop-daemon", "--stop", "--oknodo", "--retry", "15", *pid_and_exec], check=True
    )


def start_daemon(name: str) -> None:
    if _uses_systemd():
        subprocess.run(["systemctl", "start", name], check=True)
        return
    subprocess.run(["start-stop-daemon", "--start", *_DAEMONS[name]], check=True)


def wait_for_job(
    what: str,
    read: Callable[[], JobStatus],
    done: Callable[[JobStatus], bool],
    timeout_s: float = 60,
) -> JobStatus:
    """Poll `read` until `done`, riding out SlurmUnavailable (a restarting daemon)."""

    def status_when_done() -> JobStatus | None:
        status = read()
        return status if done(status) else None

    return wait_for(what, status_when_done, timeout_s, retry_on=(SlurmUnavailable,))


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A healthy local cluster, provisioned through the roles if needed."""
    if not cluster_problems():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        missing("no local SLURM cluster, and setting one up needs root on Debian")
    from infinitecontext.devtools.provision import run_playbook

    result = run_playbook("slurm_cluster.yml", "ansible/inventory/local.yml", on_line=None)
    assert result.succeeded, result.failures
    problems = cluster_problems()
    assert not problems, problems


@pytest.fixture(scope="session")
def slurm_rest(slurm_cluster: None) -> Iterator[RestClient]:
    client = RestClient("http://127.0.0.1:6820", ScontrolToken("root"))
    yield client
    client.close()


@pytest.fixture(scope="session")
def slurm_commands(slurm_cluster: None) -> CommandClient:
    return CommandClient()


def _docker(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _slurm24_image() -> str:
    """The built image's name; `missing` (a failure under CI=true) when it cannot be built."""
    for command in ("docker", "dockerd", "debootstrap"):
        if shutil.which(command) is None:
            missing(f"{command} is not installed (make images-prereqs installs it)")
    if _docker("info").returncode != 0:
        if os.geteuid() != 0:
            missing("dockerd is not running, and starting it needs root")
        subprocess.run([str(REPO / "scripts" / "dockerd.sh"), "start"], cwd=REPO, check=True)
    build = subprocess.run(
        [str(REPO / "scripts" / "build-slurm-image.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if build.returncode != 0:
        missing(f"the Slurm 24.11 image did not build: {build.stderr[-3000:]}")
    return build.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def slurm24_rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestClient]:
    """A REST client of the Slurm 24.11 cluster, started for the session: a controller
    container (slurmctld, slurmrestd) and one container per node (n1, n2), sharing the
    host's network (ports 6917-6920) and /tmp, where jobs write what the tests read.
    """
    image = _slurm24_image()
    keys = tmp_path_factory.mktemp("slurm24-keys")
    (keys / "munge.key").write_bytes(os.urandom(1024))
    (keys / "jwt_hs256.key").write_bytes(os.urandom(32))
    client: RestClient | None = None
    try:
        for container, role in _SLURM24_CONTAINERS.items():
            _docker("rm", "--force", container)
            started = _docker(
                "run", "--detach", "--init", "--name", container, "--network", "host",
                "--volume", "/tmp:/tmp", "--volume", f"{keys}:/keys:ro", image, *role,
            )  # fmt: skip
            assert started.returncode == 0, started.stderr
        token_file = keys.parent / "slurm24-token"
        token_file.write_text(wait_for("scontrol token in the controller", _slurm24_token, 60))
        client = RestClient(SLURM24_URL, TokenFile("root", token_file))
        wait_for(
            "slurmrestd 24.11 to answer with slurmctld UP",
            client.ping,
            timeout_s=60,
            retry_on=(SlurmUnavailable,),
            on_timeout=_slurm24_logs,
        )
        wait_for("both 24.11 nodes to be idle", _slurm24_nodes_idle, 60, on_timeout=_slurm24_logs)
        yield client
    finally:
        if client is not None:
            client.close()
        for container in _SLURM24_CONTAINERS:
            _docker("rm", "--force", container)


def _slurm24_token() -> str | None:
    """A JWT for root, minted by `scontrol token` in the controller (it holds the key);
    None while slurmctld is starting."""
    minted = _slurm24_exec("scontrol", "token", "username=root", "lifespan=86400")
    if minted.returncode != 0 or "SLURM_JWT=" not in minted.stdout:
        return None
    return minted.stdout.strip().split("SLURM_JWT=", 1)[1]


def _slurm24_nodes_idle() -> bool:
    states = _slurm24_exec("sinfo", "--Node", "--noheader", "--format=%N %t").stdout
    return sorted(line.strip() for line in states.splitlines()) == ["n1 idle", "n2 idle"]


def _slurm24_exec(*argv: str) -> subprocess.CompletedProcess[str]:
    return _docker("exec", _SLURM24_CONTROLLER, *argv)


def _slurm24_logs() -> str:
    return "\n".join(
        f"{container}: {_docker('logs', container).stderr[-1500:]}"
        for container in _SLURM24_CONTAINERS
    )


# Each bridge backend: REST on the host's SLURM 22.05 (v0.0.38), REST on the 24.11
# cluster (v0.0.42), and the commands (the host's only: the containers have their own).
_CLIENT_FIXTURES = {"rest": "slurm_rest", "rest-24.11": "slurm24_rest", "cli": "slurm_commands"}


@pytest.fixture(params=list(_CLIENT_FIXTURES))
def slurm_client(request: pytest.FixtureRequest) -> RestClient | CommandClient:
    """Each bridge backend in turn (`-k "not 24.11"` leaves out the containers)."""
    client: RestClient | CommandClient = request.getfixturevalue(_CLIENT_FIXTURES[request.param])
    return client


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """A folder the jobs (running as root on this node) write their output to."""
    tmp_path.chmod(0o755)
    return tmp_path
