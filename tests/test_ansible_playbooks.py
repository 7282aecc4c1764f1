"""Our Ansible content: syntax, ansible-lint (production profile), the munge + slurm
roles applied for real to this machine (a second run changes nothing), the GPU roles
in check mode, and `icx provision` naming failed hosts and tasks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infinitecontext.devtools.provision import ANSIBLE_DIR, run_playbook
from infinitecontext.slurm_bridge.health import cluster_problems

PLAYBOOKS = ["setup_gpu_node.yml", "slurm_cluster.yml", "k3s_cluster.yml", "site.yml"]
LOCAL_INVENTORY = str(ANSIBLE_DIR / "inventory" / "local.yml")
VENV_BIN = Path(sys.executable).parent


def _has_nvidia_gpu() -> bool:
    vendors = Path("/sys/bus/pci/devices").glob("*/vendor")
    return any(path.read_text().strip() == "0x10de" for path in vendors)


@pytest.mark.parametrize("inventory", ["local.yml", "local.ini", "example.yml"])
def test_playbook_syntax(inventory):
    # One run checks every playbook: starting ansible-playbook takes seconds on 2 cores.
    command = [VENV_BIN / "ansible-playbook", "--syntax-check", "-i", f"inventory/{inventory}"]
    done = subprocess.run(
        [*command, *PLAYBOOKS], cwd=ANSIBLE_DIR, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_ansible_lint_production_profile_passes():
    done = subprocess.run(
        [VENV_BIN / "ansible-lint", "--profile=production", "--nocolor"],
        cwd=ANSIBLE_DIR, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_slurm_roles_converge_and_a_second_run_changes_nothing(slurm_cluster):
    first = run_playbook("slurm_cluster.yml", LOCAL_INVENTORY, on_line=None)
    assert first.succeeded, first.failures
    if first.changed:  # the cluster was not converged yet: this was the first run
        second = run_playbook("slurm_cluster.yml", LOCAL_INVENTORY, on_line=None)
        assert second.succeeded, second.failures
        first = second
    assert [(h.host, h.changed, h.failed) for h in first.hosts] == [("localhost", 0, 0)]
    assert cluster_problems() == []


@pytest.mark.slow
@pytest.mark.parametrize("playbook", ["setup_gpu_node.yml", "k3s_cluster.yml"])
def test_gpu_roles_dry_run_on_a_host_without_gpus(playbook):
    if _has_nvidia_gpu():
        pytest.skip("this host has an NVIDIA GPU: the no-GPU path does not apply")
    lines: list[str] = []
    result = run_playbook(playbook, LOCAL_INVENTORY, check=True, on_line=lines.append)
    assert result.succeeded, result.failures
    assert any(line.startswith("TASK Say why") for line in lines)
    # Hardware tasks were skipped and nothing was installed by the dry run.
    assert "TASK Ensure the toolkit packages are installed." not in lines
    assert shutil.which("nvidia-ctk") is None and not Path("/usr/local/bin/k3s").exists()
    dpkg = subprocess.run(["dpkg", "-s", "nvidia-container-toolkit"], capture_output=True)
    assert dpkg.returncode != 0


@pytest.fixture
def failing_playbook(tmp_path: Path) -> Path:
    playbook = tmp_path / "fails.yml"
    playbook.write_text(
        "- name: A play that fails.\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Fail on purpose.\n      ansible.builtin.fail:\n        msg: broken here\n"
    )
    return playbook


def test_provision_names_the_failed_host_and_task(failing_playbook):
    result = run_playbook(str(failing_playbook), LOCAL_INVENTORY, on_line=None)
    assert not result.succeeded and result.rc != 0
    assert [(f.host, f.task, f.message) for f in result.failures] == [
        ("localhost", "Fail on purpose.", "broken here")
    ]


def test_icx_provision_streams_progress_and_exits_non_zero(failing_playbook):
    done = subprocess.run(
        [VENV_BIN / "icx", "provision", str(failing_playbook), "-i", LOCAL_INVENTORY],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "TASK Fail on purpose.\n  localhost: FAILED" in done.stdout
    assert "failed: host localhost, task 'Fail on purpose.': broken here" in done.stdout
