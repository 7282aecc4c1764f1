"""The Kubernetes calls of the InferenceService controller (thin, no decisions).

Children of any kind (Deployment, Service, PodDisruptionBudget, HPA, KEDA ScaledObject,
EndpointSlice) go through the dynamic client's server-side apply under the operator's
field manager, so the operator owns exactly the fields it renders.
"""

from __future__ import annotations

import logging
from typing import Any

from infinitecontext.crds.models import GROUP, INFERENCE_SERVICE, VERSION, Revision
from infinitecontext.operator.inference.children import ChildRef
from infinitecontext.operator.inference.planner import rollback_patch, rollback_target
from infinitecontext.operator.kube import FIELD_MANAGER

KEDA_CRD = "scaledobjects.keda.sh"
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
log = logging.getLogger(__name__)
_FORBIDDEN_CRDS: set[str] = set()  # warned about once per process


class InferenceKube:
    def __init__(self, api_client: Any) -> None:
        from kubernetes.dynamic import DynamicClient

        self.dynamic = DynamicClient(api_client)

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any]) -> None:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        self.dynamic.server_side_apply(
            resource,
            body=obj,
            namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
        )

    def delete(self, ref: ChildRef, namespace: str) -> bool:
        """Delete if present (True: it was there). Unknown kinds (no KEDA) count as absent."""
        from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

        try:
            resource = self._resource(ref.api_version, ref.kind)
            resource.delete(name=ref.name, namespace=namespace, propagation_policy="Background")
        except (NotFoundError, ResourceNotFoundError):
            return False
        return True

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        resource = self._resource(api_version, kind)
        found = resource.get(namespace=namespace, label_selector=label_selector)
        items: list[dict[str, Any]] = found.to_dict().get("items") or []
        return items

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> Any:
        from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

        try:
            resource = self._resource(api_version, kind)
            return resource.get(name=name, namespace=namespace).to_dict()
        except (NotFoundError, ResourceNotFoundError):
            return None

    def crd_installed(self, name: str) -> bool:
        """Whether CRD `name` exists. Without the right to read CRDs (a namespaced
        operator under deploy/namespaced/'s Role) it counts as not installed."""
        from kubernetes.dynamic.exceptions import ForbiddenError

        try:
            crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name, None)
        except ForbiddenError:
            if name not in _FORBIDDEN_CRDS:
                _FORBIDDEN_CRDS.add(name)
                log.warning("no right to read CRD %s: treating it as not installed", name)
            return False
        return crd is not None

    def keda_installed(self) -> bool:
        return self.crd_installed(KEDA_CRD)

    def invalidate_discovery(self) -> None:
        """Forget cached API kinds (a CRD such as KEDA's was installed meanwhile)."""
        self.dynamic.resources.invalidate_cache()


def rollback_service(
    name: str, namespace: str, to_revision: int | None, kubeconfig: str | None = None
) -> Revision:
    """`icx rollback`: set the InferenceService's spec back to a recorded revision (a
    declarative change the operator then rolls out, like any spec change)."""
    from kubernetes import client, config

    api = (
        config.new_client_from_config(config_file=kubeconfig)
        if kubeconfig
        else _default_api_client()
    )
    custom = client.CustomObjectsApi(api)
    plural = INFERENCE_SERVICE.plural
    obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    target = rollback_target(obj.get("status") or {}, to_revision)
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, rollback_patch(target)
    )
    return target


def _default_api_client() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()
