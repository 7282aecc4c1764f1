"""The real controllers, scheduler and kwok's simulated kubelets drive workloads to done."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from infinitecontext.devtools.waiting import wait_for

pytestmark = pytest.mark.slow

IMAGE = "registry.invalid/icx/never-pulled:1"  # kwok runs no container: never pulled


def container(name: str = "main", gpus: int = 0) -> client.V1Container:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else None
    return client.V1Container(
        name=name, image=IMAGE, resources=client.V1ResourceRequirements(limits=limits)
    )


def condition_true(conditions: list[Any] | None, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in conditions or [])


def test_deployment_becomes_available(kube_cluster, kube_namespace):
    apps = client.AppsV1Api(kube_cluster.api_client())
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container()]),
            ),
        ),
    )
    apps.create_namespaced_deployment(kube_namespace, deployment)

    def available() -> Any:
        status: Any = apps.read_namespaced_deployment_status("web", kube_namespace).status
        return status.available_replicas == 2 and condition_true(status.conditions, "Available")

    wait_for("Deployment web to be Available", available, 60)
    pods: list[Any] = (
        client.CoreV1Api(kube_cluster.api_client()).list_namespaced_pod(kube_namespace).items
    )
    assert len(pods) == 2
    assert all(p.spec.node_name and p.status.phase == "Running" for p in pods)


def test_gpu_pod_is_scheduled_on_a_gpu_node(kube_cluster, kube_namespace):
    core = client.CoreV1Api(kube_cluster.api_client())
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="gpu"),
        spec=client.V1PodSpec(containers=[container(gpus=2)]),
    )
    core.create_namespaced_pod(kube_namespace, pod)

    def running() -> Any:
        current: Any = core.read_namespaced_pod("gpu", kube_namespace)
        return current if current.status.phase == "Running" else None

    node_name = wait_for("the GPU pod to run", running, 60).spec.node_name
    node: Any = core.read_node(node_name)
    capacity = node.status.capacity
    assert int(capacity["nvidia.com/gpu"]) >= 2


def test_job_completes(kube_cluster, kube_namespace):
    batch = client.BatchV1Api(kube_cluster.api_client())
    job = client.V1Job(
        metadata=client.V1ObjectMeta(name="once"),
        spec=client.V1JobSpec(
            completions=2,
            parallelism=1,
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(restart_policy="Never", containers=[container()]),
            ),
        ),
    )
    batch.create_namespaced_job(kube_namespace, job)

    def complete() -> Any:
        status: Any = batch.read_namespaced_job_status("once", kube_namespace).status
        return status.succeeded == 2 and condition_true(status.conditions, "Complete")

    wait_for("Job once to complete", complete, 60)


def test_deleting_the_owner_garbage_collects_dependents(kube_cluster, kube_namespace):
    core = client.CoreV1Api(kube_cluster.api_client())
    owner: Any = core.create_namespaced_config_map(
        kube_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    for index in range(3):
        dependent = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"dependent-{index}", owner_references=[reference])
        )
        core.create_namespaced_config_map(kube_namespace, dependent)

    core.delete_namespaced_config_map("owner", kube_namespace, propagation_policy="Background")

    def dependents_gone() -> bool:
        config_maps: list[Any] = core.list_namespaced_config_map(kube_namespace).items
        names = {c.metadata.name for c in config_maps}
        return not any(name.startswith("dependent-") for name in names)

    wait_for("the garbage collector to delete the dependents", dependents_gone, 60)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("owner", kube_namespace)
    assert missing.value.status == 404
