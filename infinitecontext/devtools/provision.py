"""`icx provision PLAYBOOK -i INVENTORY`: run one of ansible/'s playbooks.

The playbook runs through ansible-runner. Progress streams as it happens (one line per
task and per host result), the run ends with a per-host summary, and every failure
names its host and task. The exit status is non-zero when any host failed or was
unreachable.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "ansible"
_STAT_KEYS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable"}
_STAT_KEYS |= {"skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class HostSummary:
    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


@dataclass
class ProvisionResult:
    playbook: str
    status: str
    rc: int
    hosts: list[HostSummary] = field(default_factory=list)
    failures: list[TaskFailure] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and not self.failures

    @property
    def changed(self) -> int:
        return sum(host.changed for host in self.hosts)


def resolve_playbook(playbook: str) -> Path:
    """A playbook path as given, or a name of one in ansible/ (`slurm_cluster.yml`)."""
    for candidate in (Path(playbook), ANSIBLE_DIR / playbook, ANSIBLE_DIR / f"{playbook}.yml"):
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"no playbook {playbook!r} (looked in . and {ANSIBLE_DIR})")


def host_summaries(stats: Mapping[str, Mapping[str, int]] | None) -> list[HostSummary]:
    """ansible-runner's stats ({"ok": {host: n}, …}) as one summary per host."""
    hosts: dict[str, HostSummary] = {}
    for stat, per_host in (stats or {}).items():
        if stat not in _STAT_KEYS:
            continue
        for host, count in per_host.items():
            summary = hosts.setdefault(host, HostSummary(host))
            setattr(summary, _STAT_KEYS[stat], count)
    return sorted(hosts.values(), key=lambda summary: summary.host)


def failure_of(event: Mapping[str, Any]) -> TaskFailure | None:
    """A failed or unreachable task from one runner event (ignored errors excluded)."""
    kind = event.get("event")
    data = event.get("event_data", {})
    if kind == "runner_on_failed" and data.get("ignore_errors"):
        return None
    if kind not in ("runner_on_failed", "runner_on_unreachable"):
        return None
    result = data.get("res", {})
    message = result.get("msg") or result.get("stderr") or result.get("stdout") or "failed"
    return TaskFailure(
        host=str(data.get("host", "?")),
        task=str(data.get("task", "?")),
        message=str(message).strip(),
        unreachable=kind == "runner_on_unreachable",
    )


_PROGRESS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "FAILED",
    "runner_on_unreachable": "UNREACHABLE",
    "runner_on_skipped": "skipped",
}


def progress_line(event: Mapping[str, Any]) -> str | None:
    """One line of progress for a runner event, or None for events not worth a line."""
    kind = event.get("event", "")
    data = event.get("event_data", {})
    if kind == "playbook_on_task_start":
        return f"TASK {data.get('task', '?')}"
    if kind not in _PROGRESS:
        return None
    word = _PROGRESS[kind]
    if kind == "runner_on_ok" and data.get("res", {}).get("changed"):
        word = "changed"
    item = data.get("res", {}).get("item")
    suffix = f" ({item})" if isinstance(item, str | int) else ""
    return f"  {data.get('host', '?')}: {word}{suffix}"


def run_playbook(
    playbook: str,
    inventory: str,
    check: bool = False,
    limit: str | None = None,
    extra_vars: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = print,
) -> ProvisionResult:
    """Run a playbook with ansible-runner and return what happened on each host."""
    import ansible_runner  # the operator image does not ship Ansible

    path = resolve_playbook(playbook)
    failures: list[TaskFailure] = []

    def on_event(event: dict[str, Any]) -> bool:
        failure = failure_of(event)
        if failure is not None:
            failures.append(failure)
        line = progress_line(event)
        if line is not None and on_line is not None:
            on_line(line)
        return True  # keep the event in the artifacts

    cmdline = " ".join(["--check"] * check + ([f"--limit={limit}"] if limit else []))
    with tempfile.TemporaryDirectory(prefix="icx-provision-") as private_dir:
        runner = ansible_runner.run(
            private_data_dir=private_dir,
            project_dir=str(ANSIBLE_DIR),
            playbook=str(path),
            inventory=str(Path(inventory).resolve()),
            cmdline=cmdline or None,
            extravars=dict(extra_vars or {}),
            envvars=_ansible_environment(),
            event_handler=on_event,
            quiet=True,
        )
        return ProvisionResult(
            playbook=str(path),
            status=str(runner.status),
            rc=int(runner.rc),
            hosts=host_summaries(runner.stats),
            failures=failures,
        )


def _ansible_environment() -> dict[str, str]:
    # The ansible-playbook of this Python environment, with ansible/'s settings.
    bin_dir = str(Path(sys.executable).parent)
    return {
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_FORCE_COLOR": "0",
    }


def format_summary(result: ProvisionResult) -> str:
    lines = [f"PLAY SUMMARY ({Path(result.playbook).name}: {result.status}, rc={result.rc})"]
    for host in result.hosts:
        lines.append(
            f"  {host.host}: ok={host.ok} changed={host.changed} failed={host.failed} "
            f"unreachable={host.unreachable} skipped={host.skipped}"
        )
    for failure in result.failures:
        what = "unreachable" if failure.unreachable else "failed"
        lines.append(f"  {what}: host {failure.host}, task {failure.task!r}: {failure.message}")
    return "\n".join(lines)


# A group with no subcommands: options may follow PLAYBOOK, as with ansible-playbook.
app = typer.Typer(
    help="Run an Ansible playbook of ansible/ against an inventory.",
    context_settings={"allow_interspersed_args": True},
)


@app.callback(invoke_without_command=True)
def provision(
    playbook: Annotated[str, typer.Argument(help="slurm_cluster.yml, site.yml … or a path")],
    inventory: Annotated[str, typer.Option("-i", "--inventory", help="Inventory file")],
    check: Annotated[bool, typer.Option("--check", help="Dry run: change nothing")] = False,
    limit: Annotated[str | None, typer.Option("--limit", help="Hosts to run on")] = None,
    extra: Annotated[list[str] | None, typer.Option("-e", help="KEY=VALUE variable")] = None,
) -> None:
    """Run PLAYBOOK against INVENTORY, streaming progress and ending with a summary."""
    extra_vars = dict(item.split("=", 1) for item in extra or [])
    result = run_playbook(playbook, inventory, check=check, limit=limit, extra_vars=extra_vars)
    typer.echo(format_summary(result))
    raise typer.Exit(0 if result.succeeded else 1)
