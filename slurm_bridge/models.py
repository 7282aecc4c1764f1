"""Typed job requests and results of the SLURM bridge.

A `JobRequest` is validated when it is built: names and identifiers are checked
against SLURM's own character sets and no field may carry a control character, so a
request that would need escaping in a place where escaping is impossible (a job
name, a path) never reaches SLURM. Values that may hold anything (environment values,
command arguments) are quoted by `render.py` instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from infinitecontext.slurm_bridge.errors import InvalidJobRequest
from infinitecontext.slurm_bridge.states import Phase

# Partition, account and QoS names as SLURM accepts them.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.\-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The owning resource's UID (or any similar key): safe in a comment and in a name.
_KEY = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Environment set by SLURM itself, or by the bridge: a request may not override it.
_RESERVED_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_")


@dataclass(frozen=True)
class TorchrunSpec:
    """Run the command under `torchrun` on every node of the allocation.

    The first node of `SLURM_JOB_NODELIST` is the rendezvous host and `SLURM_NODEID`
    the node rank, both read by each node at run time.
    """

    nproc_per_node: int = 1
    rdzv_port: int = 29500

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1:
            raise InvalidJobRequest("torchrun.nproc_per_node must be at least 1")
        if not 1 <= self.rdzv_port <= 65535:
            raise InvalidJobRequest(f"torchrun.rdzv_port {self.rdzv_port} is not a port")


@dataclass(frozen=True)
class JobRequest:
    """One batch job. `command` is an argv list: it is never parsed by a shell."""

    name: str
    command: Sequence[str]
    key: str
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_node: int = 1
    memory_mb: int | None = None
    time_limit_minutes: int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    working_directory: str = "/tmp"
    stdout_path: str | None = None
    stderr_path: str | None = None
    container_image: str | None = None
    torchrun: TorchrunSpec | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    """Files the batch script writes before the command runs: path (absolute, or relative
    to `working_directory`) → text, written verbatim through a quoted here-doc."""

    def __post_init__(self) -> None:
        validate_request(self)

    @property
    def comment(self) -> str:
        """The job comment that carries the idempotency key."""
        return key_comment(self.key)

    @property
    def stdout(self) -> str:
        return self.stdout_path or f"{self.working_directory}/slurm-%j.out"


def key_comment(key: str) -> str:
    return f"icx-key={key}"


def key_from_comment(comment: str | None) -> str | None:
    prefix = "icx-key="
    return comment[len(prefix) :] if comment and comment.startswith(prefix) else None


def validate_request(request: JobRequest) -> None:
    """Raise `InvalidJobRequest` for anything SLURM could misread."""
    _check_text("name", request.name, max_len=200)
    if not _KEY.match(request.key):
        raise InvalidJobRequest(f"key {request.key!r} must match {_KEY.pattern}")
    if not request.command or isinstance(request.command, str):
        raise InvalidJobRequest("command must be a non-empty list of arguments")
    if any("\x00" in arg for arg in request.command):
        raise InvalidJobRequest("command arguments may not contain NUL")
    for label, value in (("nodes", request.nodes), ("cpus_per_node", request.cpus_per_node)):
        if value < 1:
            raise InvalidJobRequest(f"{label} must be at least 1")
    for label, number in (
        ("gpus_per_node", request.gpus_per_node),
        ("memory_mb", request.memory_mb),
        ("time_limit_minutes", request.time_limit_minutes),
    ):
        if number is not None and number < 0:
            raise InvalidJobRequest(f"{label} may not be negative")
    for label, ident in (
        ("partition", request.partition),
        ("account", request.account),
        ("qos", request.qos),
    ):
        if ident is not None and not _IDENTIFIER.match(ident):
            raise InvalidJobRequest(f"{label} {ident!r} must match {_IDENTIFIER.pattern}")
    _validate_environment(request.environment)
    _validate_paths(request)
    _validate_files(request.files)


def _validate_environment(environment: Mapping[str, str]) -> None:
    for name, value in environment.items():
        if not _ENV_NAME.match(name):
            raise InvalidJobRequest(f"environment name {name!r} is not a valid variable name")
        if name.startswith(_RESERVED_ENV_PREFIXES):
            raise InvalidJobRequest(f"environment name {name!r} is reserved for SLURM")
        if "\x00" in value:
            raise InvalidJobRequest(f"environment value of {name} contains NUL")


def _validate_paths(request: JobRequest) -> None:
    if not request.working_directory.startswith("/"):
        raise InvalidJobRequest("working_directory must be an absolute path")
    for label, path in (
        ("working_directory", request.working_directory),
        ("stdout_path", request.stdout_path),
        ("stderr_path", request.stderr_path),
        ("container_image", request.container_image),
    ):
        if path is not None:
            _check_text(label, path, max_len=4096)


# Ends the quoted here-doc that carries a file in the batch script (render.py).
FILE_END_MARKER = "ICX_FILE_EOF"


def _validate_files(files: Mapping[str, str]) -> None:
    for path, text in files.items():
        _check_text("file path", path, max_len=4096)
        if "\x00" in text:
            raise InvalidJobRequest(f"file {path} contains NUL")
        if FILE_END_MARKER in text.split("\n"):
            raise InvalidJobRequest(f"file {path} has a line {FILE_END_MARKER}, the here-doc's end")


def _check_text(label: str, value: str, max_len: int) -> None:
    if not value or len(value) > max_len:
        raise InvalidJobRequest(f"{label} must have 1 to {max_len} characters")
    if _CONTROL.search(value):
        raise InvalidJobRequest(f"{label} {value!r} contains a control character (newline …)")


@dataclass(frozen=True)
class JobRef:
    """What `submit` returns: the job, and whether this call created it."""

    job_id: int
    created: bool


@dataclass(frozen=True)
class JobStatus:
    job_id: int
    name: str
    state: str
    phase: Phase
    reason: str
    exit_code: int | None
    signal: int | None
    key: str | None
    nodes: str
    working_directory: str
    stdout_path: str
    stderr_path: str
    state_reason: str = ""

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True)
class JobLogs:
    job_id: int
    stdout: str
    stderr: str
    stdout_path: str
    stderr_path: str
