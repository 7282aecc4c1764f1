"""Status conditions the Kubernetes way (metav1.Condition semantics), as pure functions.

`lastTransitionTime` changes only when `status` changes, so re-applying the same
condition is a no-op and the status patch stays empty on a quiet reconcile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from infinitecontext.crds.models import Condition

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
SUBMITTED = "Submitted"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SUSPENDED = "Suspended"
PASSED = "Passed"

# Reasons of a Ready condition that is not True because of an error (docs/operator.md
# lists them): the first two wait for a spec change, the third is retried with backoff.
INVALID_SPEC = "InvalidSpec"
"""The spec holds a value the operator itself cannot turn into a job."""
REJECTED = "Rejected"
"""A backend (SLURM, MLflow, the API server) refused what the spec asked for."""
BACKEND_UNAVAILABLE = "BackendUnavailable"
"""SLURM or MLflow did not answer."""


@dataclass(frozen=True)
class Refusal:
    """A permanent error of a pass: the Ready condition's reason and message."""

    reason: str
    message: str


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def refused_at(conditions: Sequence[Condition], generation: int | None) -> bool:
    """Whether a backend refused this very generation of the spec: nothing is tried
    again until the spec changes."""
    ready = find(conditions, READY)
    return (
        ready is not None
        and ready.status == "False"
        and ready.reason == REJECTED
        and ready.observed_generation == generation
    )


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """A new list with `type_` set; its transition time moves only if the status moved."""
    previous = find(conditions, type_)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, updated], key=lambda c: _ORDER.get(c.type, len(_ORDER)))


# Conditions are listed in a stable order so that status diffs stay small.
_ORDER = {
    t: i for i, t in enumerate([READY, SUBMITTED, RUNNING, SUCCEEDED, FAILED, SUSPENDED, PASSED])
}
