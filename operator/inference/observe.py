"""What an InferenceService pass observes, through the operator's context: the model
version the spec asks for, and on Kubernetes the Deployments, crash-looping pods and
the gate's Evaluation, on SLURM the replica jobs (each probed on `/ready`)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, replace

from infinitecontext.crds.models import ALIGNMENT, EVALUATION, TRAINING_RUN, InferenceServiceSpec
from infinitecontext.operator import registry
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.inference.children import selector
from infinitecontext.operator.inference.planner import (
    InferenceObserved,
    crashlooping_revisions,
    deployments_by_role,
    gate_verdict,
)
from infinitecontext.operator.inference.slurm import Replica, SlurmObserved, replicas_of
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads.planner import input_from_object
from infinitecontext.slurm_bridge.states import Phase as SlurmPhase

KEDA_CRD = "scaledobjects.keda.sh"
HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"


@dataclass(frozen=True)
class ResolvedModel:
    uri: str | None
    message: str = ""


def tracking_uri(ctx: OperatorContext, spec: InferenceServiceSpec) -> str:
    return spec.mlflow.tracking_uri or ctx.tracking_uri


def resolve_model(
    ctx: OperatorContext, isvc: Resource, spec: InferenceServiceSpec
) -> ResolvedModel:
    """The model version the spec asks for; an MLflow alias is resolved on every pass, so
    moving the alias rolls out a new revision. A pinned version is looked up until a
    revision has served it, so one that does not exist starts no replica."""
    ref = spec.model
    if ref.mlflow is not None and ref.mlflow.version:
        pinned = f"models:/{ref.mlflow.name}/{ref.mlflow.version}"
        served = {r.get("modelVersion") for r in isvc.status.get("revisions") or []}
        if pinned in served:
            return ResolvedModel(pinned)
    if ref.mlflow is not None:
        try:
            found = registry.resolve(registry.client(tracking_uri(ctx, spec)), ref.mlflow)
        except registry.RegistryUnavailable as error:
            return ResolvedModel(None, str(error))
    else:
        kind = TRAINING_RUN if ref.training_run else ALIGNMENT
        name = ref.training_run or ref.alignment or ""
        found = input_from_object(kind.kind, name, ctx.kube.read_custom(kind, name, isvc.namespace))
    if found.ready and found.model is not None and found.model.uri:
        return ResolvedModel(found.model.uri)
    return ResolvedModel(None, found.message)


def _keda(ctx: OperatorContext, spec: InferenceServiceSpec) -> bool:
    return spec.autoscaling.enabled and ctx.dynamic.crd_installed(KEDA_CRD)


def observe_kubernetes(
    ctx: OperatorContext, isvc: Resource, spec: InferenceServiceSpec
) -> InferenceObserved:
    model = resolve_model(ctx, isvc, spec)
    labels = selector(isvc.name)
    found = ctx.dynamic.list("apps/v1", "Deployment", isvc.namespace, labels)
    deployments = deployments_by_role(found)
    pods = ctx.dynamic.list("v1", "Pod", isvc.namespace, labels)
    gate = None
    if spec.rollout.gate is not None and model.uri is not None:
        evaluation = ctx.kube.read_custom(EVALUATION, spec.rollout.gate.evaluation, isvc.namespace)
        gate = gate_verdict(spec.rollout.gate, evaluation, model.uri)
    return InferenceObserved(
        model_uri=model.uri,
        model_message=model.message,
        stable=deployments.get("stable"),
        canary=deployments.get("canary"),
        crashlooping=crashlooping_revisions(pods),
        gate=gate,
        keda=_keda(ctx, spec),
        gateway_api=ctx.dynamic.crd_installed(HTTPROUTE_CRD),
        tracking_uri=tracking_uri(ctx, spec),
        prometheus_url=ctx.prometheus_url,
    )


def observe_slurm(
    ctx: OperatorContext, isvc: Resource, spec: InferenceServiceSpec
) -> SlurmObserved:
    """Raises SlurmUnavailable when SLURM does not answer."""
    model = resolve_model(ctx, isvc, spec)
    return SlurmObserved(
        model.uri,
        model.message,
        _replicas(ctx, isvc, spec.server.port),
        tracking_uri=tracking_uri(ctx, spec),
        job_path=ctx.slurm_job_path,
        keda=_keda(ctx, spec),
        prometheus_url=ctx.prometheus_url,
    )


def _replicas(ctx: OperatorContext, isvc: Resource, port: int) -> list[Replica]:
    found = []
    for replica in replicas_of(isvc.uid, ctx.slurm().list(), port):
        running = replica.phase == SlurmPhase.RUNNING and bool(replica.node)
        ready = running and probe_ready(replica.url)
        address = routable_address(replica.node) if ready else None
        found.append(replace(replica, ready=ready, address=address))
    return found


def routable_address(node: str) -> str | None:
    """The node's address if Kubernetes clients can route to it (not loopback)."""
    try:
        address = socket.gethostbyname(node)
    except OSError:
        return None
    ip = ipaddress.ip_address(address)
    return None if ip.is_loopback or ip.is_link_local or ip.is_unspecified else address


def probe_ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/ready", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False
