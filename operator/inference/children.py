"""InferenceService children on Kubernetes, rendered as plain API objects (pure).

The Deployment runs the server image's entrypoint (`icx serve`, server_image/) with its
probes, drain and model cache; the Service and PodDisruptionBudget select every pod of
the InferenceService (stable and canary Deployments alike); the HPA or KEDA
ScaledObject scales the InferenceService's own scale subresource. `planner.py`
decides which of them a pass applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infinitecontext.crds.models import (
    API_VERSION,
    Autoscaling,
    Revision,
    ServedTemplate,
    ServerKubernetesOptions,
)
from infinitecontext.operator.inference.serve import PRESTOP_SLEEP_SECONDS, serve_argv
from infinitecontext.operator.names import child_name, label_value
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.tenancy import container_security
from infinitecontext.operator.workloads.jobs import pod_placement

KIND = "InferenceService"
LABEL_INFERENCE_SERVICE = "infinitecontext.dev/inferenceservice"
LABEL_REVISION = "infinitecontext.dev/revision"
LABEL_ROLE = "infinitecontext.dev/role"
STABLE, CANARY = "stable", "canary"
MODEL_CACHE = "/models"
API_KEY_ENV = "VLLM_API_KEY"
"""vLLM requires `Authorization: Bearer <it>` on /v1/* when this is set."""


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


def selector(name: str) -> str:
    """The label selector of the children of InferenceService `name`."""
    return f"{LABEL_INFERENCE_SERVICE}={label_value(name)}"


def service_name(name: str, role: str = "") -> str:
    """The name of InferenceService `name`'s Service, Deployment and other children
    (`role`: the stable or canary Deployment and Service)."""
    return child_name(name, f"-{role}" if role else "")


def service_url(name: str, namespace: str, port: int) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local:{port}"


def quantity(value: float) -> str:
    """A Kubernetes quantity for an HPA target (`5`, `800m`)."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def owner_reference(isvc: Resource) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": isvc.name,
        "uid": isvc.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(isvc: Resource, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": isvc.namespace,
        "labels": {LABEL_INFERENCE_SERVICE: label_value(isvc.name), **(labels or {})},
        "ownerReferences": [owner_reference(isvc)],
    }


def server_command(name: str, template: ServedTemplate) -> list[str]:
    """`icx serve` as the server image runs it."""
    server = template.server
    gpus = template.resources.gpus_per_node
    return serve_argv(template.model_uri, name, server, gpus, server.port, MODEL_CACHE)


def _container(name: str, template: ServedTemplate, tracking_uri: str) -> dict[str, Any]:
    options = template.kubernetes or ServerKubernetesOptions()
    res = template.resources
    limits: dict[str, Any] = {"memory": res.memory}
    if res.gpus_per_node:
        limits["nvidia.com/gpu"] = res.gpus_per_node
    env: list[dict[str, Any]] = [{"name": "ICX_MODEL_CACHE", "value": MODEL_CACHE}]
    if tracking_uri:
        env.append({"name": "MLFLOW_TRACKING_URI", "value": tracking_uri})
    api_key = template.server.api_key
    if api_key is not None:  # from the Secret at start: never in the pod spec itself
        secret = {"secretKeyRef": {"name": api_key.name, "key": api_key.key}}
        env.append({"name": API_KEY_ENV, "valueFrom": secret})
    env += [
        {"name": v.name, "valueFrom": {"secretKeyRef": v.secret_key_ref.model_dump()}}
        for v in template.secret_env or []
    ]
    http = {"path": "/health", "port": "http"}
    return {
        "name": "server",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": server_command(name, template),
        "ports": [{"name": "http", "containerPort": template.server.port, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": res.cpu, "memory": res.memory}, "limits": limits},
        # Download + load can take long: the startup probe holds liveness off meanwhile.
        "startupProbe": {"httpGet": http, "periodSeconds": 10, "failureThreshold": 180},
        "livenessProbe": {"httpGet": http, "periodSeconds": 15, "failureThreshold": 4},
        # /ready runs a one-token completion through the whole server (server_image).
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 15,
            "failureThreshold": 3,
        },
        # Endpoints drop the pod before vLLM gets SIGTERM and drains.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SLEEP_SECONDS}}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "model-cache", "mountPath": MODEL_CACHE},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    }


def deployment(
    isvc: Resource,
    role: str,
    revision: Revision,
    replicas: int,
    deadline_seconds: int,
    tracking_uri: str,
) -> dict[str, Any]:
    assert revision.template is not None
    template = revision.template
    options = template.kubernetes or ServerKubernetesOptions()
    name = service_name(isvc.name, "" if role == STABLE else CANARY)
    match = {LABEL_INFERENCE_SERVICE: label_value(isvc.name), LABEL_ROLE: role}
    pod_labels = {**match, LABEL_REVISION: str(revision.revision)}
    pod_spec: dict[str, Any] = {
        "containers": [_container(isvc.name, template, tracking_uri)],
        "terminationGracePeriodSeconds": template.server.termination_grace_period_seconds,
        "volumes": [
            {"name": "model-cache", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        ],
    }
    pod_spec.update(pod_placement(options))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(isvc, name, {LABEL_ROLE: role}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "progressDeadlineSeconds": deadline_seconds,
            "revisionHistoryLimit": 3,
            # Never below the running capacity: a new pod is ready before an old one goes.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def service(isvc: Resource, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(isvc, service_name(isvc.name)),
        "spec": {
            "selector": {LABEL_INFERENCE_SERVICE: label_value(isvc.name)},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pod_disruption_budget(isvc: Resource) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(isvc, service_name(isvc.name)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {LABEL_INFERENCE_SERVICE: label_value(isvc.name)}},
        },
    }


def _scale_target(isvc: Resource) -> dict[str, str]:
    """The InferenceService itself (its scale subresource), on either backend."""
    return {"apiVersion": API_VERSION, "kind": KIND, "name": isvc.name}


def horizontal_pod_autoscaler(isvc: Resource, scaling: Autoscaling) -> dict[str, Any]:
    stabilization = scaling.scale_down_stabilization_seconds
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(isvc, service_name(isvc.name)),
        "spec": {
            "scaleTargetRef": _scale_target(isvc),
            "minReplicas": max(scaling.min_replicas, 1),
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": scaling.metric},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": quantity(scaling.target),
                        },
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": stabilization}},
        },
    }


def prometheus_query(isvc: Resource, metric: str) -> str:
    """The metric summed over this service's pods (stable and canary Deployments)."""
    stable, canary = service_name(isvc.name), service_name(isvc.name, CANARY)
    pods = f"({stable}|{canary})-[a-z0-9]+-[a-z0-9]+"
    return f'sum({metric}{{namespace="{isvc.namespace}",pod=~"{pods}"}})'


def scaled_object(isvc: Resource, scaling: Autoscaling, prometheus_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(isvc, service_name(isvc.name)),
        "spec": {
            "scaleTargetRef": _scale_target(isvc),
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds
                        }
                    }
                }
            },
            # KEDA divides the sum by the replicas (AverageValue): target per replica.
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "AverageValue",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": prometheus_query(isvc, scaling.metric),
                        "threshold": str(scaling.target),
                    },
                }
            ],
        },
    }


HPA_REF = ("autoscaling/v2", "HorizontalPodAutoscaler")
KEDA_REF = ("keda.sh/v1alpha1", "ScaledObject")


def autoscaler_children(
    isvc: Resource, scaling: Autoscaling, keda: bool, prometheus_url: str
) -> tuple[list[dict[str, Any]], list[ChildRef]]:
    """The HPA or the ScaledObject to apply, and the one(s) to delete (`keda`: KEDA's
    CRD is installed)."""
    use_keda = scaling.engine == "keda" or (scaling.engine == "auto" and keda)
    hpa_ref, keda_ref = (
        ChildRef(*HPA_REF, service_name(isvc.name)),
        ChildRef(*KEDA_REF, service_name(isvc.name)),
    )
    if not scaling.enabled:
        return [], [hpa_ref, *([keda_ref] if keda else [])]
    if use_keda:
        return [scaled_object(isvc, scaling, prometheus_url)], [hpa_ref]
    return [horizontal_pod_autoscaler(isvc, scaling)], [keda_ref] if keda else []


HTTPROUTE_REF = ("gateway.networking.k8s.io/v1", "HTTPRoute")


def role_service(isvc: Resource, role: str, port: int) -> dict[str, Any]:
    """A Service for one role's pods (the HTTPRoute's backends)."""
    obj = service(isvc, port)
    obj["metadata"]["name"] = service_name(isvc.name, role)
    obj["spec"]["selector"] = {LABEL_INFERENCE_SERVICE: label_value(isvc.name), LABEL_ROLE: role}
    return obj


def http_route(isvc: Resource, gateway: str, port: int, canary_percent: int) -> dict[str, Any]:
    """Traffic through `gateway`: all to the stable pods, or `canary_percent` to the canary."""
    namespace, _, name = gateway.rpartition("/")
    parent: dict[str, Any] = {"name": name}
    if namespace:
        parent["namespace"] = namespace
    stable, canary = service_name(isvc.name, STABLE), service_name(isvc.name, CANARY)
    backends = [{"name": stable, "port": port, "weight": 100 - canary_percent}]
    if canary_percent:
        backends.append({"name": canary, "port": port, "weight": canary_percent})
    return {
        "apiVersion": HTTPROUTE_REF[0],
        "kind": HTTPROUTE_REF[1],
        "metadata": _metadata(isvc, service_name(isvc.name)),
        "spec": {"parentRefs": [parent], "rules": [{"backendRefs": backends}]},
    }
