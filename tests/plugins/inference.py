"""The InferenceService controller running against the real control plane.

`inference_operator` (session) runs kopf in a thread, as the operator's ServiceAccount
(deploy/rbac.yaml), with only the InferenceService handlers (the same `register()` the
operator process uses, into a registry of its own) and the operator's own start-up
settings, watching the namespaces `isvc-*`. The other kinds' controllers are left out
so that a test can set an Evaluation's status by hand (the gate reads only that
status). The model the tests serve, `tiny` versions 1 and 2, is registered in the
session's MLflow (a pinned version is looked up before it is first served).
`isvc_namespace` gives each test a fresh namespace in that set.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from plugins.kube import wait_for_default_account

REPO = Path(__file__).resolve().parents[2]
NAMESPACE_PATTERN = "isvc-*"


@pytest.fixture(scope="session")
def inference_operator(
    kube_cluster: Any, operator_account: Path, mlflow_server: Any
) -> Iterator[Any]:
    """The controller acting as a ServiceAccount with exactly deploy/rbac.yaml's rules
    (`operator_account`, tests/plugins/operator.py), so the e2e tests prove them enough;
    its tracking URI is the test MLflow's (a spec may name no other: docs/security.md)."""
    import kopf

    from infinitecontext.operator import main
    from infinitecontext.operator.inference import handlers as inference_handlers

    register_served_models(mlflow_server.url)

    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(operator_account)  # kopf's own login reads it
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_with_kubeconfig)  # reads $KUBECONFIG now
    options = main.OperatorOptions(
        kubeconfig=str(operator_account),
        tracking_uri=mlflow_server.url,
        # SLURM replica jobs find this venv's `icx` first.
        slurm_job_path=f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        # short streams: a watch lost while the tests re-apply CRDs comes back within
        # the tests' waits
        watch_timeout_s=20,
        inference_poll_seconds=1.0,
    )
    inference_handlers.register(main.build_context(options), registry)
    kopf.on.startup(registry=registry)(main._configure(options))
    stop, ready = threading.Event(), threading.Event()

    def operate() -> None:
        kopf.run(
            registry=registry,
            standalone=True,
            namespaces=[NAMESPACE_PATTERN],
            stop_flag=stop,
            ready_flag=ready,
        )

    thread = threading.Thread(target=operate, name="isvc-operator", daemon=True)
    thread.start()
    if not ready.wait(60):
        pytest.fail("the InferenceService operator did not start within 60 s")
    yield kube_cluster
    stop.set()
    thread.join(30)
    if previous is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = previous


def register_served_models(tracking_uri: str) -> None:
    """`tiny` versions 1 and 2, each from a run of its own (no artifacts: the replicas on
    kwok's nodes never load them)."""
    from infinitecontext.operator import registry

    mlflow = registry.client(tracking_uri)
    experiment = mlflow.get_experiment_by_name("isvc-e2e")
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment("isvc-e2e")
    for _ in range(2):
        run_id = str(mlflow.create_run(experiment_id).info.run_id)
        mlflow.set_terminated(run_id)
        registry.register(mlflow, "tiny", f"runs:/{run_id}/model", run_id, {})


@pytest.fixture
def isvc_namespace(inference_operator: Any) -> Iterator[str]:
    name = f"isvc-{uuid.uuid4().hex[:8]}"
    inference_operator.kubectl("create", "namespace", name)
    wait_for_default_account(inference_operator, name)
    yield name
    inference_operator.kubectl("delete", "namespace", name, "--wait=false")
