"""InferenceService end to end on the local control plane (kwok nodes run the pods).

The controller runs for real (tests/plugins/inference.py) against the real API server,
Deployment/ReplicaSet/HPA/garbage-collector controllers and scheduler; kwok marks
scheduled pods Running and Ready. A pod that cannot be scheduled (a nodeSelector no
node has) never becomes Ready, which is how a bad revision is made here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from plugins.prerequisites import require_module

from infinitecontext.crds.generate import ARGOCD_DIR
from infinitecontext.devtools.waiting import wait_for

pytestmark = pytest.mark.slow

GROUP_VERSION = "infinitecontext.dev/v1alpha1"
ISVC = "inferenceservice"


def manifest(name: str, version: str, **spec: Any) -> str:
    body = {
        "apiVersion": GROUP_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": {"mlflow": {"name": "tiny", "version": version}},
            "resources": {"cpu": "100m", "memory": "256Mi"},
            "rollout": {"progressDeadlineSeconds": 60},
            **spec,
        },
    }
    return yaml.safe_dump(body)


def argocd_health(obj: dict[str, Any]) -> str:
    """Argo CD's verdict on an object as the API server returned it (real Lua)."""
    lupa = require_module("lupa", "Lua for Python, in the dev extra")
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((ARGOCD_DIR / "inferenceservice-health.lua").read_text())
    return str(result["status"])


class Kube:
    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster, self.ns = cluster, namespace

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return str(self.cluster.kubectl(*args, "-n", self.ns, stdin=stdin))

    def apply(self, text: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=text)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            out = self.kubectl("get", kind, name, "-o", "json")
        except Exception:
            return None
        found: dict[str, Any] = json.loads(out)
        return found

    def patch(self, kind: str, name: str, patch: dict[str, Any], *extra: str) -> None:
        self.kubectl("patch", kind, name, "--type=merge", "-p", json.dumps(patch), *extra)

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
        """`wait_for`, showing the InferenceServices when it times out."""
        return wait_for(what, check, timeout, on_timeout=self.inference_services)

    def inference_services(self) -> str:
        return "InferenceServices:\n" + self.kubectl("get", ISVC, "-o", "yaml")

    def status(self, name: str) -> dict[str, Any]:
        obj = self.get(ISVC, name) or {}
        return dict(obj.get("status") or {})

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        conditions = self.status(name).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def revision_of(self, deployment: str) -> str | None:
        obj = self.get("deployment", deployment)
        if obj is None:
            return None
        labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
        return labels["infinitecontext.dev/revision"]

    def available(self, name: str) -> bool:
        status = self.status(name)
        return status.get("phase") == "Available" and status.get("observedGeneration") == (
            (self.get(ISVC, name) or {}).get("metadata", {}).get("generation")
        )

    def outcomes(self, name: str) -> dict[int, str]:
        return {r["revision"]: r["outcome"] for r in self.status(name).get("revisions") or []}


@pytest.fixture
def kube(inference_operator: Any, isvc_namespace: str) -> Kube:
    return Kube(inference_operator, isvc_namespace)


def test_create_is_available_and_deletion_collects_everything(kube: Kube) -> None:
    kube.apply(manifest("svc", "1", replicas=2))
    kube.wait("Available", lambda: kube.available("svc"))
    status = kube.status("svc")
    assert status["readyReplicas"] == 2 and status["replicas"] == 2
    assert status["url"] == f"http://svc.{kube.ns}.svc.cluster.local:8000"
    assert status["latestRolledOutModel"] == "models:/tiny/1"
    assert status["revisions"][0]["outcome"] == "Stable" and status["stableRevision"] == 1
    for type_ in ("Ready", "Available"):
        assert kube.condition("svc", type_)["status"] == "True"
    assert kube.condition("svc", "Progressing")["status"] == "False"
    deployment = kube.get("deployment", "svc")
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["icx", "serve", "models:/tiny/1"]
    service = kube.get("service", "svc")
    assert service is not None
    assert service["spec"]["selector"] == {"infinitecontext.dev/inferenceservice": "svc"}
    assert kube.get("poddisruptionbudget", "svc") is not None

    # kopf holds its finalizer until the poll timer has exited; with its default 60 s
    # re-check this took over a minute whenever the timer was mid-pass (operator/main.py).
    kube.kubectl("delete", ISVC, "svc", "--wait=true", "--timeout=30s")
    for kind in ("deployment", "service", "poddisruptionbudget"):
        kube.wait(f"{kind} collected", lambda kind=kind: kube.get(kind, "svc") is None)
    kube.wait("pods collected", lambda: "svc-" not in kube.kubectl("get", "pods", "-o", "name"))


