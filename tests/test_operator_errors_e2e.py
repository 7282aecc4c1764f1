"""Bad input and unreachable backends end to end: the real API server's admission, the
real operator, the local SLURM cluster and a real MLflow server.

- values the schema can judge are refused by the API server;
- values only a backend can judge (a partition SLURM does not have) give Ready=False
  `Rejected`, are not tried again until the spec changes, and are tried at once when
  it does;
- a failed SLURM job says SLURM's cause, or the last lines of its output;
- an unreachable MLflow is retried with backoff (5 s doubling) and recovers by itself;
- names the CRDs accept but no child could carry (253 characters, dots, over 63) run.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from plugins.kube import KubeCluster
from plugins.mlflow_server import MlflowServer, start_mlflow
from plugins.operator import StartOperator
from plugins.processes import free_port, wait_http_ok
from test_operator_e2e import (
    HOLD,
    TINY_TRAINING,
    apply,
    condition,
    get,
    reconciles,
    resource,
    wait_for,
    wait_phase,
)

from infinitecontext.devtools import cluster as devcluster

pytestmark = pytest.mark.slow
LONG_DOTTED = ("x" * 62 + ".") * 4 + "y"  # 253 characters, the most a name may have


def test_the_api_server_refuses_values_no_backend_can_run(
    icx_crds: KubeCluster, kube_namespace: str
) -> None:
    slurm = {"partition": "debug", "workingDirectory": "/tmp"}
    bad = {
        "resources.cpu": {"resources": {"cpu": "inf"}},
        "resources.cpu ": {"resources": {"cpu": "-4"}},
        "slurm.workingDirectory": {"slurm": slurm | {"workingDirectory": "/tmp\n/etc"}},
        "slurm.containerImage": {"slurm": slurm | {"containerImage": "img\u0007"}},
        "slurm.partition": {"slurm": slurm | {"partition": "a b"}},
        "mlflow.registeredModelName": {"mlflow": {"registeredModelName": "it's"}},
        "hyperparameters.steps": {"hyperparameters": {"steps": 1_000_000_000_000}},
    }
    for field, fields in bad.items():
        spec = {"model": {"preset": "tiny"}, "backend": "slurm", "slurm": slurm} | fields
        obj = resource("TrainingRun", "bad", spec)
        obj["metadata"]["namespace"] = kube_namespace
        with pytest.raises(devcluster.ClusterError) as refused:
            apply(icx_crds, obj)
        assert f"spec.{field.strip()}" in str(refused.value), field


def test_a_partition_slurm_lacks_is_rejected_once_and_tried_again_when_the_spec_changes(
    icx_crds: KubeCluster,
    slurm_cluster: None,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o755)
    namespaces = [kube_namespace]
    operator = operator_factory(icx_crds.kubeconfig, namespaces, tracking_uri=mlflow_server.url)
    slurm = {"partition": "nosuch", "workingDirectory": str(tmp_path)}
    spec = TINY_TRAINING | {"backend": "slurm", "slurm": slurm}
    obj = resource("TrainingRun", "nopart", spec)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    refused = wait_phase(icx_crds, "trainingrun", "nopart", kube_namespace, "Invalid")
    ready = condition(refused, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Rejected")
    assert "SLURM refused the job" in ready["message"] and "partition" in ready["message"]
    events = json.loads(icx_crds.kubectl("get", "events", "-n", kube_namespace, "-o", "json"))
    assert any(e["reason"] == "Invalid" for e in events["items"])

    # Polled every second: a refused spec would be submitted again on each poll.
    passes = reconciles(operator, "TrainingRun")
    time.sleep(5)
    assert reconciles(operator, "TrainingRun") == passes, "a refused spec was tried again"
    assert get(icx_crds, "trainingrun", "nopart", kube_namespace)["status"] == refused["status"]

    obj["spec"]["slurm"]["partition"] = "debug"
    apply(icx_crds, obj)

    def submitted() -> dict[str, Any] | None:
        found = get(icx_crds, "trainingrun", "nopart", kube_namespace)
        return found if ((found.get("status") or {}).get("job") or {}).get("slurmJobId") else None

    assert condition(wait_for("a SLURM job id", submitted), "Ready")["reason"] != "Rejected"
    icx_crds.kubectl("delete", "trainingrun", "nopart", "-n", kube_namespace, "--wait=true")


def test_failed_slurm_jobs_say_why(
    icx_crds: KubeCluster,
    slurm_cluster: None,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    """A missing data file: the trainer's own error, from the job's output, in the
    condition; a missing working directory: SLURM's launch failure, not `Signaled`."""
    tmp_path.chmod(0o755)
    operator_factory(icx_crds.kubeconfig, [kube_namespace], tracking_uri=mlflow_server.url)
    slurm = {"partition": "debug", "workingDirectory": str(tmp_path)}
    no_data = TINY_TRAINING | {
        "backend": "slurm",
        "slurm": slurm,
        "data": {"uri": str(tmp_path / "missing.jsonl")},
        "checkpoint": {"path": str(tmp_path / "ckpt")},
    }
    no_dir = TINY_TRAINING | {
        "backend": "slurm",
        "slurm": slurm | {"workingDirectory": str(tmp_path / "not" / "there")},
    }
    for name, spec in (("nodata", no_data), ("nodir", no_dir)):
        obj = resource("TrainingRun", name, spec)
        obj["metadata"]["namespace"] = kube_namespace
        apply(icx_crds, obj)
    failed = wait_phase(icx_crds, "trainingrun", "nodata", kube_namespace, "Failed", timeout=180)
    message = condition(failed, "Ready")["message"]
    assert "the job's last output:" in message and "missing.jsonl" in message, message
    launch = wait_phase(icx_crds, "trainingrun", "nodir", kube_namespace, "Failed", timeout=180)
    assert condition(launch, "Ready")["reason"] not in ("Signaled", "Failed"), launch["status"]


