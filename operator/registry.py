"""MLflow as the operator uses it: runs for jobs, model versions with lineage tags.

Each call is idempotent on the resource: the run is found by the resource's UID tag
before one is created, and a model version is found by (name, run) before one is
registered, so a pass that is repeated after a crash creates nothing twice; two
operators that register the same run at once end with one version (`_settle`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from infinitecontext.crds.models import ModelRegistryRef, RegisteredModel
from infinitecontext.operator.workloads.planner import TAG_PREFIX, InputModel, RunObservation
from infinitecontext.operator.workloads.recipe import MODEL_ARTIFACT_PATH
from infinitecontext.server.manifest import MANIFEST_NAME, MANIFEST_TAG, manifest_sha256

# Errors that mean "this does not exist / is wrong", not "MLflow is unreachable".
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_EXISTS = {"RESOURCE_ALREADY_EXISTS"}

log = logging.getLogger(__name__)


class RegistryUnavailable(Exception):
    """MLflow could not be reached or answered with a server error: retry later."""


class RegistryRejected(Exception):
    """MLflow refused the request (4xx: an invalid model name or filter): retrying the
    same request will not help, the spec must change."""


def configure_client_environment() -> None:
    """Fail fast instead of MLflow's default minutes of HTTP retries: we retry ourselves."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _code(error: Exception) -> str:
    return str(getattr(error, "error_code", ""))


def _classified(error: Exception) -> RegistryUnavailable | RegistryRejected:
    """What an MLflow error means to the caller: refused for good (a 4xx answer) or
    worth another try (no answer, or a server error). Status and Events get the error's
    type and MLflow's error code, never its text, which carries the server's response
    body (whatever the host at the tracking URI answered, docs/security.md); the whole
    error goes to the operator's log."""
    log.warning("MLflow call failed: %s", error)
    code = _code(error)
    detail = f" {code}" if code else ""
    text = f"MLflow: {type(error).__name__}{detail} (the operator's log has the details)"
    status = getattr(error, "get_http_status_code", None)
    if status is not None and 400 <= int(status()) < 500:
        return RegistryRejected(text)
    return RegistryUnavailable(text)


def _is_not_found(error: Exception) -> bool:
    return _code(error) in _NOT_FOUND