def test_rolling_update_rolls_out_a_new_revision(kube: Kube) -> None:
    kube.apply(manifest("svc", "1", replicas=2))
    kube.wait("Available", lambda: kube.available("svc"))
    kube.patch(ISVC, "svc", {"spec": {"model": {"mlflow": {"version": "2"}}}})
    kube.wait("revision 2 stable", lambda: kube.outcomes("svc") == {1: "Superseded", 2: "Stable"})
    status = kube.status("svc")
    assert status["latestRolledOutModel"] == "models:/tiny/2"
    assert status["previousRolledOutModel"] == "models:/tiny/1"
    assert [r["modelVersion"] for r in status["revisions"]] == ["models:/tiny/1", "models:/tiny/2"]
    assert kube.revision_of("svc") == "2"
    kube.wait("Available", lambda: kube.available("svc"))

    # `icx rollback` sets the spec back to revision 1's; it rolls out as revision 3.
    icx = [sys.executable, "-m", "infinitecontext.cli", "rollback", "svc", "-n", kube.ns]
    kubeconfig = ["--kubeconfig", str(kube.cluster.kubeconfig)]
    out = subprocess.run([*icx, *kubeconfig], capture_output=True, text=True, check=True).stdout
    assert "revision 1 (models:/tiny/1)" in out
    kube.wait("revision 3 stable", lambda: kube.outcomes("svc").get(3) == "Stable")
    status = kube.status("svc")
    assert status["latestRolledOutModel"] == "models:/tiny/1"
    assert status["previousRolledOutModel"] == "models:/tiny/2"
    assert kube.revision_of("svc") == "3"


def evaluation(name: str, uri: str) -> tuple[str, dict[str, Any]]:
    obj = {
        "apiVersion": GROUP_VERSION,
        "kind": "Evaluation",
        "metadata": {"name": name},
        "spec": {"model": {"mlflow": {"name": "tiny"}}},
    }
    status = {
        "status": {
            "phase": "Succeeded",
            "inputModel": {"uri": uri},
            "results": {"passkeyAccuracy": 0.97, "passed": True},
        }
    }
    return yaml.safe_dump(obj), status


def test_canary_splits_waits_for_the_gate_and_is_promoted(kube: Kube) -> None:
    text, passed_v1 = evaluation("eval", "models:/tiny/1")
    kube.apply(text)
    kube.patch("evaluation", "eval", passed_v1, "--subresource=status")
    rollout = {
        "strategy": "Canary",
        "canaryPercent": 25,
        "steps": [25, 50],
        "stepIntervalSeconds": 1,
        "progressDeadlineSeconds": 60,
        "gate": {"evaluation": "eval"},
    }
    kube.apply(manifest("svc", "1", replicas=4, rollout=rollout))
    kube.wait("Available", lambda: kube.available("svc"))

    kube.apply(manifest("svc", "2", replicas=4, rollout=rollout))
    kube.wait(
        "the canary waits for the gate",
        lambda: kube.condition("svc", "Progressing").get("reason") == "WaitingForGate",
    )
    status = kube.status("svc")
    assert status["canaryRevision"] == 2 and status["canaryPercent"] == 50
    assert "evaluates models:/tiny/1" in kube.condition("svc", "Progressing")["message"]
    canary, stable = kube.get("deployment", "svc-canary"), kube.get("deployment", "svc")
    assert canary is not None and stable is not None
    assert canary["spec"]["replicas"] == 2 and stable["spec"]["replicas"] == 2
    assert kube.revision_of("svc-canary") == "2" and kube.revision_of("svc") == "1"
    assert kube.status("svc")["readyReplicas"] == 4  # both revisions behind one Service
    assert argocd_health(kube.get(ISVC, "svc") or {}) == "Progressing"

    _, passed_v2 = evaluation("eval", "models:/tiny/2")
    kube.patch("evaluation", "eval", passed_v2, "--subresource=status")
    kube.wait("promoted", lambda: kube.outcomes("svc") == {1: "Superseded", 2: "Stable"})
    kube.wait("canary removed", lambda: kube.get("deployment", "svc-canary") is None)
    assert kube.revision_of("svc") == "2"
    assert (kube.get("deployment", "svc") or {})["spec"]["replicas"] == 4
    kube.wait("Available", lambda: kube.available("svc"))
    assert argocd_health(kube.get(ISVC, "svc") or {}) == "Healthy"


