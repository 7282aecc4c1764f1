"""The object one reconcile pass works on, and the Events a pass posts about it.

Both controllers (workloads/ and inference/) build a `Resource` from the body kopf
hands in, once per pass, and their pure planners take it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infinitecontext.crds.models import Kind


@dataclass(frozen=True)
class Resource:
    """A custom resource as the API server gave it (kopf's own status fields left out)."""

    kind: str
    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, kind: Kind, body: Mapping[str, Any]) -> Resource:
        meta = body["metadata"]
        return cls(
            kind=kind.kind,
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            spec=dict(body.get("spec") or {}),
            status={k: v for k, v in dict(body.get("status") or {}).items() if k != "kopf"},
            annotations=dict(meta.get("annotations") or {}),
        )


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the resource."""

    type: str  # Normal | Warning
    reason: str
    message: str
