"""Kubernetes children of a workload: the recipe ConfigMap and a Job, or an Indexed Job
plus a headless Service.

The recipe (recipe.py) is a ConfigMap named after the Job, owned by the custom resource
and mounted read-only at `/etc/icx` in the trainer container.

Several nodes run as one Indexed Job whose pods find each other through a headless
Service (`<job>-<index>.<service>`): pod 0 is torchrun's rendezvous host and each
pod's node rank is its completion index, as Kubeflow Trainer and JobSet do it. The pod
failure policy follows Kubeflow's `RestartPolicy: ExitCode`: exit codes 1–127 are
errors in our code and fail the Job at once; signals (128+, e.g. OOM-kill 137) and
disruptions (eviction, preemption, node drain) are infrastructure and are retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from infinitecontext.crds.models import Checkpoint, KubernetesOptions, Resources, WorkloadSpec
from infinitecontext.operator.names import child_name, label_value
from infinitecontext.operator.tenancy import container_security, pod_security
from infinitecontext.operator.workloads.recipe import (
    CHECKPOINT_ROOT,
    RECIPE_DIR,
    RECIPE_FILE,
    Owner,
    WorkloadCommand,
)

API_VERSION = "infinitecontext.dev/v1alpha1"
MANAGED_BY = "infinitecontext-operator"
METRICS_PORT = 9400
METRICS_ENV = {"name": "ICX_METRICS_PORT", "value": str(METRICS_PORT)}
LABEL_KIND = "infinitecontext.dev/kind"
LABEL_NAME = "infinitecontext.dev/name"
LABEL_UID = "infinitecontext.dev/uid"
CONTAINER = "worker"
RENDEZVOUS_PORT = 29500
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# Exit codes of a process that ended by itself with an error: fail fast, never retry.
OUR_CODE_EXIT_CODES = list(range(1, 128))

JOB_NAME_LIMIT = 50
JobPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended", "Lost"]
"""`Lost`: SLURM no longer knows the recorded job (purged after MinJobAge) and no
accounting says how it ended."""


@dataclass(frozen=True)
class JobObservation:
    """What the operator saw of the job, on either backend."""

    phase: JobPhase
    reason: str
    message: str = ""
    retryable: bool = False
    """Failed for infrastructure reasons (node failure, preemption): worth another try."""
    name: str | None = None
    slurm_job_id: int | None = None
    state: str = ""


def job_name(owner: Owner) -> str:
    """The Job's name (also its ConfigMap's and headless Service's): a DNS-1035 label
    that leaves room for `-<index>-<suffix>` in pod hostnames (≤ 63)."""
    return child_name(owner.name, f"-{owner.kind.lower()[:5]}", limit=JOB_NAME_LIMIT)


def labels(owner: Owner) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        LABEL_KIND: owner.kind,
        LABEL_NAME: label_value(owner.name),
        LABEL_UID: owner.uid,
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def render_children(
    owner: Owner, spec: WorkloadSpec, work: WorkloadCommand, suspend: bool
) -> list[dict[str, Any]]:
    """The recipe ConfigMap, for several nodes the headless Service, and the Job (last)."""
    nodes = spec.resources.nodes
    children = [recipe_config_map(owner, work)]
    if nodes > 1:
        children.append(headless_service(owner))
    return [*children, job(owner, spec, work, suspend)]


def recipe_config_map(owner: Owner, work: WorkloadCommand) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, job_name(owner)),
        "data": {RECIPE_FILE: work.recipe},
    }


def headless_service(owner: Owner) -> dict[str, Any]:
    name = job_name(owner)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, name),
        "spec": {
            "clusterIP": "None",
            # Pods must resolve each other before they are Ready (rendezvous comes first).
            "publishNotReadyAddresses": True,
            "selector": {LABEL_UID: owner.uid},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def job(owner: Owner, spec: WorkloadSpec, work: WorkloadCommand, suspend: bool) -> dict[str, Any]:
    name = job_name(owner)
    nodes = spec.resources.nodes
    options = spec.kubernetes or KubernetesOptions()
    job_spec: dict[str, Any] = {
        "suspend": suspend,
        "backoffLimit": spec.retry_policy.backoff_limit,
        "completions": nodes,
        "parallelism": nodes,
        "podFailurePolicy": pod_failure_policy(),
        "template": {
            "metadata": {"labels": labels(owner)},
            "spec": _pod_spec(owner, spec, options, work, nodes),
        },
    }
    if nodes > 1:
        job_spec["completionMode"] = "Indexed"
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(owner, name),
        "spec": job_spec,
    }


def pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": OUR_CODE_EXIT_CODES,
                },
            },
        ]
    }


def _metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner),
        "ownerReferences": [owner_reference(owner)],
    }


def _pod_spec(
    owner: Owner,
    spec: WorkloadSpec,
    options: KubernetesOptions,
    work: WorkloadCommand,
    nodes: int,
) -> dict[str, Any]:
    checkpoint: Checkpoint | None = getattr(spec, "checkpoint", None)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": launcher(work.argv, nodes, spec.resources),
        "env": [*_env(owner, work, nodes, spec.resources), METRICS_ENV, *secret_env(spec)],
        # The trainer serves Prometheus metrics here (deploy/monitoring's PodMonitor).
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": container_resources(spec.resources),
        "securityContext": container_security(),
    }
    recipe_volume = {"name": "recipe", "configMap": {"name": job_name(owner)}}
    container["volumeMounts"] = [{"name": "recipe", "mountPath": RECIPE_DIR, "readOnly": True}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [recipe_volume],
    }
    if checkpoint is not None:
        # Unset path: the volume at the root, the run's own directory (its UID) below it.
        mount = checkpoint.path or CHECKPOINT_ROOT
        container["volumeMounts"].append({"name": "checkpoints", "mountPath": mount})
        pod["volumes"].append(checkpoint_volume(checkpoint))
    if nodes > 1:
        pod["subdomain"] = job_name(owner)
    pod.update(pod_placement(options))
    return pod


def pod_placement(options: KubernetesOptions) -> dict[str, Any]:
    """The pod-spec fields the user's backend options set: where and as whom a pod runs
    (confined whatever they set: `tenancy.pod_security`)."""
    fields: dict[str, Any] = pod_security(options)
    if options.node_selector:
        fields["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        fields["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in options.tolerations
        ]
    if options.priority_class_name:
        fields["priorityClassName"] = options.priority_class_name
    if options.service_account_name:
        fields["serviceAccountName"] = options.service_account_name
    return fields


def secret_env(spec: WorkloadSpec) -> list[dict[str, Any]]:
    """The spec's Secret-backed variables, as references the kubelet resolves."""
    return [
        {
            "name": var.name,
            "valueFrom": {"secretKeyRef": var.secret_key_ref.model_dump(by_alias=True)},
        }
        for var in spec.secret_env
    ]


