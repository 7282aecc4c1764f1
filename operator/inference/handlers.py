"""kopf handlers of InferenceService: observe, plan (inference.py), act, write status.

Every trigger (create, spec update — `kubectl scale` and the HPA included — resume and
a timer) runs the same level-based pass under the object's lock. The pass reads the
object afresh, so a timer that queued behind another pass never plans from a stale
status. Kubernetes-backed services go through `plan_inference`; SLURM-backed ones
through `inference_slurm`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from infinitecontext.crds.models import (
    ALIGNMENT,
    EVALUATION,
    GROUP,
    INFERENCE_SERVICE,
    TRAINING_RUN,
    VERSION,
    Backend,
    InferenceServiceSpec,
)
from infinitecontext.operator import metrics, registry
from infinitecontext.operator.inference.children import LABEL_SERVICE, Service, selector
from infinitecontext.operator.inference.kube import HTTPROUTE_CRD, InferenceKube
from infinitecontext.operator.inference.planner import (
    DEFAULT_PROMETHEUS,
    InferenceObserved,
    InferencePlan,
    crashlooping_revisions,
    deployments_by_role,
    gate_verdict,
    plan_inference,
)
from infinitecontext.operator.kube import status_patch
from infinitecontext.operator.workloads import handlers
from infinitecontext.operator.workloads.planner import input_from_object

_clients: dict[int, InferenceKube] = {}


def inference_kube(ctx: handlers.Context) -> InferenceKube:
    """One dynamic client per operator context (its API discovery is cached)."""
    key = id(ctx.kube.api_client)
    if key not in _clients:
        _clients[key] = InferenceKube(ctx.kube.api_client)
    return _clients[key]


def service_of(obj: dict[str, Any]) -> Service:
    meta = obj["metadata"]
    return Service(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 1),
        spec=dict(obj.get("spec") or {}),
        status={k: v for k, v in dict(obj.get("status") or {}).items() if k != "kopf"},
    )


# ---------------------------------------------------------------- observe


@dataclass(frozen=True)
class ResolvedModel:
    uri: str | None
    message: str = ""


def resolve_model(ctx: handlers.Context, svc: Service, spec: InferenceServiceSpec) -> ResolvedModel:
    """The model version the spec asks for; an MLflow alias is resolved on every pass, so
    moving the alias rolls out a new revision."""
    ref = spec.model
    if ref.mlflow is not None and ref.mlflow.version:
        return ResolvedModel(f"models:/{ref.mlflow.name}/{ref.mlflow.version}")
    if ref.mlflow is not None:
        uri = spec.mlflow.tracking_uri or ctx.tracking_uri
        try:
            found = registry.resolve(registry.client(uri), ref.mlflow)
        except registry.RegistryUnavailable as error:
            return ResolvedModel(None, str(error))
    else:
        kind = TRAINING_RUN if ref.training_run else ALIGNMENT
        name = ref.training_run or ref.alignment or ""
        found = input_from_object(kind.kind, name, ctx.kube.read_custom(kind, name, svc.namespace))
    if found.ready and found.model is not None and found.model.uri:
        return ResolvedModel(found.model.uri)
    return ResolvedModel(None, found.message)


def observe(
    ctx: handlers.Context, kube: InferenceKube, svc: Service, spec: InferenceServiceSpec | None
) -> InferenceObserved:
    if spec is None:
        return InferenceObserved()
    model = resolve_model(ctx, svc, spec)
    labels = selector(svc.name)
    deployments = deployments_by_role(kube.list("apps/v1", "Deployment", svc.namespace, labels))
    pods = kube.list("v1", "Pod", svc.namespace, labels)
    gate = None
    if spec.rollout.gate is not None and model.uri is not None:
        evaluation = ctx.kube.read_custom(EVALUATION, spec.rollout.gate.evaluation, svc.namespace)
        gate = gate_verdict(spec.rollout.gate, evaluation, model.uri)
    return InferenceObserved(
        model_uri=model.uri,
        model_message=model.message,
        stable=deployments.get("stable"),
        canary=deployments.get("canary"),
        crashlooping=crashlooping_revisions(pods),
        gate=gate,
        keda=spec.autoscaling.enabled and kube.keda_installed(),
        gateway_api=kube.crd_installed(HTTPROUTE_CRD),
        tracking_uri=spec.mlflow.tracking_uri or ctx.tracking_uri,
        prometheus_url=os.environ.get("ICX_PROMETHEUS_URL", DEFAULT_PROMETHEUS),
    )


# ---------------------------------------------------------------- act


def act(
    kube: InferenceKube, svc: Service, plan: InferencePlan, observed: InferenceObserved
) -> None:
    for obj in plan.apply:
        kube.apply(obj)
    for ref in plan.delete:
        if ref.kind == "Deployment" and observed.canary is None:
            continue  # nothing to delete: skip the call
        kube.delete(ref, svc.namespace)


def _parse(svc: Service) -> InferenceServiceSpec | None:
    try:
        return InferenceServiceSpec.model_validate(svc.spec)
    except ValueError:
        return None


def reconcile_inference(body: Any, logger: logging.Logger) -> None:
    """One pass over one InferenceService."""
    ctx = handlers.context()
    meta = body["metadata"]
    with ctx.locks[meta["uid"]], metrics.DURATION.labels(INFERENCE_SERVICE.kind).time():
        fresh = ctx.kube.read_custom(INFERENCE_SERVICE, meta["name"], meta["namespace"])
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return
        svc = service_of(fresh)
        spec = _parse(svc)
        try:
            plan = _plan(ctx, svc, spec, datetime.now(UTC))
        except Exception:
            metrics.ERRORS.labels(INFERENCE_SERVICE.kind).inc()
            raise
        patch = status_patch(svc.status, plan.status)
        if patch:
            ctx.kube.patch_status(INFERENCE_SERVICE, svc.name, svc.namespace, patch)
        for event in plan.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1000])
        metrics.record_object(svc.uid, INFERENCE_SERVICE.kind, svc.namespace, svc.name, plan.status)
        metrics.RECONCILES.labels(INFERENCE_SERVICE.kind, "ok").inc()


def _plan(
    ctx: handlers.Context, svc: Service, spec: InferenceServiceSpec | None, now: datetime
) -> InferencePlan:
    if spec is not None and spec.backend == Backend.SLURM:
        from infinitecontext.operator.inference import slurm as inference_slurm

        return inference_slurm.reconcile_slurm_service(ctx, svc, spec, now)
    kube = inference_kube(ctx)
    observed = observe(ctx, kube, svc, spec)
    plan = plan_inference(svc, observed, now)
    act(kube, svc, plan, observed)
    return plan


# ---------------------------------------------------------------- registration


def _handle(**kwargs: Any) -> None:
    reconcile_inference(kwargs["body"], kwargs["logger"])


def _cancel_slurm_replicas(**kwargs: Any) -> None:
    """Finalizer of SLURM-backed services: cancel every replica job."""
    from infinitecontext.operator.inference import slurm as inference_slurm

    inference_slurm.cancel_all(handlers.context(), kwargs["body"], kwargs["logger"])


def _forget(**kwargs: Any) -> None:
    metrics.record_object(kwargs["body"]["metadata"]["uid"], "", "", "", None)


def register(
    target: kopf.OperatorRegistry | None = None, poll_seconds: float | None = None
) -> None:
    """Register the InferenceService handlers (into kopf's default registry by default);
    the timer polls every `poll_seconds` ($ICX_INFERENCE_POLL_SECONDS, default 5)."""
    args = (GROUP, VERSION, INFERENCE_SERVICE.plural)
    reg = target or kopf.get_default_registry()
    kopf.on.create(*args, id="isvc-create", registry=reg)(_handle)
    kopf.on.update(*args, id="isvc-update", field="spec", registry=reg)(_handle)
    kopf.on.resume(*args, id="isvc-resume", registry=reg)(_handle)
    poll = poll_seconds or float(os.environ.get("ICX_INFERENCE_POLL_SECONDS", "5"))
    kopf.timer(*args, id="isvc-poll", interval=poll, idle=None, registry=reg)(_handle)
    kopf.on.delete(
        *args, id="isvc-cancel-slurm", field="spec.backend", value="slurm", registry=reg
    )(_cancel_slurm_replicas)
    kopf.on.delete(*args, id="isvc-forget", optional=True, registry=reg)(_forget)


register()

__all__ = ["LABEL_SERVICE", "reconcile_inference", "register"]
