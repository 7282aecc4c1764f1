"""The API server itself: CRD schema validation, and the RBAC we ship (deploy/rbac.yaml)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from infinitecontext.devtools.waiting import wait_for

pytestmark = pytest.mark.slow


def widget_crd(group: str) -> dict:
    """A namespaced CRD with a structural schema: spec.replicas >= 1, spec.size an enum."""
    spec_schema = {
        "type": "object",
        "required": ["replicas"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 1},
            "size": {"type": "string", "enum": ["small", "large"]},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec_schema, "status": {"type": "object"}},
                        }
                    },
                }
            ],
        },
    }


def test_crd_schema_rejects_an_invalid_object(kube_cluster, kube_namespace):
    group = f"t{uuid.uuid4().hex[:8]}.icx.example.com"
    crd = widget_crd(group)
    kube_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(crd))
    try:
        kube_cluster.kubectl(
            "wait", "--for=condition=Established", "--timeout=30s", f"crd/widgets.{group}"
        )
        custom = client.CustomObjectsApi(kube_cluster.api_client())

        def widget(spec: dict) -> dict:
            name = f"w-{uuid.uuid4().hex[:6]}"
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": spec,
            }

        created = _create_when_served(
            custom, group, kube_namespace, widget({"replicas": 2, "size": "small"})
        )
        assert created["spec"] == {"replicas": 2, "size": "small"}

        with pytest.raises(ApiException) as rejected:
            custom.create_namespaced_custom_object(
                group, "v1", kube_namespace, "widgets", widget({"replicas": 0, "size": "huge"})
            )
        assert rejected.value.status == 422
        message = json.loads(str(rejected.value.body))["message"]
        expected = "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than"
        assert f"{expected} or equal to 1" in message
        assert 'spec.size: Unsupported value: "huge"' in message
    finally:
        kube_cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")


def _create_when_served(
    custom: client.CustomObjectsApi, group: str, namespace: str, body: dict
) -> dict:
    # Established can precede discovery of the new resource by a moment.
    wait_for(
        f"widgets.{group} to be served",
        lambda: custom.list_namespaced_custom_object(group, "v1", namespace, "widgets"),
        timeout_s=15,
        every_s=0.2,
        retry_on=(ApiException,),
    )
    created: dict = custom.create_namespaced_custom_object(  # type: ignore[assignment]
        group, "v1", namespace, "widgets", body
    )
    return created


REPO = Path(__file__).resolve().parents[1]


def shipped_rbac_for(namespace: str, account: str) -> list[dict]:
    """deploy/rbac.yaml's roles as shipped, renamed for this test and bound to `account`."""
    documents = [d for d in yaml.safe_load_all((REPO / "deploy" / "rbac.yaml").read_text()) if d]
    for doc in documents:
        doc["metadata"]["name"] = f"{doc['metadata']['name']}-{namespace}"
        if doc["kind"].endswith("Binding"):
            doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{namespace}"
            doc["subjects"] = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    return documents


def test_operator_account_is_refused_what_the_shipped_rbac_does_not_grant(
    kube_cluster, kube_namespace
):
    documents = shipped_rbac_for(kube_namespace, "icx-operator")
    kube_cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    try:
        sa_config = kube_cluster.service_account_kubeconfig(kube_namespace, "icx-operator")
        core = client.CoreV1Api(kube_cluster.api_client(sa_config))

        assert core.list_namespace().items  # granted: kopf follows namespaces
        with pytest.raises(ApiException) as refused:
            core.list_namespaced_secret("kube-system")
        assert refused.value.status == 403
        user = f"system:serviceaccount:{kube_namespace}:icx-operator"
        message = json.loads(str(refused.value.body))["message"]
        assert f'User "{user}" cannot list resource "secrets"' in message
        rbac = client.RbacAuthorizationV1Api(kube_cluster.api_client(sa_config))
        with pytest.raises(ApiException) as escalation:
            rbac.create_cluster_role_binding(
                client.V1ClusterRoleBinding(
                    metadata=client.V1ObjectMeta(name=f"escalate-{kube_namespace}"),
                    role_ref=client.V1RoleRef(
                        api_group="rbac.authorization.k8s.io",
                        kind="ClusterRole",
                        name="cluster-admin",
                    ),
                    subjects=[
                        client.RbacV1Subject(
                            kind="ServiceAccount", name="icx-operator", namespace=kube_namespace
                        )
                    ],
                )
            )
        assert escalation.value.status == 403
    finally:
        for doc in documents:
            kube_cluster.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--wait=false")
