"""What a CR author may choose, and how the pods the operator creates are confined.

A namespace user who may create our custom resources gets pods created for them by the
operator, with the operator's rights. So that they gain nothing their namespace does
not give them:

- every pod runs restricted (Pod Security Standards' `restricted` profile: non-root,
  all capabilities dropped, RuntimeDefault seccomp, no privilege escalation) and gets
  no ServiceAccount token unless the spec asks for one;
- the cluster admin's `TenancyPolicy` (a YAML file, mounted from a ConfigMap, given to
  `icx operator run --policy FILE`) lists the ServiceAccounts, priority classes, image
  prefixes, node selectors and MLflow tracking URIs a spec may name. A spec that names
  anything else is `Ready=False` with reason `Forbidden` (docs/security.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from infinitecontext.crds.models import (
    Backend,
    InferenceServiceSpec,
    KubernetesOptions,
    SlurmOptions,
    WorkloadSpec,
)

AnySpec = TypeVar("AnySpec", WorkloadSpec, InferenceServiceSpec)
FORBIDDEN = "Forbidden"
# The taints that keep workloads off control-plane nodes: tolerating them needs the admin.
CONTROL_PLANE_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
# vLLM options a spec's `server.extraArgs` may not pass: they run code from the model
# repository, change where or whether the server authenticates, or load other files.
DENIED_SERVER_ARGS = (
    "--trust-remote-code",
    "--api-key",
    "--host",
    "--ssl-keyfile",
    "--ssl-certfile",
    "--ssl-ca-certs",
    "--allowed-local-media-path",
    "--middleware",
    "--chat-template",
    "--tokenizer",
    "--download-dir",
    "--config",
    "--served-model-name",
    "--port",
)


class TenancyPolicy(BaseModel):
    """The cluster admin's policy of what specs may choose (camelCase keys in the file)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    service_accounts: list[str] = Field(default_factory=list)
    """ServiceAccounts a spec may run its pods as; unset `serviceAccountName` (the
    namespace's `default`) is always allowed."""
    priority_classes: list[str] = Field(default_factory=list)
    """PriorityClasses a spec may name; none when empty."""
    image_prefixes: list[str] = Field(default_factory=list)
    """Images a spec may name start with one of these; any image when empty."""
    node_selectors: list[str] | None = None
    """`key` (any value) or `key=value` entries a spec's nodeSelector may use; any when
    unset, none when empty."""
    toleration_keys: list[str] = Field(default_factory=list)
    """Taint keys a spec may tolerate beyond the default rule (everything but the
    control-plane taints and key-less tolerations, which tolerate every taint)."""
    slurm_accounts: dict[str, str] = Field(default_factory=dict)
    """Namespace → the SLURM account its jobs are charged to; a spec there may name no
    other. In namespaces not listed, the spec's `slurm.account` (if any) is used."""
    require_api_key: bool = False
    """InferenceServices must set `server.apiKey` (docs/security.md)."""
    tracking_uris: list[str] = Field(default_factory=list)
    """MLflow tracking URIs a spec's `mlflow.trackingUri` may name (the operator adds
    its own `--tracking-uri`: `with_tracking_uri`)."""

    @classmethod
    def load(cls, path: str) -> TenancyPolicy:
        """The policy in a YAML file (empty: the defaults)."""
        return cls.model_validate(yaml.safe_load(Path(path).read_text()) or {})

    def with_tracking_uri(self, uri: str) -> TenancyPolicy:
        """This policy, allowing the operator's own tracking URI too."""
        return self.model_copy(update={"tracking_uris": [uri, *self.tracking_uris]})


class ForbiddenSpec(ValueError):
    """The spec names something the admin's policy does not allow."""


def admit(spec: AnySpec, policy: TenancyPolicy, namespace: str) -> AnySpec:
    """The spec as the operator will run it in `namespace` (its SLURM account set by
    the policy); ForbiddenSpec names the first field the policy does not allow."""
    if spec.kubernetes is not None:
        _check_kubernetes(spec.kubernetes, policy)
    requested = spec.mlflow.tracking_uri
    allowed = {_normal(u) for u in policy.tracking_uris if u}
    if requested and _normal(requested) not in allowed:
        raise ForbiddenSpec(
            f"spec.mlflow.trackingUri {requested!r} is not the operator's tracking URI nor "
            "in the admin's allowlist (trackingUris)"
        )
    if isinstance(spec, InferenceServiceSpec):
        check_server_args(spec.server.extra_args)
        if policy.require_api_key and spec.server.api_key is None:
            raise ForbiddenSpec("spec.server.apiKey is required by the admin's policy")
    return _with_slurm_account(spec, policy.slurm_accounts.get(namespace))


def _with_slurm_account(spec: AnySpec, account: str | None) -> AnySpec:
    if account is None or spec.backend != Backend.SLURM:
        return spec
    options = spec.slurm or SlurmOptions()
    if options.account not in (None, account):
        raise ForbiddenSpec(
            f"spec.slurm.account {options.account!r}: this namespace's jobs are charged to "
            f"{account!r}"
        )
    slurm = options.model_copy(update={"account": account})
    return spec.model_copy(update={"slurm": slurm})


def check_server_args(extra_args: list[str]) -> None:
    """Refuse a denied vLLM option however vLLM would read it: with `_` for `-`, or
    abbreviated (its argument parser takes any unambiguous prefix)."""
    for arg in extra_args:
        option = arg.split("=", 1)[0].replace("_", "-")
        if len(option) > 2 and any(denied.startswith(option) for denied in DENIED_SERVER_ARGS):
            raise ForbiddenSpec(f"spec.server.extraArgs: {arg.split('=', 1)[0]} may not be passed")


def _check_kubernetes(options: KubernetesOptions, policy: TenancyPolicy) -> None:
    where = "spec.kubernetes"
    account = options.service_account_name
    if account not in (None, "default") and account not in policy.service_accounts:
        raise ForbiddenSpec(f"{where}.serviceAccountName {account!r} is not allowed")
    priority = options.priority_class_name
    if priority is not None and priority not in policy.priority_classes:
        raise ForbiddenSpec(f"{where}.priorityClassName {priority!r} is not allowed")
    if policy.image_prefixes and not options.image.startswith(tuple(policy.image_prefixes)):
        raise ForbiddenSpec(f"{where}.image {options.image!r} is not from an allowed registry")
    if policy.node_selectors is not None:
        allowed = set(policy.node_selectors)
        for key, value in options.node_selector.items():
            if key not in allowed and f"{key}={value}" not in allowed:
                raise ForbiddenSpec(f"{where}.nodeSelector {key}={value} is not allowed")
    for toleration in options.tolerations:
        key = toleration.key or ""
        if key in policy.toleration_keys:
            continue
        if not key or key in CONTROL_PLANE_TAINTS:
            shown = key or "(every taint)"
            raise ForbiddenSpec(f"{where}.tolerations: tolerating {shown} is not allowed")


def _normal(uri: str) -> str:
    return uri.rstrip("/")


# ---------------------------------------------------------------- pod confinement


RUN_AS_GROUP_FS = 65532
"""The images' user (Dockerfile: uid 65532): owns what a volume's pods write."""


def pod_security(options: KubernetesOptions) -> dict[str, Any]:
    """The pod-level fields that confine every pod the operator creates."""
    return {
        "automountServiceAccountToken": options.automount_service_account_token,
        "securityContext": {
            "runAsNonRoot": True,
            "fsGroup": RUN_AS_GROUP_FS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def container_security() -> dict[str, Any]:
    """A container's securityContext under the `restricted` Pod Security Standard."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
