"""Every name the CRDs accept gives valid children on both backends: 63- and 253-character
names, dotted names, names that cut to a trailing dash. Pure checks of the rendered
children, then the same children offered to the real API server (server-side dry run)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from infinitecontext.crds.models import Autoscaling, InferenceServiceSpec
from infinitecontext.operator.inference.children import (
    CANARY,
    STABLE,
    horizontal_pod_autoscaler,
    pod_disruption_budget,
    role_service,
    selector,
    service,
)
from infinitecontext.operator.inference.planner import InferenceObserved, plan_inference
from infinitecontext.operator.inference.slurm import Replica, SlurmObserved, plan_slurm_service
from infinitecontext.operator.names import child_name, label_value
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.planner import ApplyChildren, Observed, parse, reconcile
from infinitecontext.slurm_bridge.states import Phase as SlurmPhase

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
NAMES = {
    "short": "svc",
    "cut-to-dash": "a" * 62 + "-b",
    "63": "n" * 63,
    "253": ("x" * 62 + ".") * 4 + "y",
    "dot-41": "d" * 40 + "." + "e" * 159,
    "dot-63": "d" * 62 + "." + "e" * 137,
    "digit-first": "1st.model",
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_child_names_and_label_values_are_valid_for_every_crd_name(name: str) -> None:
    assert len(name) <= 253
    for suffix in ("", "-canary", "-stable", "-r7", "-train"):
        derived = child_name(name, suffix)
        assert DNS_1035.match(derived) and derived.endswith(suffix), derived
    assert LABEL_VALUE.match(label_value(name))
    if DNS_1035.match(name):
        assert child_name(name) == name and label_value(name) == name  # unchanged where valid


def test_different_names_never_share_a_child() -> None:
    long = "a" * 100
    assert child_name(long) != child_name(long + "b")
    assert label_value(long) != label_value(long + "b")
    assert child_name("a.b") != child_name("a-b")


def _workload_children(name: str) -> list[dict[str, Any]]:
    spec = {"model": {"preset": "tiny"}, "resources": {"nodes": 2}}
    res = Resource("TrainingRun", name, "ns", "uid-1", 1, spec, {})
    [apply] = reconcile(res, parse(res), Observed(tracking_uri="http://m"), NOW).actions
    assert isinstance(apply, ApplyChildren)
    return apply.objects


def _inference_children(name: str) -> list[dict[str, Any]]:
    spec_ = {"model": {"mlflow": {"name": "tiny", "version": "1"}}}
    isvc = Resource("InferenceService", name, "ns", "uid-2", 1, spec_, {})
    parsed = InferenceServiceSpec.model_validate(spec_)
    plan = plan_inference(isvc, parsed, InferenceObserved(model_uri="models:/tiny/1"), NOW)
    scaling = Autoscaling(min_replicas=1, max_replicas=2)
    return [
        *plan.apply,
        service(isvc, 8000),
        role_service(isvc, STABLE, 8000),
        role_service(isvc, CANARY, 8000),
        pod_disruption_budget(isvc),
        horizontal_pod_autoscaler(isvc, scaling),
    ]


def _slurm_inference_children(name: str) -> list[dict[str, Any]]:
    spec_ = {"backend": "slurm", "model": {"mlflow": {"name": "tiny", "version": "1"}}}
    isvc = Resource("InferenceService", name, "ns", "uid-3", 1, spec_, {})
    parsed = InferenceServiceSpec.model_validate(spec_)
    first = plan_slurm_service(isvc, parsed, SlurmObserved("models:/tiny/1"), NOW)
    isvc = replace(isvc, status=first.plan.status)
    replica = Replica(1, 0, 0, 11, SlurmPhase.RUNNING, "node1", 8000, True, "10.0.0.7")
    ready = SlurmObserved("models:/tiny/1", replicas=[replica])
    return plan_slurm_service(isvc, parsed, ready, NOW).plan.apply


RENDERERS = {
    "workload": _workload_children,
    "inference": _inference_children,
    "inference-slurm": _slurm_inference_children,
}


def _labels(obj: dict[str, Any]) -> list[str]:
    found = list(obj["metadata"].get("labels", {}).values())
    spec = obj.get("spec") or {}
    found += list((spec.get("selector") or {}).values() if obj["kind"] == "Service" else [])
    template = (spec.get("template") or {}).get("metadata") or {}
    return found + list((template.get("labels") or {}).values())


@pytest.mark.parametrize("render", RENDERERS.values(), ids=RENDERERS.keys())
@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_rendered_children_have_valid_names_and_labels(render: Any, name: str) -> None:
    children = render(name)
    assert children
    for obj in children:
        assert DNS_1035.match(obj["metadata"]["name"]), obj["metadata"]["name"]
        for value in _labels(obj):
            assert LABEL_VALUE.match(value), (obj["kind"], value)
    assert LABEL_VALUE.match(selector(name).split("=", 1)[1])


# The kinds a bare control plane knows (no KEDA, no Gateway API).
BUILT_IN = {"ConfigMap", "Job", "Service", "Deployment", "PodDisruptionBudget"}
BUILT_IN |= {"HorizontalPodAutoscaler", "EndpointSlice"}


@pytest.mark.slow
@pytest.mark.parametrize("render", RENDERERS.values(), ids=RENDERERS.keys())
def test_the_api_server_accepts_the_children_of_every_crd_name(
    render: Any, kube_cluster: Any, kube_namespace: str
) -> None:
    objects = []
    for name in NAMES.values():
        for obj in render(name):
            if obj["kind"] in BUILT_IN:
                obj["metadata"]["namespace"] = kube_namespace
                obj["metadata"].pop("ownerReferences", None)  # no such owner in this namespace
                objects.append(obj)
    listing = {"apiVersion": "v1", "kind": "List", "items": objects}
    kube_cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "-f", "-", stdin=json.dumps(listing)
    )
