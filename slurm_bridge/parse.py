"""Job records (the JSON of slurmrestd and `squeue --json`) into `JobStatus`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from infinitecontext.slurm_bridge.logs import expand_output_path
from infinitecontext.slurm_bridge.models import JobStatus, key_from_comment
from infinitecontext.slurm_bridge.states import base_state, decode_exit, phase_of

# State reasons of a FAILED job that name no cause beyond its exit code or signal.
_NO_CAUSE = frozenset({"", "None", "NonZeroExitCode", "RaisedSignal"})
# The `sacct --parsable2` fields `sacct_status` reads, in this order.
SACCT_FIELDS = ("JobID", "JobName", "State", "ExitCode", "WorkDir", "Comment", "NodeList")


def job_status(job: Mapping[str, Any]) -> JobStatus:
    job_id = int(job["job_id"])
    state = base_state(job.get("job_state"))
    phase, reason = phase_of(state)
    exit_status = decode_exit(job.get("exit_code"))
    state_reason = str(job.get("state_reason") or "")
    if state == "FAILED" and state_reason not in _NO_CAUSE:
        reason = state_reason  # SLURM says why it failed (BadConstraints, JobLaunchFailure)
    elif state == "FAILED" and exit_status.signal:
        reason = "Signaled"
    stdout, stderr = _output_paths(job, job_id)
    return JobStatus(
        job_id=job_id,
        name=str(job.get("name", "")),
        state=state,
        phase=phase,
        reason=reason,
        exit_code=exit_status.exit_code,
        signal=exit_status.signal,
        key=key_from_comment(job.get("comment")),
        nodes=str(job.get("nodes", "")),
        working_directory=str(job.get("current_working_directory", "")),
        stdout_path=stdout,
        stderr_path=stderr,
        state_reason=state_reason,
    )


def _output_paths(job: Mapping[str, Any], job_id: int) -> tuple[str, str]:
    """Absolute, expanded stdout/stderr paths (sbatch's default: `slurm-%j.out`)."""
    workdir = str(job.get("current_working_directory") or "/")
    stdout = str(job.get("standard_output") or "slurm-%j.out")
    stderr = str(job.get("standard_error") or stdout)
    name, user, node = (str(job.get(k, "")) for k in ("name", "user_name", "batch_host"))

    def absolute(path: str) -> str:
        return os.path.join(workdir, expand_output_path(path, job_id, name, user, node))

    return absolute(stdout), absolute(stderr)


def sacct_status(line: str) -> JobStatus:
    """A job from one `sacct -X -n -P -o <SACCT_FIELDS>` line (accounting clusters).

    sacct has no output paths in SLURM 22.05, so the log paths stay empty; the comment
    (and so the key) is stored only with `AccountingStoreFlags=job_comment`.
    """
    job_id, name, state_text, exit_text, workdir, comment, nodes = line.split("|", 6)
    state = base_state(state_text)
    phase, reason = phase_of(state)
    code, _, signal = exit_text.partition(":")
    return JobStatus(
        job_id=int(job_id),
        name=name,
        state=state,
        phase=phase,
        reason="Signaled" if state == "FAILED" and int(signal or 0) else reason,
        exit_code=int(code) if code else None,
        signal=(int(signal) or None) if signal else None,
        key=key_from_comment(comment),
        nodes=nodes,
        working_directory=workdir,
        stdout_path="",
        stderr_path="",
    )
