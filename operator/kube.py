"""The few Kubernetes API calls the operator makes (thin, no logic)."""

from __future__ import annotations

import json
from typing import Any

from infinitecontext.crds.models import GROUP, VERSION, Kind

FIELD_MANAGER = "infinitecontext-operator"
APPLY = "application/apply-patch+yaml"


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
        )

    def read_job(self, name: str, namespace: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        )

    def read_custom(self, kind: Kind, name: str, namespace: str) -> dict[str, Any] | None:
        return _or_none(
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, kind.plural, name, _preload_content=False
            )
        )

    def patch_status(self, kind: Kind, name: str, namespace: str, status: dict[str, Any]) -> str:
        """A merge patch of `status` (None values remove fields); the new resourceVersion."""
        updated: Any = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, kind.plural, name, {"status": status}
        )
        return str(updated["metadata"]["resourceVersion"])


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
