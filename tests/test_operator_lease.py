"""Two standalone operators on the same namespace notice each other through the Lease
the first holds (real API server, two `icx operator run` processes)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from kubernetes import client
from plugins.kube import KubeCluster
from plugins.operator import StartOperator

from infinitecontext.devtools.waiting import wait_for
from infinitecontext.operator.lease import (
    CONTENDER,
    DURATION_SECONDS,
    LEASE_NAME,
    Holder,
    contender_of,
    holder_of,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_a_lease_holder_is_alive_until_its_duration_has_passed() -> None:
    spec = client.V1LeaseSpec(holder_identity="a", renew_time=NOW, lease_duration_seconds=30)
    holder = holder_of(client.V1Lease(spec=spec))
    assert holder == Holder("a", NOW, 30)
    assert holder.alive(NOW + timedelta(seconds=29))
    assert not holder.alive(NOW + timedelta(seconds=30))
    assert holder_of(client.V1Lease(spec=client.V1LeaseSpec())) is None


def test_the_contenders_note_names_it_and_when_it_was_seen() -> None:
    note = {CONTENDER: f"b {NOW.isoformat()}"}
    lease = client.V1Lease(metadata=client.V1ObjectMeta(annotations=note))
    assert contender_of(lease) == Holder("b", NOW, DURATION_SECONDS)
    assert contender_of(client.V1Lease(metadata=client.V1ObjectMeta())) is None


def other_operator(metrics: str) -> float:
    found = re.search(r"^icx_operator_other_operator (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else -1.0


def test_a_second_standalone_operator_detects_the_first(
    icx_crds: KubeCluster, kube_namespace: str, operator_factory: StartOperator
) -> None:
    first = operator_factory(icx_crds.kubeconfig, [kube_namespace])
    wait_for(
        "the first operator's Lease",
        lambda: LEASE_NAME in icx_crds.kubectl("get", "lease", "-n", kube_namespace, "-o", "name"),
        timeout_s=60,
    )
    second = operator_factory(icx_crds.kubeconfig, [kube_namespace])
    wait_for("the second operator to notice", lambda: other_operator(second.metrics()) == 1)
    assert "another operator (" in second.log.read_text()
    wait_for("the first to hear of it", lambda: other_operator(first.metrics()) == 1)
    second.stop()
    wait_for("the first to stop warning", lambda: other_operator(first.metrics()) == 0, 90)
