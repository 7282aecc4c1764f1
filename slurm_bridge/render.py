"""Turn a `JobRequest` into what SLURM receives: a batch script plus options.

No user string is ever placed where a shell or sbatch would interpret it:
- every option (name, comment, paths, partition …) travels as a REST field or as one
  argv element of `sbatch`, never as an `#SBATCH` line, so the script has no
  directives to inject into;
- the environment travels as the REST `environment` field, or as the environment of
  the `sbatch` process (`--export=ALL`), never through the script;
- command arguments are quoted for bash; one that holds a newline or another control
  character is written in ANSI-C quoting (`$'…\\n…'`), so the script never gains a
  line that the user wrote;
- a file the job needs (the operator's recipe) is written by `cat` from a here-doc
  whose end marker is quoted (`<<'ICX_FILE_EOF'`), so bash expands nothing in it; the
  request refuses a file with a line equal to the marker (models.py).
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from infinitecontext.slurm_bridge.models import FILE_END_MARKER, JobRequest, TorchrunSpec

# The environment a job starts from; the request's environment is laid over it.
BASE_ENVIRONMENT: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}

# Each node runs this (fixed text, no user strings) under bash -c: SLURM_NODEID and
# SLURM_NNODES are read on the node itself; $1 is the first node, the rest is argv.
_TORCHRUN_LAUNCHER = (
    'head_node=$1; shift; exec torchrun --nnodes="$SLURM_NNODES" '
    '--node_rank="$SLURM_NODEID" --nproc_per_node={nproc} --rdzv_backend=c10d '
    '--rdzv_id="$SLURM_JOB_ID" --rdzv_endpoint="$head_node:{port}" "$@"'
)


def bash_quote(arg: str) -> str:
    """Quote one argument for bash; control characters become `$'\\xHH'` escapes."""
    if not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in arg):
        return shlex.quote(arg)
    escaped = "".join(_ansi_c_char(ch) for ch in arg)
    return f"$'{escaped}'"


def _ansi_c_char(ch: str) -> str:
    if ch in "\\'":
        return "\\" + ch
    if ord(ch) < 0x20 or ord(ch) == 0x7F:
        return f"\\x{ord(ch):02x}"
    return ch


def quote_argv(argv: Sequence[str]) -> str:
    return " ".join(bash_quote(arg) for arg in argv)


def render_script(request: JobRequest) -> str:
    """The batch script: fixed lines plus the quoted command."""
    lines = [
        "#!/bin/bash",
        "# Rendered by infinitecontext.slurm_bridge; every user value below is quoted.",
        "set -euo pipefail",
    ]
    for path, text in request.files.items():
        lines += file_lines(path, text)
    lines += _launch_lines(request)
    return "\n".join(lines) + "\n"


def file_lines(path: str, text: str) -> list[str]:
    """Write `text` to `path` (its folder created) from a quoted here-doc."""
    folder = posixpath.dirname(path)
    lines = [f"mkdir -p -- {bash_quote(folder)}"] if folder else []
    body = text if text.endswith("\n") or not text else text + "\n"
    return [*lines, f"cat > {bash_quote(path)} <<'{FILE_END_MARKER}'", body + FILE_END_MARKER]


def _launch_lines(request: JobRequest) -> list[str]:
    srun = ["srun", "--ntasks-per-node=1"]
    if request.container_image:
        srun.append(f"--container-image={request.container_image}")
    if request.torchrun is not None:
        return _torchrun_lines(srun, request.torchrun, request.command)
    if request.nodes > 1 or request.container_image:
        return [f"{quote_argv(srun)} {quote_argv(request.command)}"]
    return [f"exec {quote_argv(request.command)}"]


def _torchrun_lines(srun: list[str], spec: TorchrunSpec, command: Sequence[str]) -> list[str]:
    launcher = _TORCHRUN_LAUNCHER.format(nproc=spec.nproc_per_node, port=spec.rdzv_port)
    return [
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f'{quote_argv(srun)} bash -c {bash_quote(launcher)} icx-torchrun "$head_node" '
        f"{quote_argv(command)}",
    ]


def job_environment(request: JobRequest) -> dict[str, str]:
    return {**BASE_ENVIRONMENT, **request.environment}


def rest_submit_body(request: JobRequest, data_parser: bool) -> dict[str, Any]:
    """The body of `POST /slurm/v<version>/job/submit`.

    `data_parser` selects the schema of slurmrestd's data_parser plugins (API v0.0.40 and
    newer, SLURM 23.11+): the script inside `job`, the environment as `NAME=value`
    strings, limits as `{set, number}` objects. Otherwise the v0.0.38 schema.
    """
    if data_parser:
        return {"job": {"script": render_script(request), **_job_v40(request)}}
    return {"script": render_script(request), "job": _job_v38(request)}


def _job_common(request: JobRequest) -> dict[str, Any]:
    job: dict[str, Any] = {
        "name": request.name,
        "comment": request.comment,
        "tasks": request.nodes,
        "tasks_per_node": 1,
        "cpus_per_task": request.cpus_per_node,
        "current_working_directory": request.working_directory,
        "standard_output": request.stdout,
        "standard_error": request.stderr_path or request.stdout,
    }
    names = {"partition": request.partition, "account": request.account, "qos": request.qos}
    job.update({name: value for name, value in names.items() if value is not None})
    return job


def _job_v38(request: JobRequest) -> dict[str, Any]:
    job = _job_common(request)
    job["nodes"] = [request.nodes, request.nodes]
    job["environment"] = job_environment(request)
    optional = {
        "memory_per_node": request.memory_mb,
        "time_limit": request.time_limit_minutes,
        "gpus_per_node": str(request.gpus_per_node) if request.gpus_per_node else None,
    }
    job.update({name: value for name, value in optional.items() if value is not None})
    return job


def _job_v40(request: JobRequest) -> dict[str, Any]:
    job = _job_common(request)
    job["minimum_nodes"] = job["maximum_nodes"] = request.nodes
    job["environment"] = [f"{name}={value}" for name, value in job_environment(request).items()]
    limits = {"memory_per_node": request.memory_mb, "time_limit": request.time_limit_minutes}
    job.update({name: _set(value) for name, value in limits.items() if value is not None})
    if request.gpus_per_node:
        job["tres_per_node"] = f"gres/gpu:{request.gpus_per_node}"
    return job


def _set(number: int) -> dict[str, Any]:
    """A data_parser number that is set (neither unset nor infinite)."""
    return {"set": True, "infinite": False, "number": number}


def sbatch_argv(request: JobRequest) -> list[str]:
    """`sbatch` arguments for the CLI backend; the script goes to its stdin."""
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={request.name}",
        f"--comment={request.comment}",
        f"--nodes={request.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={request.cpus_per_node}",
        f"--chdir={request.working_directory}",
        f"--output={request.stdout}",
        f"--error={request.stderr_path or request.stdout}",
        "--export=ALL",
    ]
    optional = {
        "--mem": request.memory_mb,
        "--time": request.time_limit_minutes,
        "--partition": request.partition,
        "--account": request.account,
        "--qos": request.qos,
        "--gpus-per-node": request.gpus_per_node or None,
    }
    argv += [f"{flag}={value}" for flag, value in optional.items() if value is not None]
    return argv