def test_canary_whose_gate_fails_is_rolled_back(kube: Kube) -> None:
    text, passed_v1 = evaluation("eval", "models:/tiny/1")
    kube.apply(text)
    kube.patch("evaluation", "eval", passed_v1, "--subresource=status")
    rollout = {"strategy": "Canary", "canaryPercent": 50, "gate": {"evaluation": "eval"}}
    kube.apply(manifest("svc", "1", replicas=2, rollout=rollout))
    kube.wait("Available", lambda: kube.available("svc"))
    kube.apply(manifest("svc", "2", replicas=2, rollout=rollout))
    kube.wait("a canary", lambda: kube.get("deployment", "svc-canary"))
    failed = {"status": {"phase": "Failed", "inputModel": {"uri": "models:/tiny/2"}}}
    kube.patch("evaluation", "eval", failed, "--subresource=status")
    kube.wait(
        "GateFailed", lambda: kube.condition("svc", "RolledBack").get("reason") == "GateFailed"
    )
    kube.wait("canary removed", lambda: kube.get("deployment", "svc-canary") is None)
    assert kube.outcomes("svc") == {1: "Stable", 2: "RolledBack"}
    assert (kube.get("deployment", "svc") or {})["spec"]["replicas"] == 2
    assert argocd_health(kube.get(ISVC, "svc") or {}) == "Degraded"


def test_revision_that_never_becomes_ready_is_rolled_back(kube: Kube) -> None:
    rollout = {"progressDeadlineSeconds": 8}
    kube.apply(manifest("svc", "1", rollout=rollout))
    kube.wait("Available", lambda: kube.available("svc"))
    # No node has this label: revision 2's pod stays Pending, never Ready.
    unschedulable = {"nodeSelector": {"infinitecontext.dev/no-such-node": "true"}}
    kube.apply(manifest("svc", "2", rollout=rollout, kubernetes=unschedulable))
    kube.wait(
        "RolledBack=True",
        lambda: kube.condition("svc", "RolledBack").get("status") == "True",
        timeout=60,
    )
    rolled = kube.condition("svc", "RolledBack")
    assert rolled["reason"] == "ProgressDeadlineExceeded"
    assert kube.condition("svc", "Degraded")["status"] == "True"
    assert kube.outcomes("svc") == {1: "Stable", 2: "RolledBack"}
    assert kube.status("svc")["phase"] == "Degraded"
    assert argocd_health(kube.get(ISVC, "svc") or {}) == "Degraded"
    kube.wait("revision 1 back in the Deployment", lambda: kube.revision_of("svc") == "1")
    deployment = kube.get("deployment", "svc") or {}
    assert "nodeSelector" not in deployment["spec"]["template"]["spec"]
    events = kube.kubectl(
        "get", "events", "--field-selector", "reason=RolledBack", "-o", "jsonpath={.items[*].type}"
    )
    assert "Warning" in events
    kube.wait(
        "served by revision 1", lambda: kube.condition("svc", "Ready").get("status") == "True"
    )


