"""SLURM job states mapped to the few phases the operator acts on.

SLURM has some twenty states (`squeue --help`, "JOB STATE CODES"); the operator needs
five phases, a reason saying why, and the exit code. Newer REST versions (v0.0.40+)
report a list of state flags and an exit-code object; both shapes are accepted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Phase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


# state -> (phase, reason). The reason names the SLURM state in CamelCase so that a
# status condition can carry it unchanged.
_STATE_PHASES: dict[str, tuple[Phase, str]] = {
    "PENDING": (Phase.PENDING, "Pending"),
    "CONFIGURING": (Phase.PENDING, "Configuring"),
    "REQUEUED": (Phase.PENDING, "Requeued"),
    "REQUEUE_HOLD": (Phase.PENDING, "RequeueHold"),
    "REQUEUE_FED": (Phase.PENDING, "Requeued"),
    "RESV_DEL_HOLD": (Phase.PENDING, "ReservationDeleted"),
    "RUNNING": (Phase.RUNNING, "Running"),
    "COMPLETING": (Phase.RUNNING, "Completing"),
    "SIGNALING": (Phase.RUNNING, "Signaling"),
    "STAGE_OUT": (Phase.RUNNING, "StageOut"),
    "RESIZING": (Phase.RUNNING, "Resizing"),
    "SUSPENDED": (Phase.RUNNING, "Suspended"),
    "STOPPED": (Phase.RUNNING, "Stopped"),
    "COMPLETED": (Phase.SUCCEEDED, "Completed"),
    "FAILED": (Phase.FAILED, "Failed"),
    "CANCELLED": (Phase.FAILED, "Cancelled"),
    "TIMEOUT": (Phase.FAILED, "Timeout"),
    "NODE_FAIL": (Phase.FAILED, "NodeFail"),
    "PREEMPTED": (Phase.FAILED, "Preempted"),
    "OUT_OF_MEMORY": (Phase.FAILED, "OutOfMemory"),
    "BOOT_FAIL": (Phase.FAILED, "BootFail"),
    "DEADLINE": (Phase.FAILED, "Deadline"),
    "SPECIAL_EXIT": (Phase.FAILED, "SpecialExit"),
    "REVOKED": (Phase.FAILED, "Revoked"),
}


def phase_of(state: str) -> tuple[Phase, str]:
    """The phase and reason of a SLURM state name (`CANCELLED by 0` counts as CANCELLED)."""
    base = state.split()[0].upper() if state.strip() else ""
    return _STATE_PHASES.get(base, (Phase.UNKNOWN, base.title() or "Unknown"))


def base_state(raw: Any) -> str:
    """The base state from a REST/JSON job: a string (v0.0.38/39) or a list of flags."""
    if isinstance(raw, list):
        known = [s for s in raw if str(s).upper() in _STATE_PHASES]
        return str(known[0] if known else (raw[0] if raw else "UNKNOWN")).upper()
    return str(raw or "UNKNOWN").split()[0].upper()


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int | None
    signal: int | None


def decode_exit(raw: Any) -> ExitStatus:
    """Exit code and signal from SLURM's value.

    v0.0.38/39 give the raw wait status (`768` = exit 3, `9` = killed by SIGKILL);
    v0.0.40+ give `{"return_code": {"number": 3}, "signal": {"id": {"number": 9}}}`.
    """
    if isinstance(raw, dict):
        code = _number(raw.get("return_code"))
        signal = _number((raw.get("signal") or {}).get("id"))
        return ExitStatus(code, signal or None)
    if raw is None:
        return ExitStatus(None, None)
    status = int(raw)
    if status & 0x7F:
        return ExitStatus(None, status & 0x7F)
    return ExitStatus(status >> 8, None)


def _number(value: Any) -> int | None:
    if isinstance(value, dict):
        return int(value["number"]) if value.get("set", True) and "number" in value else None
    return None if value is None else int(value)
