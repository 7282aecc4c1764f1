"""SLURM dispatch of a workload through the SLURM bridge (pure parts).

The idempotency key is the resource UID (plus the attempt after a resubmission), so
an operator that restarts between submitting and recording the job id finds the job
it already submitted instead of submitting again.
"""

from __future__ import annotations

import re

from infinitecontext.crds.models import SlurmOptions, WorkloadSpec
from infinitecontext.operator.workloads.jobs import JobObservation
from infinitecontext.operator.workloads.recipe import Owner, WorkloadCommand
from infinitecontext.slurm_bridge.models import JobRequest, JobStatus, TorchrunSpec
from infinitecontext.slurm_bridge.states import Phase

# SLURM failures that are the cluster's fault, not our code's: submit again.
RETRYABLE_REASONS = frozenset({"NodeFail", "Preempted", "BootFail", "Revoked"})
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]i?)?$")
_MB_PER_UNIT = {
    None: 1 / 2**20,
    "K": 1e3 / 2**20,
    "Ki": 1 / 2**10,
    "M": 1e6 / 2**20,
    "Mi": 1,
    "G": 1e9 / 2**20,
    "Gi": 2**10,
    "T": 1e12 / 2**20,
    "Ti": 2**20,
}


def slurm_key(uid: str, attempt: int) -> str:
    return uid if attempt == 0 else f"{uid}.{attempt}"


def memory_mb(quantity: str) -> int:
    """A Kubernetes memory quantity (`4Gi`, `512Mi`, `2G`) in MiB, rounded up."""
    match = _QUANTITY.match(quantity.strip())
    if not match or match.group(2) not in _MB_PER_UNIT:
        raise ValueError(f"memory {quantity!r} is not a quantity such as 4Gi or 512Mi")
    return max(1, -(-int(float(match.group(1)) * _MB_PER_UNIT[match.group(2)] * 1000) // 1000))


def cpus(quantity: str) -> int:
    """CPUs from a quantity (`2`, `500m`), at least one."""
    text = quantity.strip()
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, -(-int(value * 1000) // 1000))


def slurm_request(
    owner: Owner, spec: WorkloadSpec, work: WorkloadCommand, attempt: int
) -> JobRequest:
    options = spec.slurm or SlurmOptions()
    resources = spec.resources
    multi = resources.nodes > 1 or resources.gpus_per_node > 1
    time_limit = options.time_limit_minutes
    if time_limit is None and spec.active_deadline_seconds is not None:
        time_limit = -(-spec.active_deadline_seconds // 60)
    return JobRequest(
        name=f"icx-{owner.kind.lower()}-{owner.namespace}-{owner.name}"[:200],
        command=work.argv,
        key=slurm_key(owner.uid, attempt),
        nodes=resources.nodes,
        gpus_per_node=resources.gpus_per_node,
        cpus_per_node=cpus(resources.cpu),
        memory_mb=memory_mb(resources.memory),
        time_limit_minutes=time_limit,
        partition=options.partition,
        account=options.account,
        qos=options.qos,
        environment=work.environment,
        working_directory=options.working_directory,
        container_image=options.container_image,
        torchrun=TorchrunSpec(nproc_per_node=max(resources.gpus_per_node, 1)) if multi else None,
        files={work.recipe_path: work.recipe},
    )


def observe_slurm(status: JobStatus, output_tail: str = "") -> JobObservation:
    """What the operator sees of a SLURM job; `output_tail`: the last lines of a failed
    job's error output (its cause, where the job's own code failed)."""
    phase = {
        Phase.PENDING: "Pending",
        Phase.RUNNING: "Running",
        Phase.SUCCEEDED: "Succeeded",
        Phase.FAILED: "Failed",
        Phase.UNKNOWN: "Pending",
    }[status.phase]
    detail = status.state_reason or status.reason
    message = f"SLURM job {status.job_id} {status.state}"
    if status.exit_code is not None and phase == "Failed":
        message += f", exit code {status.exit_code}"
    elif detail and detail != status.reason:
        message += f" ({detail})"
    if output_tail.strip():
        message += f"; the job's last output: {output_tail.strip()}"
    return JobObservation(
        phase,  # type: ignore[arg-type]
        status.reason,
        message,
        retryable=status.reason in RETRYABLE_REASONS,
        slurm_job_id=status.job_id,
        state=status.state,
    )