def test_kubectl_scale_changes_the_deployment_replicas(kube: Kube) -> None:
    kube.apply(manifest("svc", "1", replicas=1))
    kube.wait("Available", lambda: kube.available("svc"))
    kube.kubectl("scale", ISVC, "svc", "--replicas=3")
    kube.wait(
        "Deployment at 3", lambda: (kube.get("deployment", "svc") or {})["spec"]["replicas"] == 3
    )
    kube.wait("3 ready", lambda: kube.status("svc").get("readyReplicas") == 3)
    scale = json.loads(
        kube.cluster.kubectl(
            "get",
            "--raw",
            f"/apis/{GROUP_VERSION}/namespaces/{kube.ns}/inferenceservices/svc/scale",
        )
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "infinitecontext.dev/inferenceservice=svc"


def test_hpa_targets_the_scale_subresource(kube: Kube) -> None:
    autoscaling = {
        "enabled": True,
        "engine": "hpa",
        "minReplicas": 1,
        "maxReplicas": 3,
        "metric": "vllm:num_requests_waiting",
        "target": 5,
    }
    kube.apply(manifest("svc", "1", autoscaling=autoscaling))
    kube.wait("Available", lambda: kube.available("svc"))
    hpa = kube.wait("HPA", lambda: kube.get("hpa", "svc"))
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": GROUP_VERSION,
        "kind": "InferenceService",
        "name": "svc",
    }
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_waiting"

    def able_to_scale() -> dict[str, Any] | None:
        conditions = ((kube.get("hpa", "svc") or {}).get("status") or {}).get("conditions") or []
        found = next((c for c in conditions if c["type"] == "AbleToScale"), None)
        return found if found and found["status"] == "True" else None

    # The HPA controller read the InferenceService's scale subresource (no metrics server
    # runs here, so it cannot compute a recommendation: ScalingActive stays False). On a
    # fresh plane its discovery learns the new CRD's kind within a resync or two.
    condition = kube.wait("the HPA controller to read the scale", able_to_scale, timeout=150)
    assert condition["reason"] == "SucceededGetScale"

    kube.patch(ISVC, "svc", {"spec": {"autoscaling": {"enabled": False}}})
    kube.wait("HPA removed", lambda: kube.get("hpa", "svc") is None)


def schemaless_crd(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    """A third-party CRD reduced to what the API server needs to store its objects (the
    real ones carry full schemas); installed only for one test."""
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


KEDA_CRD = schemaless_crd("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")
HTTPROUTE_CRD = schemaless_crd("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
# *.k8s.io groups are protected: the real Gateway API CRDs carry this approval.
HTTPROUTE_CRD["metadata"]["annotations"] = {
    "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"
}


def test_keda_scaled_object_when_keda_is_installed(kube: Kube) -> None:
    cluster = kube.cluster
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(KEDA_CRD))
    try:
        cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "crd/scaledobjects.keda.sh"
        )
        autoscaling = {"enabled": True, "metric": "vllm:kv_cache_usage_perc", "target": 0.75}
        kube.apply(manifest("svc", "1", autoscaling=autoscaling))
        scaled = kube.wait("ScaledObject", lambda: kube.get("scaledobject.keda.sh", "svc"))
        assert scaled["spec"]["scaleTargetRef"]["kind"] == "InferenceService"
        trigger = scaled["spec"]["triggers"][0]
        assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "0.75"
        assert "vllm:kv_cache_usage_perc" in trigger["metadata"]["query"]
        assert kube.get("hpa", "svc") is None
    finally:
        cluster.kubectl("delete", "crd", "scaledobjects.keda.sh", "--wait=false")


def test_canary_weights_an_httproute_when_the_gateway_api_is_installed(kube: Kube) -> None:
    cluster = kube.cluster
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(HTTPROUTE_CRD))
    try:
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/httproutes.gateway.networking.k8s.io",
        )
        rollout = {
            "strategy": "Canary",
            "canaryPercent": 25,
            "stepIntervalSeconds": 3600,  # stay at the first step
            "gateway": "public",
        }
        kube.apply(manifest("svc", "1", replicas=4, rollout=rollout))
        kube.wait("Available", lambda: kube.available("svc"))
        kube.apply(manifest("svc", "2", replicas=4, rollout=rollout))

        def weights() -> dict[str, int] | None:
            route = kube.get("httproute.gateway.networking.k8s.io", "svc")
            if route is None:
                return None
            backends = route["spec"]["rules"][0]["backendRefs"]
            found = {b["name"]: b["weight"] for b in backends}
            return found if len(found) == 2 else None

        assert kube.wait("canary weights", weights) == {"svc-stable": 75, "svc-canary": 25}
        canary_service = kube.get("service", "svc-canary") or {}
        assert canary_service["spec"]["selector"]["infinitecontext.dev/role"] == "canary"
        assert (kube.get("deployment", "svc-canary") or {})["spec"]["replicas"] == 1
    finally:
        cluster.kubectl("delete", "crd", "httproutes.gateway.networking.k8s.io", "--wait=false")
