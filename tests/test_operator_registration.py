"""The operator and MLflow, against a real MLflow server: registration is idempotent, also
when two operators register the same run at once; a pinned model version that does not
exist is found out before any replica starts."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from plugins.mlflow_server import MlflowServer

from infinitecontext.crds.models import INFERENCE_SERVICE, parse_spec
from infinitecontext.operator import registry
from infinitecontext.operator.context import OperatorContext
from infinitecontext.operator.inference.observe import resolve_model
from infinitecontext.operator.resource import Resource

SOURCE = "runs:/{run_id}/model"


def new_run(mlflow: Any, experiment: str) -> str:
    experiment_id = mlflow.create_experiment(experiment)
    run_id = str(mlflow.create_run(experiment_id).info.run_id)
    mlflow.set_terminated(run_id)
    return run_id


def test_registering_twice_returns_the_same_version(mlflow_server: MlflowServer) -> None:
    mlflow = registry.client(mlflow_server.url)
    run_id = new_run(mlflow, "registry-twice")
    first = registry.register(mlflow, "ns.twice", SOURCE.format(run_id=run_id), run_id, {})
    again = registry.register(mlflow, "ns.twice", SOURCE.format(run_id=run_id), run_id, {})
    assert first == again and first.version == "1"


def test_two_operators_registering_one_run_at_once_keep_one_version(
    mlflow_server: MlflowServer,
) -> None:
    setup = registry.client(mlflow_server.url)
    run_id = new_run(setup, "registry-race")
    both_looked = threading.Barrier(2, timeout=30)

    def operator() -> Any:
        mlflow = registry.client(mlflow_server.url)
        create = mlflow.create_model_version

        def create_after_the_other_looked(*args: Any, **kwargs: Any) -> Any:
            both_looked.wait()  # both found no version: each creates one
            return create(*args, **kwargs)

        mlflow.create_model_version = create_after_the_other_looked
        return registry.register(mlflow, "ns.race", SOURCE.format(run_id=run_id), run_id, {})

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: operator(), range(2)))
    assert results[0] == results[1] and results[0].version == "1"
    remaining = setup.search_model_versions(f"name = 'ns.race' and run_id = '{run_id}'")
    assert [v.version for v in remaining] == ["1"]


def inference_service(version: str, revisions: list[dict[str, Any]]) -> tuple[Resource, Any]:
    spec = {"model": {"mlflow": {"name": "ns.missing", "version": version}}}
    status = {"revisions": revisions}
    isvc = Resource("InferenceService", "svc", "ns", "uid-s", 1, spec, status)
    return isvc, parse_spec(INFERENCE_SERVICE, spec)


def context(tracking_uri: str) -> OperatorContext:
    return OperatorContext(
        kube=None,  # type: ignore[arg-type]
        dynamic=None,  # type: ignore[arg-type]
        tracking_uri=tracking_uri,
        slurm_url="",
        slurm_user="",
        prometheus_url="",
    )


def test_a_pinned_model_version_that_does_not_exist_starts_nothing(
    mlflow_server: MlflowServer,
) -> None:
    isvc, spec = inference_service("99", [])
    resolved = resolve_model(context(mlflow_server.url), isvc, spec)
    assert resolved.uri is None
    assert "model ns.missing (99) not found in MLflow" in resolved.message


def test_a_pinned_version_already_served_is_not_looked_up_again() -> None:
    served = [{"revision": 1, "modelVersion": "models:/ns.missing/3", "templateHash": "h"}]
    isvc, spec = inference_service("3", served)
    resolved = resolve_model(context("http://127.0.0.1:1"), isvc, spec)  # nothing listens
    assert resolved.uri == "models:/ns.missing/3"
