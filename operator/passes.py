"""One reconcile pass, the same for both controllers: the object as kopf hands it in
(or the status this operator wrote last, where kopf's copy predates that write), under
the object's lock; the status written back as one merge patch of what changed (nothing
on a quiet pass), the Events posted, and the pass counted in the metrics. A pass that
raises before the controller set any phase (kopf retries it) still leaves a phase and a
Ready condition that says why (`retrying`), so `kubectl get` never shows a blank Phase.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from infinitecontext.crds.models import Condition, Kind, Phase
from infinitecontext.operator import conditions, logs, metrics
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.kube import status_patch
from infinitecontext.operator.resource import Event, Resource


@dataclass
class Pass:
    """What a pass arrived at so far: the controller updates it as it goes, so a pass
    that raises half-way still records what it did (a submitted job's id)."""

    resource: Resource
    events: list[Event] = field(default_factory=list)

    def advance(self, status: dict[str, Any], events: list[Event]) -> None:
        self.resource = Resource(**{**self.resource.__dict__, "status": status})
        self.events += events


@contextmanager
def reconcile_pass(ctx: OperatorContext, kind: Kind, body: Any) -> Iterator[Pass]:
    resource = Resource.from_body(kind, body)
    started = time.monotonic()
    result = "ok"
    with ctx.locks[resource.uid], logs.about(body):
        previous = ctx.written.get(resource.uid)
        if previous is not None and _older(body, previous[0]):
            # A trigger that queued behind our last write carries a body from before
            # it: continue from the status we wrote, not from the stale one.
            resource = Resource(**{**resource.__dict__, "status": previous[1]})
        current = Pass(resource)
        try:
            yield current
        except Exception as error:
            metrics.ERRORS.labels(kind.kind).inc()
            result = "error"
            done = current.resource
            status = retrying(done.status, error, datetime.now(UTC), done.generation)
            current.advance(status, [])
            raise
        finally:
            done = current.resource
            patch = status_patch(resource.status, done.status)
            if patch:
                version = ctx.kube.patch_status(kind, done.name, done.namespace, patch)
                ctx.written[done.uid] = (version, done.status)
            for event in current.events:
                kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1000])
            metrics.record_object(done.uid, kind.kind, done.namespace, done.name, done.status)
            metrics.RECONCILES.labels(kind.kind, result).inc()
            metrics.DURATION.labels(kind.kind).observe(time.monotonic() - started)


def _older(body: Any, written_version: str) -> bool:
    """Whether `body` predates our status write (etcd revisions grow; the API calls
    them opaque, so anything that is not a number counts as not older)."""
    seen = str(body["metadata"].get("resourceVersion", ""))
    return seen.isdigit() and written_version.isdigit() and int(seen) < int(written_version)


def retrying(
    status: dict[str, Any], error: Exception, now: datetime, generation: int
) -> dict[str, Any]:
    """The status after a pass that raised: as the controller left it when it set a phase,
    else phase Pending with Ready=Unknown, reason Retrying and the error as message."""
    if status.get("phase"):
        return status
    found = [Condition.model_validate(c) for c in status.get("conditions") or []]
    message = f"{type(error).__name__}: {error}"[:1000]
    ready = conditions.set_condition(
        found, conditions.READY, "Unknown", "Retrying", message, now, generation
    )
    dumped = [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in ready]
    return {**status, "phase": Phase.PENDING.value, "conditions": dumped}
