"""The Kubernetes API calls the operator makes (thin, no logic).

`Kube` is the typed client the workload controller uses (Jobs, Services, our custom
resources and their status); `DynamicKube` applies and lists children of any kind
(Deployment, Service, PodDisruptionBudget, HPA, KEDA ScaledObject, EndpointSlice,
HTTPRoute) for the InferenceService controller. Both apply server-side under the
operator's field manager, so the operator owns exactly the fields it renders.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from infinitecontext.crds.models import GROUP, VERSION, Kind

FIELD_MANAGER = "infinitecontext-operator"
APPLY = "application/apply-patch+yaml"
REQUEST_TIMEOUT = (10, 30)
"""(connect, read) seconds of every API call: a hung call must not hold an object's
lock (and so its passes) for ever; it fails, and the pass is retried."""
log = logging.getLogger(__name__)


class Kube:
    """Typed-client calls, each returning plain dicts (what the pure code takes)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply under our field manager (force: we own these fields)."""
        meta = obj["metadata"]
        calls = {
            "Job": self.batch.patch_namespaced_job,
            "Service": self.core.patch_namespaced_service,
            "ConfigMap": self.core.patch_namespaced_config_map,
        }
        calls[obj["kind"]](
            meta["name"],
            meta["namespace"],
            obj,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            _request_timeout=REQUEST_TIMEOUT,
        )

    def read_job(self, name: str, namespace: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.batch.read_namespaced_job(
                name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        )

    def read_custom(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                kind.plural,
                name,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )

    def patch_status(self, kind: Kind, name: str, namespace: str, status: dict[str, Any]) -> str:
        """A merge patch of `status` (None values remove fields); the new resourceVersion."""
        updated: Any = self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            kind.plural,
            name,
            {"status": status},
            _request_timeout=REQUEST_TIMEOUT,
        )
        return str(updated["metadata"]["resourceVersion"])


class DynamicKube:
    """The dynamic client (its API discovery is cached, so one per operator)."""

    def __init__(self, api_client: Any) -> None:
        self.api_client = api_client
        self._client: Any = None
        self._lock = threading.Lock()
        self._forbidden_crds: set[str] = set()  # warned about once

    @property
    def dynamic(self) -> Any:
        """Made on first use: making it reads the API server's discovery."""
        with self._lock:
            if self._client is None:
                self._client = _timed_dynamic_client(self.api_client)
            return self._client

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

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete if present (True: it was there). Unknown kinds (no KEDA) count as absent."""
        from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

        try:
            resource = self._resource(api_version, kind)
            resource.delete(name=name, namespace=namespace, propagation_policy="Background")
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
            if name not in self._forbidden_crds:
                self._forbidden_crds.add(name)
                log.warning("no right to read CRD %s: treating it as not installed", name)
            return False
        return crd is not None


def _timed_dynamic_client(api_client: Any) -> Any:
    """A dynamic client whose every request (API discovery included) has our timeout."""
    from kubernetes.dynamic import DynamicClient

    class TimedDynamicClient(DynamicClient):
        def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
            params.setdefault("_request_timeout", REQUEST_TIMEOUT)
            return super().request(method, path, body, **params)

    return TimedDynamicClient(api_client)


def _or_none(call: Any) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        response = call()
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    data: dict[str, Any] = json.loads(response.data)
    return data


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch from `old` to `new` at the top level of status (empty: no change)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new and k != "kopf"})
    return patch