def test_an_unreachable_mlflow_is_retried_with_backoff_until_it_is_back(
    icx_crds: KubeCluster, kube_namespace: str, operator_factory: StartOperator, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    operator_factory(icx_crds.kubeconfig, [kube_namespace], tracking_uri=url)
    spec = {"baseModel": {"mlflow": {"name": "base", "version": "1"}}}
    obj = resource("Alignment", "later", spec)
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    seen: dict[int, float] = {}

    def attempt(wanted: int) -> bool:
        ready = condition(get(icx_crds, "alignment", "later", kube_namespace), "Ready")
        found = re.search(r"attempt (\d+)", ready.get("message", ""))
        if found and ready["reason"] == "BackendUnavailable":
            seen.setdefault(int(found.group(1)), time.monotonic())
        return wanted in seen

    wait_for("the third attempt", lambda: attempt(3), timeout=60, every=0.2)
    # Polled every second, but retried 5 s, then 10 s after a failure.
    assert seen[3] - seen[2] > 8, seen
    message = condition(get(icx_crds, "alignment", "later", kube_namespace), "Ready")["message"]
    assert "MLflow" in message and "next attempt in 20 s" in message, message

    process = start_mlflow(tmp_path / "mlflow", port)
    try:
        wait_http_ok(f"{url}/health", process, tmp_path / "mlflow" / "server.log", timeout=120)
        waiting_ = wait_phase(icx_crds, "alignment", "later", kube_namespace, "Waiting", timeout=60)
        assert "not found in MLflow" in condition(waiting_, "Ready")["message"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_names_no_child_could_carry_run_on_both_backends(
    icx_crds: KubeCluster,
    slurm_cluster: None,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    tmp_path.chmod(0o755)
    operator_factory(icx_crds.kubeconfig, [kube_namespace], tracking_uri=mlflow_server.url)
    names = {
        "kubernetes": LONG_DOTTED,
        "dot-41": "d" * 40 + "." + "e" * 60,
        "cut-to-dash": "a" * 62 + "-b",
    }
    on_kubernetes = TINY_TRAINING | {"kubernetes": {"nodeSelector": HOLD}}
    on_slurm = TINY_TRAINING | {
        "backend": "slurm",
        "slurm": {"partition": "debug", "workingDirectory": str(tmp_path)},
        "hyperparameters": TINY_TRAINING["hyperparameters"] | {"steps": 5000},
        "checkpoint": {"path": str(tmp_path / "ckpt"), "everySteps": 1000},
    }
    objects = [resource("TrainingRun", name, on_kubernetes) for name in names.values()]
    objects.append(resource("TrainingRun", "s." + "l" * 250, on_slurm))
    served = {"model": {"mlflow": {"name": "tiny", "version": "1"}}}
    objects.append(resource("InferenceService", "i" * 70, served))
    objects.append(resource("InferenceService", "v1.2-served", served))
    for obj in objects:
        obj["metadata"]["namespace"] = kube_namespace
        apply(icx_crds, obj)
    for obj in objects:
        kind, name = obj["kind"].lower(), obj["metadata"]["name"]

        def started(kind: str = kind, name: str = name) -> dict[str, Any] | None:
            status = get(icx_crds, kind, name, kube_namespace).get("status") or {}
            ok = status.get("job") if kind == "trainingrun" else status.get("url")
            return status if ok else None

        status = wait_for(f"{kind} {name[:20]}… to start", started, timeout=90)
        assert condition({"status": status}, "Ready").get("reason") not in ("Rejected",)
    jobs = json.loads(icx_crds.kubectl("get", "jobs", "-n", kube_namespace, "-o", "json"))
    assert len(jobs["items"]) == len(names)
    services = icx_crds.kubectl("get", "services", "-n", kube_namespace, "-o", "name")
    assert len(services.split()) == 2
    for obj in objects:
        icx_crds.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"],
                         "-n", kube_namespace, "--wait=true")  # fmt: skip


def test_children_a_backend_refuses_are_rejected_on_both_controllers(
    icx_crds: KubeCluster,
    slurm_cluster: None,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    """A node selector key the API server refuses (422 on the Job, the Deployment) and a
    partition SLURM lacks (an InferenceService's replica jobs): Ready=False `Rejected`."""
    tmp_path.chmod(0o755)
    namespaces = [kube_namespace]
    operator_factory(icx_crds.kubeconfig, namespaces, tracking_uri=mlflow_server.url)
    bad_placement = {"nodeSelector": {"not a label key!": "x"}}
    served = {"model": {"mlflow": {"name": "tiny", "version": "1"}}}
    objects = {
        ("trainingrun", "badjob"): TINY_TRAINING | {"kubernetes": bad_placement},
        ("inferenceservice", "baddeploy"): served | {"kubernetes": bad_placement},
        ("inferenceservice", "nopart"): served
        | {"backend": "slurm", "slurm": {"partition": "nosuch", "workingDirectory": str(tmp_path)}},
    }
    kinds = {"trainingrun": "TrainingRun", "inferenceservice": "InferenceService"}
    for (kind, name), spec in objects.items():
        obj = resource(kinds[kind], name, spec)
        obj["metadata"]["namespace"] = kube_namespace
        apply(icx_crds, obj)
    for kind, name in objects:

        def rejected(kind: str = kind, name: str = name) -> dict[str, Any] | None:
            ready = condition(get(icx_crds, kind, name, kube_namespace), "Ready")
            return ready if ready.get("reason") == "Rejected" else None

        ready = wait_for(f"{kind} {name} Rejected", rejected, timeout=90)
        assert ready["status"] == "False"
        expected = "SLURM refused" if name == "nopart" else "the API server refused a child"
        assert expected in ready["message"], ready["message"]
    jobs = icx_crds.kubectl("get", "jobs,deployments", "-n", kube_namespace, "-o", "name")
    assert not jobs.split()
