"""`icx slurm`: submit, inspect, list and cancel SLURM jobs through the bridge.

Every command talks to slurmrestd when it answers and falls back to the SLURM
commands otherwise (`connect()`); results print as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from infinitecontext.slurm_bridge.auth import ScontrolToken, TokenFile
from infinitecontext.slurm_bridge.client import DEFAULT_REST_URL, SlurmClient, connect
from infinitecontext.slurm_bridge.models import JobRequest, TorchrunSpec

app = typer.Typer(help="Submit, inspect and cancel SLURM jobs.", no_args_is_help=True)

Url = Annotated[str, typer.Option("--url", help="slurmrestd address")]
User = Annotated[str, typer.Option("--user", help="SLURM user the token is for")]
TokenPath = Annotated[str | None, typer.Option("--token-file", help="JWT file (else scontrol)")]


def _client(url: str, user: str, token_file: str | None) -> SlurmClient:
    from pathlib import Path

    token = TokenFile(user, Path(token_file)) if token_file else ScontrolToken(user)
    return connect(url, token)


def _print(value: Any) -> None:
    is_instance = dataclasses.is_dataclass(value) and not isinstance(value, type)
    data = dataclasses.asdict(value) if is_instance else value
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def submit(
    name: Annotated[str, typer.Option(help="Job name")],
    key: Annotated[str, typer.Option(help="Idempotency key (the owner's UID)")],
    command: Annotated[list[str], typer.Argument(help="Command and its arguments")],
    nodes: int = 1,
    gpus_per_node: int = 0,
    cpus_per_node: int = 1,
    memory_mb: int | None = None,
    time_limit_minutes: int | None = None,
    partition: str | None = None,
    workdir: str = "/tmp",
    env: Annotated[list[str] | None, typer.Option(help="NAME=VALUE")] = None,
    container_image: str | None = None,
    torchrun_nproc: Annotated[int | None, typer.Option(help="Run under torchrun")] = None,
    url: Url = DEFAULT_REST_URL,
    user: User = "root",
    token_file: TokenPath = None,
) -> None:
    """Submit COMMAND, or print the job that already carries KEY."""
    request = JobRequest(
        name=name,
        key=key,
        command=command,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        cpus_per_node=cpus_per_node,
        memory_mb=memory_mb,
        time_limit_minutes=time_limit_minutes,
        partition=partition,
        working_directory=workdir,
        environment=dict(item.split("=", 1) for item in env or []),
        container_image=container_image,
        torchrun=TorchrunSpec(torchrun_nproc) if torchrun_nproc else None,
    )
    _print(_client(url, user, token_file).submit(request))


@app.command()
def status(
    job_id: int, url: Url = DEFAULT_REST_URL, user: User = "root", token_file: TokenPath = None
) -> None:
    """Print a job's state, phase, reason and exit code."""
    _print(_client(url, user, token_file).get(job_id))


@app.command("list")
def list_jobs(
    key: Annotated[str | None, typer.Option(help="Only jobs with this key")] = None,
    url: Url = DEFAULT_REST_URL,
    user: User = "root",
    token_file: TokenPath = None,
) -> None:
    """List the jobs slurmctld knows."""
    _print([dataclasses.asdict(job) for job in _client(url, user, token_file).list(key=key)])


@app.command()
def cancel(
    job_id: int, url: Url = DEFAULT_REST_URL, user: User = "root", token_file: TokenPath = None
) -> None:
    """Cancel a job (a finished job is left as it is)."""
    _client(url, user, token_file).cancel(job_id)


@app.command()
def logs(
    job_id: int,
    tail: int = 100,
    url: Url = DEFAULT_REST_URL,
    user: User = "root",
    token_file: TokenPath = None,
) -> None:
    """Print the last lines of a job's stdout and stderr."""
    job_logs = _client(url, user, token_file).logs(job_id, tail=tail)
    typer.echo(job_logs.stdout, nl=False)
    if job_logs.stderr:
        typer.echo(job_logs.stderr, nl=False, err=True)
