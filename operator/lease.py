"""A standalone operator (no kopf peering) finds out about another one on the same
objects: each holds a Lease (coordination.k8s.io) named `infinitecontext-operator` in
the first namespace it watches (`default` when it watches all), renewed every
RENEW_SECONDS. One that finds the Lease held by a live other operator notes itself on
the Lease (annotation CONTENDER) and does not take it over until it expires; both say
so in an ERROR log line, again every minute while that lasts, and in the metric
`icx_operator_other_operator`.

Both operators then act on the same objects: what they do is idempotent (SLURM jobs by
key, model versions by run, children by server-side apply), but the fix is to run one,
or to run replicas with `--peering`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from infinitecontext.operator import metrics

LEASE_NAME = "infinitecontext-operator"
CONTENDER = "infinitecontext.dev/contender"
"""Annotation on the Lease: `<identity> <time>` of an operator that found it held."""
DURATION_SECONDS = 30
RENEW_SECONDS = 10
WARN_EVERY_SECONDS = 60

log = logging.getLogger(__name__)


def identity() -> str:
    """This process, unique even for two operators on one host."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Holder:
    identity: str
    renewed: datetime
    duration_seconds: int

    def alive(self, now: datetime) -> bool:
        return now < self.renewed + timedelta(seconds=self.duration_seconds)


def holder_of(lease: Any) -> Holder | None:
    """Who holds a Lease (a `V1Lease`), if anyone ever did."""
    spec = lease.spec
    if spec is None or not spec.holder_identity or spec.renew_time is None:
        return None
    renewed = spec.renew_time if spec.renew_time.tzinfo else spec.renew_time.replace(tzinfo=UTC)
    return Holder(spec.holder_identity, renewed, spec.lease_duration_seconds or DURATION_SECONDS)


def contender_of(lease: Any) -> Holder | None:
    """Another operator that found the Lease held, from its note on the Lease."""
    note = ((lease.metadata.annotations if lease.metadata else None) or {}).get(CONTENDER, "")
    who, _, when = note.partition(" ")
    try:
        seen = datetime.fromisoformat(when)
    except ValueError:
        return None
    return Holder(who, seen, DURATION_SECONDS)


class OperatorLease:
    """Holds the Lease, or watches the operator that does."""

    def __init__(self, api_client: Any, namespace: str, me: str) -> None:
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self._client = client
        self.namespace = namespace
        self.me = me
        self._last_warning: datetime | None = None

    def check(self, now: datetime) -> Holder | None:
        """One round: take or renew the Lease; the other live operator, if any (the one
        holding it, or one that found it held by us)."""
        try:
            lease: Any = self._api.read_namespaced_lease(LEASE_NAME, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            self._api.create_namespaced_lease(self.namespace, self._lease(now, None))
            return None
        holder = holder_of(lease)
        if holder is not None and holder.identity != self.me and holder.alive(now):
            # Tell the holder about us: it reads this when it renews.
            seen = {"metadata": {"annotations": {CONTENDER: f"{self.me} {now.isoformat()}"}}}
            self._api.patch_namespaced_lease(LEASE_NAME, self.namespace, seen)
            return holder
        contender = contender_of(lease)
        # Ours, or free: renew or take it (a concurrent writer makes this a 409: next
        # round); the renewal drops the contender's note, which it writes again.
        self._api.replace_namespaced_lease(
            LEASE_NAME, self.namespace, self._lease(now, lease.metadata.resource_version)
        )
        return contender if contender is not None and contender.alive(now) else None

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            try:
                other = self.check(now)
            except ApiException as error:
                if error.status == 403:
                    log.warning(
                        "cannot hold Lease %s/%s (forbidden): another standalone operator "
                        "on the same objects would go unnoticed",
                        self.namespace,
                        LEASE_NAME,
                    )
                    return
                log.debug("Lease %s/%s: %s", self.namespace, LEASE_NAME, error.reason)
                other = None
            metrics.OTHER_OPERATOR.set(1 if other else 0)
            if other is not None:
                self._warn(other, now)
            stop.wait(RENEW_SECONDS)

    def _warn(self, other: Holder, now: datetime) -> None:
        if self._last_warning and (now - self._last_warning).total_seconds() < WARN_EVERY_SECONDS:
            return
        self._last_warning = now
        log.error(
            "another operator (%s) shares Lease %s/%s, seen %s: both act on the same "
            "objects without peering. Run one operator, or replicas with --peering (if it "
            "has just stopped, this ends within %d s)",
            other.identity,
            self.namespace,
            LEASE_NAME,
            other.renewed.isoformat(),
            other.duration_seconds,
        )

    def _lease(self, now: datetime, resource_version: str | None) -> Any:
        c = self._client
        return c.V1Lease(
            metadata=c.V1ObjectMeta(name=LEASE_NAME, resource_version=resource_version),
            spec=c.V1LeaseSpec(
                holder_identity=self.me,
                lease_duration_seconds=DURATION_SECONDS,
                renew_time=now,
            ),
        )


def lease_namespace(namespaces: list[str]) -> str:
    return namespaces[0] if namespaces else "default"


def start(api_client: Any, namespaces: list[str]) -> threading.Event:
    """Hold or watch the Lease in a daemon thread; set the returned event to stop."""
    stop = threading.Event()
    lease = OperatorLease(api_client, lease_namespace(namespaces), identity())
    threading.Thread(
        target=lease.run_forever, args=(stop,), name="operator-lease", daemon=True
    ).start()
    return stop