def launcher(argv: list[str], nodes: int, resources: Resources) -> list[str]:
    """One process per node runs `argv`; several nodes or GPUs go through torchrun."""
    if nodes == 1 and resources.gpus_per_node <= 1:
        return list(argv)
    # $(VAR) is expanded by the kubelet from the container's env (below).
    return [
        "torchrun",
        "--nnodes=$(NNODES)",
        "--node_rank=$(NODE_RANK)",
        "--nproc_per_node=$(NPROC_PER_NODE)",
        "--master_addr=$(MASTER_ADDR)",
        "--master_port=$(MASTER_PORT)",
        "--no-python",
        *argv,
    ]


def _env(
    owner: Owner, work: WorkloadCommand, nodes: int, resources: Resources
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": k, "value": v} for k, v in sorted(work.environment.items())
    ]
    name = job_name(owner)
    rank: dict[str, Any] = (
        {"valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}}}
        if nodes > 1
        else {"value": "0"}
    )
    env += [
        {"name": "NNODES", "value": str(nodes)},
        {"name": "NODE_RANK", **rank},
        {"name": "NPROC_PER_NODE", "value": str(max(resources.gpus_per_node, 1))},
        {"name": "MASTER_ADDR", "value": f"{name}-0.{name}" if nodes > 1 else "localhost"},
        {"name": "MASTER_PORT", "value": str(RENDEZVOUS_PORT)},
    ]
    return env


def container_resources(resources: Resources) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": resources.cpu, "memory": resources.memory}
    limits: dict[str, str] = {"memory": resources.memory}
    if resources.gpus_per_node:
        limits["nvidia.com/gpu"] = str(resources.gpus_per_node)
    return {"requests": requests, "limits": limits}


def checkpoint_volume(checkpoint: Checkpoint) -> dict[str, Any]:
    if checkpoint.persistent_volume_claim:
        claim = {"claimName": checkpoint.persistent_volume_claim}
        return {"name": "checkpoints", "persistentVolumeClaim": claim}
    return {"name": "checkpoints", "emptyDir": {}}


def observe_job(job_object: dict[str, Any]) -> JobObservation:
    """The phase of a Job from its status (conditions first, then pod counts)."""
    name = job_object.get("metadata", {}).get("name")
    status = job_object.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for type_, phase in (("Complete", "Succeeded"), ("Failed", "Failed")):
        found = conditions.get(type_)
        if found and found.get("status") == "True":
            reason = found.get("reason") or type_
            return JobObservation(phase, reason, found.get("message", ""), name=name, state=type_)  # type: ignore[arg-type]
    suspended = conditions.get("Suspended")
    if suspended and suspended.get("status") == "True":
        return JobObservation("Suspended", "JobSuspended", name=name, state="Suspended")
    if (status.get("ready") or 0) > 0 or (
        (status.get("active") or 0) > 0 and status.get("ready") is None
    ):
        return JobObservation("Running", "PodsRunning", name=name, state="Running")
    return JobObservation("Pending", "PodsPending", name=name, state="Pending")
