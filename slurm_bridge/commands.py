"""The command-line backend: `sbatch`, `squeue --json`, `sacct` and `scancel`.

For hosts where only the SLURM commands exist (no slurmrestd). Commands run without
a shell; the job's environment is the environment of the `sbatch` process.
"""

from __future__ import annotations

import builtins
import json
import subprocess
from collections.abc import Iterable, Mapping, Sequence

from infinitecontext.slurm_bridge.client import filter_jobs, find_by_key, read_logs
from infinitecontext.slurm_bridge.errors import JobNotFound, SlurmRejected, SlurmUnavailable
from infinitecontext.slurm_bridge.models import JobLogs, JobRef, JobRequest, JobStatus
from infinitecontext.slurm_bridge.parse import SACCT_FIELDS, job_status, sacct_status
from infinitecontext.slurm_bridge.render import job_environment, render_script, sbatch_argv
from infinitecontext.slurm_bridge.states import Phase

# Messages of SLURM's commands that mean "the controller did not answer".
_UNREACHABLE = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Zero Bytes were transmitted",
    "Connection refused",
)


class CommandClient:
    def __init__(self, timeout_s: float = 60.0) -> None:
        self._timeout_s = timeout_s

    def submit(self, request: JobRequest) -> JobRef:
        existing = find_by_key(self._jobs(), request.key)
        if existing is not None:
            return JobRef(existing.job_id, created=False)
        out = self._run(
            sbatch_argv(request), stdin=render_script(request), env=job_environment(request)
        )
        # --parsable prints "jobid" or "jobid;cluster".
        return JobRef(int(out.strip().split(";")[0]), created=True)

    def get(self, job_id: int) -> JobStatus:
        # squeue --json ignores --jobs in SLURM 22.05, so filter here.
        for job in self._jobs():
            if job.job_id == int(job_id):
                return job
        return self._accounted(int(job_id))

    def _accounted(self, job_id: int) -> JobStatus:
        """A job slurmctld has forgotten (after MinJobAge), from accounting if there is any."""
        argv = ["sacct", "-X", "-n", "-P", f"--jobs={job_id}", "-o", ",".join(SACCT_FIELDS)]
        try:
            lines = self._run(argv).splitlines()
        except SlurmRejected as err:  # e.g. "Slurm accounting storage is disabled"
            raise JobNotFound(f"job {job_id} is unknown to slurmctld ({err})") from err
        for line in lines:
            if line.split("|", 1)[0] == str(job_id):
                return sacct_status(line)
        raise JobNotFound(f"job {job_id} is unknown to slurmctld and to accounting")

    def list(
        self, key: str | None = None, phases: Iterable[Phase] | None = None
    ) -> builtins.list[JobStatus]:
        return filter_jobs(self._jobs(), key, phases)

    def cancel(self, job_id: int) -> None:
        self.get(job_id)  # JobNotFound for an unknown id (scancel exits 0 for those)
        self._run(["scancel", str(int(job_id))])

    def logs(self, job_id: int, tail: int = 100) -> JobLogs:
        return read_logs(self.get(job_id), tail)

    def _jobs(self) -> builtins.list[JobStatus]:
        out = self._run(["squeue", "--json", "--states=all"])
        return [job_status(job) for job in json.loads(out).get("jobs", [])]

    def _run(
        self, argv: Sequence[str], stdin: str | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        try:
            done = subprocess.run(
                list(argv),
                input=stdin,
                env=dict(env) if env is not None else None,
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                check=False,
            )
        except FileNotFoundError as err:
            raise SlurmUnavailable(f"{argv[0]} is not installed on this host") from err
        except subprocess.TimeoutExpired as err:
            raise SlurmUnavailable(f"{argv[0]} did not finish in {self._timeout_s} s") from err
        if done.returncode != 0:
            raise classify_command_error(argv[0], done.stderr or done.stdout)
        return done.stdout


def classify_command_error(command: str, message: str) -> Exception:
    text = f"{command}: {message.strip()}"
    if any(marker in message for marker in _UNREACHABLE):
        return SlurmUnavailable(text)
    if "Invalid job id" in message:
        return JobNotFound(text)
    return SlurmRejected(text)
