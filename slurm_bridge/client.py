"""The interface the operator programs against, and how to get one.

`connect()` returns the REST client when slurmrestd answers and falls back to the
command-line client (`sbatch`/`squeue`/`scancel`) when only the commands exist.
"""

from __future__ import annotations

import builtins
import shutil
from collections.abc import Iterable
from typing import Protocol

from infinitecontext.slurm_bridge.auth import TokenProvider
from infinitecontext.slurm_bridge.errors import SlurmUnavailable
from infinitecontext.slurm_bridge.logs import tail_lines
from infinitecontext.slurm_bridge.models import JobLogs, JobRef, JobRequest, JobStatus
from infinitecontext.slurm_bridge.states import Phase

DEFAULT_REST_URL = "http://127.0.0.1:6820"


class SlurmClient(Protocol):
    def submit(self, request: JobRequest) -> JobRef:
        """Submit, or return the job that already carries `request.key`."""
        ...

    def get(self, job_id: int) -> JobStatus: ...

    def list(
        self, key: str | None = None, phases: Iterable[Phase] | None = None
    ) -> builtins.list[JobStatus]: ...

    def cancel(self, job_id: int) -> None:
        """Cancel a job; cancelling a finished job is not an error."""
        ...

    def logs(self, job_id: int, tail: int = 100) -> JobLogs: ...


def filter_jobs(
    jobs: Iterable[JobStatus], key: str | None, phases: Iterable[Phase] | None
) -> list[JobStatus]:
    wanted = set(phases) if phases is not None else None
    return [
        job
        for job in jobs
        if (key is None or job.key == key) and (wanted is None or job.phase in wanted)
    ]


def find_by_key(jobs: Iterable[JobStatus], key: str) -> JobStatus | None:
    """The newest job with this key (SLURM job ids grow)."""
    matching = [job for job in jobs if job.key == key]
    return max(matching, key=lambda job: job.job_id) if matching else None


def read_logs(status: JobStatus, tail: int) -> JobLogs:
    stdout = tail_lines(status.stdout_path, tail)
    same_file = status.stderr_path == status.stdout_path
    stderr = "" if same_file else tail_lines(status.stderr_path, tail)
    return JobLogs(status.job_id, stdout, stderr, status.stdout_path, status.stderr_path)


def connect(
    url: str = DEFAULT_REST_URL, token: TokenProvider | None = None, prefer_rest: bool = True
) -> SlurmClient:
    """The REST client if slurmrestd answers, else the CLI client if the commands exist."""
    # Imported here: each backend module imports this one for the helpers above.
    from infinitecontext.slurm_bridge.commands import CommandClient
    from infinitecontext.slurm_bridge.rest import RestClient

    if prefer_rest:
        rest = RestClient(url, token)
        try:
            rest.api_version()
            return rest
        except SlurmUnavailable:
            if shutil.which("sbatch") is None:
                raise
    return CommandClient()
