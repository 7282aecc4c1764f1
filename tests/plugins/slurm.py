"""The local one-node SLURM cluster for tests: set up by our Ansible roles when it is
not healthy (`make slurm-cluster` normally did that already), plus helpers to stop
and start its daemons the way the roles start them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from plugins.prerequisites import missing

from infinitecontext.devtools.waiting import wait_for
from infinitecontext.slurm_bridge.auth import ScontrolToken
from infinitecontext.slurm_bridge.commands import CommandClient
from infinitecontext.slurm_bridge.errors import SlurmUnavailable
from infinitecontext.slurm_bridge.health import cluster_problems
from infinitecontext.slurm_bridge.models import JobStatus
from infinitecontext.slurm_bridge.rest import RestClient

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


@pytest.fixture(params=["rest", "cli"])
def slurm_client(
    request: pytest.FixtureRequest, slurm_rest: RestClient, slurm_commands: CommandClient
) -> RestClient | CommandClient:
    """Each bridge backend in turn."""
    return slurm_rest if request.param == "rest" else slurm_commands


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """A folder the jobs (running as root on this node) write their output to."""
    tmp_path.chmod(0o755)
    return tmp_path
