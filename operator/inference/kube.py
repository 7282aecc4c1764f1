"""`icx rollback`: set an InferenceService's spec back to a recorded revision, as a
client of the API server (the operator then rolls it out like any spec change)."""

from __future__ import annotations

from typing import Any

from infinitecontext.crds.models import GROUP, INFERENCE_SERVICE, VERSION, Revision
from infinitecontext.operator.inference.planner import rollback_patch, rollback_target


def rollback_service(
    name: str, namespace: str, to_revision: int | None, kubeconfig: str | None = None
) -> Revision:
    """Patch the spec back to `to_revision` (default: see `rollback_target`)."""
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
