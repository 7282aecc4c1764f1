"""Status conditions the Kubernetes way (metav1.Condition semantics), as pure functions.

`lastTransitionTime` changes only when `status` changes, so re-applying the same
condition is a no-op and the status patch stays empty on a quiet reconcile.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


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