def find_run_id(mlflow: Any, experiments: list[str], run_name: str) -> str | None:
    """The newest run named `run_name` in these experiments (None: not started yet)."""
    try:
        found = [mlflow.get_experiment_by_name(name) for name in experiments]
        ids = [e.experiment_id for e in found if e is not None]
        if not ids:
            return None
        runs = mlflow.search_runs(
            ids,
            filter_string=f"attributes.run_name = '{run_name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except Exception as error:
        raise _classified(error) from error
    return str(runs[0].info.run_id) if runs else None


def observe_run(mlflow: Any, run_id: str, want_model: bool) -> RunObservation | None:
    try:
        run = mlflow.get_run(run_id)
    except Exception as error:
        if _is_not_found(error):
            return None
        raise _classified(error) from error
    metrics = {k: float(v) for k, v in run.data.metrics.items()}
    try:
        step = _latest_step(mlflow, run_id, metrics)
        has_model = (
            bool(mlflow.list_artifacts(run_id, MODEL_ARTIFACT_PATH)) if want_model else False
        )
    except Exception as error:
        raise _classified(error) from error
    return RunObservation(run_id, str(run.info.status), metrics, step, has_model)


def _latest_step(mlflow: Any, run_id: str, metrics: dict[str, float]) -> int | None:
    for name in ("loss", "train_loss"):
        if name in metrics:
            history = mlflow.get_metric_history(run_id, name)
            return max((m.step for m in history), default=None)
    return None


def find_version(mlflow: Any, name: str, run_id: str) -> RegisteredModel | None:
    try:
        versions = mlflow.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except Exception as error:
        if _is_not_found(error):
            return None
        raise _classified(error) from error
    if not versions:
        return None
    oldest = min(versions, key=lambda v: int(v.version))  # the one a race keeps
    return _registered(name, str(oldest.version), run_id)


def register(
    mlflow: Any, name: str, source: str, run_id: str, tags: dict[str, str]
) -> RegisteredModel:
    """A new version of `name` from the run's model artifact, with lineage tags."""
    existing = find_version(mlflow, name, run_id)
    if existing is not None:
        return existing
    try:
        try:
            mlflow.create_registered_model(name, tags={f"{TAG_PREFIX}managed": "true"})
        except Exception as error:
            if _code(error) not in _EXISTS:
                raise
        artifact_uri = mlflow.get_run(run_id).info.artifact_uri
        resolved = f"{artifact_uri}/{MODEL_ARTIFACT_PATH}" if source.startswith("runs:") else source
        digest = _manifest_digest(mlflow, run_id)
        if digest:
            tags = {**tags, MANIFEST_TAG: digest}
        version = str(mlflow.create_model_version(name, resolved, run_id=run_id, tags=tags).version)
    except Exception as error:
        raise _classified(error) from error
    return _settle(mlflow, name, run_id, version)


def _settle(mlflow: Any, name: str, run_id: str, ours: str) -> RegisteredModel:
    """Keep one version per run when two operators registered it at once: both see every
    version once created, the oldest is kept, and each deletes only its own duplicate."""
    kept = find_version(mlflow, name, run_id)
    if kept is None or kept.version == ours:
        return _registered(name, ours, run_id)
    try:
        mlflow.delete_model_version(name, ours)
    except Exception as error:
        raise _classified(error) from error
    log.warning(
        "run %s was registered twice at once (another operator?): kept %s version %s, "
        "deleted version %s",
        run_id,
        name,
        kept.version,
        ours,
    )
    return kept


def _manifest_digest(mlflow: Any, run_id: str) -> str | None:
    """The sha256 of the model's manifest as the job logged it (None: it logged none);
    `icx serve` checks a download against it (docs/security.md)."""
    wanted = f"{MODEL_ARTIFACT_PATH}/{MANIFEST_NAME}"
    if wanted not in {f.path for f in mlflow.list_artifacts(run_id, MODEL_ARTIFACT_PATH)}:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.download_artifacts(run_id, wanted, scratch)
        return manifest_sha256(Path(local).read_bytes())


def _registered(name: str, version: str, run_id: str | None) -> RegisteredModel:
    return RegisteredModel(
        run_id=run_id, name=name, version=version, uri=f"models:/{name}/{version}"
    )


def resolve(mlflow: Any, ref: ModelRegistryRef) -> InputModel:
    """A registry reference (by version or alias) as an input model."""
    try:
        if ref.alias:
            # MLflow answers a missing alias with INVALID_PARAMETER_VALUE, as it does a
            # malformed request: read the model's aliases instead (an Evaluation may set
            # this one later).
            version = mlflow.get_registered_model(ref.name).aliases.get(ref.alias)
            if version is None:
                return InputModel(False, message=f"model {ref.name} has no alias {ref.alias} yet")
            found = mlflow.get_model_version(ref.name, str(version))
        elif ref.version:
            found = mlflow.get_model_version(ref.name, ref.version)
        else:
            latest = mlflow.search_model_versions(f"name = '{ref.name}'")
            if not latest:
                return InputModel(False, message=f"model {ref.name} has no versions yet")
            found = max(latest, key=lambda v: int(v.version))
    except Exception as error:
        if _is_not_found(error):
            which = ref.alias or ref.version or "latest"
            return InputModel(False, message=f"model {ref.name} ({which}) not found in MLflow")
        raise _classified(error) from error
    return InputModel(True, _registered(ref.name, str(found.version), found.run_id))


def set_alias(mlflow: Any, name: str, version: str, alias: str) -> None:
    """Point `alias` at this version (MLflow moves it from any other version)."""
    try:
        mlflow.set_registered_model_alias(name, alias, version)
    except Exception as error:
        raise _classified(error) from error


def log_metrics(
    mlflow: Any, run_id: str, metrics: dict[str, float], step: int, timestamp_ms: int
) -> None:
    """Metrics at a given step and time: logging the same ones again adds no points."""
    from mlflow.entities import Metric

    batch = [Metric(key, value, timestamp_ms, step) for key, value in sorted(metrics.items())]
    try:
        mlflow.log_batch(run_id, metrics=batch)
    except Exception as error:
        raise _classified(error) from error


def tag_version(mlflow: Any, name: str, version: str, tags: dict[str, str]) -> None:
    try:
        for key, value in tags.items():
            mlflow.set_model_version_tag(name, version, key, value)
    except Exception as error:
        raise _classified(error) from error
