"""An Evaluation's outcome in a real MLflow: its results as metrics on the evaluated
version's run, the `champion` alias on a pass, and an InferenceService that follows the
alias when it moves."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from plugins.mlflow_server import MlflowServer

from infinitecontext.crds.models import InferenceServiceSpec, RegisteredModel
from infinitecontext.operator import registry
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.inference.observe import resolve_model
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.workloads import apply
from infinitecontext.operator.workloads.jobs import JobObservation
from infinitecontext.operator.workloads.planner import (
    InputModel,
    Observed,
    RunObservation,
    parse,
    reconcile,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _context(tracking_uri: str) -> OperatorContext:
    """Enough of the operator's context for MLflow work (no cluster, no SLURM)."""
    return OperatorContext(
        kube=None,  # type: ignore[arg-type]
        dynamic=None,  # type: ignore[arg-type]
        tracking_uri=tracking_uri,
        slurm_url="",
        slurm_user="",
        prometheus_url="",
    )


def _versions(client: Any, name: str, count: int) -> list[RegisteredModel]:
    """`count` versions of a new registered model, each logged by its own run."""
    experiment = client.create_experiment(f"registry-{uuid.uuid4().hex[:8]}")
    client.create_registered_model(name)
    versions = []
    for _ in range(count):
        run = client.create_run(experiment)
        client.set_terminated(run.info.run_id)
        source = f"{run.info.artifact_uri}/model"
        version = client.create_model_version(name, source, run_id=run.info.run_id)
        versions.append(
            RegisteredModel(
                run_id=run.info.run_id,
                name=name,
                version=str(version.version),
                uri=f"models:/{name}/{version.version}",
            )
        )
    return versions


def _evaluate(
    tracking_uri: str, model: RegisteredModel, accuracy: float, generation: int = 1
) -> None:
    """Evaluation `gate` of `model`, from submission to its last pass, actions carried out
    (a later generation: its spec was changed and it ran again)."""
    spec = {"model": {"mlflow": {"name": model.name, "version": model.version}}}
    resource = Resource("Evaluation", "gate", "ns", "uid-1", generation, spec, {})
    first = Observed(tracking_uri=tracking_uri, input=InputModel(True, model))
    plan = reconcile(resource, parse(resource), first, NOW)
    resource = Resource("Evaluation", "gate", "ns", "uid-1", generation, spec, plan.status)
    observed = Observed(
        tracking_uri=tracking_uri,
        input=InputModel(True, model),
        job=JobObservation("Succeeded", "Completed"),
        run=RunObservation("eval-run", "FINISHED", {"passkey_acc_512": accuracy}),
    )
    plan = reconcile(resource, parse(resource), observed, NOW)
    assert plan.status["phase"] == "Succeeded"
    for _ in range(2):  # a pass repeated after a crash changes nothing
        apply.execute(_context(tracking_uri), plan, tracking_uri)


def test_a_passing_evaluation_moves_the_alias_and_logs_metrics_on_the_versions_run(
    mlflow_server: MlflowServer,
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = f"model-{uuid.uuid4().hex[:8]}"
    first, second = _versions(client, name, 2)
    isvc = InferenceServiceSpec.model_validate(
        {
            "model": {"mlflow": {"name": name, "alias": "champion"}},
            "mlflow": {"trackingUri": mlflow_server.url},
        }
    )
    serving = Resource("InferenceService", "svc", "ns", "uid-2", 1, {}, {})
    context = _context(mlflow_server.url)
    waiting = resolve_model(context, serving, isvc)
    assert waiting.uri is None and "champion" in (waiting.message or "")

    _evaluate(mlflow_server.url, first, accuracy=1.0)
    assert client.get_model_version_by_alias(name, "champion").version == first.version
    assert resolve_model(context, serving, isvc).uri == first.uri
    metrics = client.get_run(first.run_id).data.metrics
    assert metrics["eval/ns/gate/passkey_accuracy"] == 1.0
    assert metrics["eval/ns/gate/passkey_accuracy_512"] == 1.0
    assert metrics["eval/ns/gate/passed"] == 1.0
    history = client.get_metric_history(first.run_id, "eval/ns/gate/passed")
    assert len(history) == 1  # the repeated pass logged no second point

    _evaluate(mlflow_server.url, second, accuracy=0.0)  # fails: the alias stays
    assert client.get_model_version_by_alias(name, "champion").version == first.version
    assert client.get_run(second.run_id).data.metrics["eval/ns/gate/passed"] == 0.0

    _evaluate(mlflow_server.url, second, accuracy=1.0, generation=2)
    assert client.get_model_version_by_alias(name, "champion").version == second.version
    assert client.get_run(second.run_id).data.metrics["eval/ns/gate/passed"] == 1.0
    assert resolve_model(context, serving, isvc).uri == second.uri  # the service follows


def test_registry_calls_against_an_unreachable_mlflow_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from infinitecontext.operator.registry import RegistryUnavailable

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # as the operator runs
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

    client = registry.client("http://127.0.0.1:9")
    for call in (
        lambda: registry.set_alias(client, "m", "1", "champion"),
        lambda: registry.log_metrics(client, "r", {"x": 1.0}, 1, 0),
    ):
        try:
            call()
        except RegistryUnavailable as error:
            assert "MLflow" in str(error)
        else:
            raise AssertionError("no RegistryUnavailable")
