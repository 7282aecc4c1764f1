"""Tenancy: what a CR author may choose (the admin's policy, `Forbidden`) and how the
pods the operator creates are confined (docs/security.md).

The policy is pure logic, tested on the planners; the e2e tests show the real API
server's Pod Security admission (`restricted`) accepting the operator's pods, and
the real operator refusing a spec with reason `Forbidden`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugins.inference import register_served_models
from plugins.kube import KubeCluster
from plugins.mlflow_server import MlflowServer
from plugins.operator import StartOperator

from infinitecontext.crds.models import Revision
from infinitecontext.devtools.cluster import ClusterError
from infinitecontext.devtools.waiting import wait_for
from infinitecontext.operator.inference import planner as inference
from infinitecontext.operator.inference.children import deployment
from infinitecontext.operator.resource import Resource
from infinitecontext.operator.tenancy import FORBIDDEN, TenancyPolicy
from infinitecontext.operator.workloads.planner import (
    ApplyChildren,
    InvalidSpec,
    Observed,
    parse,
    reconcile,
)

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TINY = {"model": {"preset": "tiny"}, "hyperparameters": {"steps": 8, "warmupSteps": 2}}
OPERATOR_URI = "http://mlflow.icx.svc:5000"
POLICY = TenancyPolicy(
    service_accounts=["trainer"],
    priority_classes=["batch-low"],
    image_prefixes=["ghcr.io/infinitecontext/"],
    node_selectors=["gpu", "pool=training"],
).with_tracking_uri(OPERATOR_URI)


def training_run(kubernetes: dict[str, Any] | None = None, **spec: Any) -> Resource:
    body = dict(TINY, **spec)
    if kubernetes is not None:
        body["kubernetes"] = kubernetes
    return Resource("TrainingRun", "run", "ns", "uid-1", 1, body, {})


def inference_service(**spec: Any) -> Resource:
    body = {"model": {"mlflow": {"name": "tiny", "version": "1"}}, **spec}
    return Resource("InferenceService", "svc", "ns", "uid-2", 1, body, {})


def ready(plan_status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in plan_status["conditions"] if c["type"] == "Ready")


# ---------------------------------------------------------------- the admin's policy


@pytest.mark.parametrize(
    ("kubernetes", "field"),
    [
        ({"serviceAccountName": "cluster-admin-sa"}, "serviceAccountName"),
        ({"priorityClassName": "system-node-critical"}, "priorityClassName"),
        ({"image": "evil.example/miner:latest"}, "image"),
        ({"image": "ghcr.io/infinitecontext.evil/x"}, "image"),
        ({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}, "nodeSelector"),
        ({"nodeSelector": {"pool": "system"}}, "nodeSelector"),
        (
            {"tolerations": [{"key": "node-role.kubernetes.io/control-plane"}]},
            "tolerations",
        ),
        ({"tolerations": [{"operator": "Exists"}]}, "tolerations"),
    ],
)
def test_what_the_policy_does_not_allow_is_forbidden_and_nothing_runs(
    kubernetes: dict[str, Any], field: str
) -> None:
    res = training_run(kubernetes)
    spec = parse(res, POLICY)
    assert isinstance(spec, InvalidSpec) and spec.reason == FORBIDDEN
    assert field in spec.message
    plan = reconcile(res, spec, Observed(tracking_uri=OPERATOR_URI), NOW)
    assert ready(plan.status)["reason"] == FORBIDDEN
    assert ready(plan.status)["status"] == "False"
    assert plan.actions == []
    assert [e.reason for e in plan.events] == ["Invalid"]


def test_what_the_policy_allows_runs() -> None:
    kubernetes = {
        "serviceAccountName": "trainer",
        "priorityClassName": "batch-low",
        "image": "ghcr.io/infinitecontext/trainer:0.1.0",
        "nodeSelector": {"gpu": "h100", "pool": "training"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
    }
    res = training_run(kubernetes)
    spec = parse(res, POLICY)
    assert not isinstance(spec, InvalidSpec), spec
    plan = reconcile(res, spec, Observed(tracking_uri=OPERATOR_URI), NOW)
    assert any(isinstance(a, ApplyChildren) for a in plan.actions)


def test_the_default_policy_allows_only_the_default_account_and_no_priority_class() -> None:
    assert not isinstance(parse(training_run({"serviceAccountName": "default"})), InvalidSpec)
    for kubernetes in ({"serviceAccountName": "builder"}, {"priorityClassName": "high"}):
        spec = parse(training_run(kubernetes))
        assert isinstance(spec, InvalidSpec) and spec.reason == FORBIDDEN


def test_a_tracking_uri_must_be_the_operators_or_on_the_allowlist() -> None:
    metadata = {"trackingUri": "http://169.254.169.254/latest/meta-data/"}
    spec = parse(training_run(mlflow=metadata), POLICY)
    assert isinstance(spec, InvalidSpec) and spec.reason == FORBIDDEN
    assert "trackingUri" in spec.message
    own = parse(training_run(mlflow={"trackingUri": OPERATOR_URI + "/"}), POLICY)
    assert not isinstance(own, InvalidSpec)
    listed = POLICY.model_copy(update={"tracking_uris": ["https://mlflow.team-a.example"]})
    spec = parse(training_run(mlflow={"trackingUri": "https://mlflow.team-a.example"}), listed)
    assert not isinstance(spec, InvalidSpec)


def test_an_inference_service_is_checked_too_and_extra_args_have_a_denylist() -> None:
    for spec_ in (
        {"kubernetes": {"serviceAccountName": "cluster-admin-sa"}},
        {"server": {"extraArgs": ["--trust-remote-code"]}},
        {"server": {"extraArgs": ["--host=0.0.0.0"]}},
        {"server": {"extraArgs": ["--trust_remote_code"]}},
        {"server": {"extraArgs": ["--trust-remote"]}},
        {"mlflow": {"trackingUri": "http://10.0.0.1/"}},
    ):
        svc = inference_service(**spec_)
        parsed = inference.parse(svc, POLICY)
        assert isinstance(parsed, inference.InvalidSpec) and parsed.reason == FORBIDDEN, spec_
        plan = inference.invalid_plan(svc, parsed, NOW)
        assert ready(plan.status)["reason"] == FORBIDDEN
        assert plan.apply == [] and plan.delete == []
    allowed = inference_service(server={"extraArgs": ["--enforce-eager", "--max-num-seqs=4"]})
    assert not isinstance(inference.parse(allowed, POLICY), inference.InvalidSpec)


def test_the_policy_file_is_camel_case_yaml_and_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"serviceAccounts": ["trainer"], "nodeSelectors": ["gpu"]}))
    policy = TenancyPolicy.load(str(path))
    assert policy.service_accounts == ["trainer"] and policy.node_selectors == ["gpu"]
    path.write_text(yaml.safe_dump({"serviceAcounts": ["trainer"]}))
    with pytest.raises(ValueError, match="serviceAcounts"):
        TenancyPolicy.load(str(path))


# ---------------------------------------------------------------- confined pods


def assert_restricted(pod: dict[str, Any]) -> None:
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}


def job_pod(res: Resource) -> dict[str, Any]:
    spec = parse(res)
    plan = reconcile(res, spec, Observed(tracking_uri=OPERATOR_URI), NOW)
    [apply] = [a for a in plan.actions if isinstance(a, ApplyChildren)]
    job = apply.objects[-1]
    assert job["kind"] == "Job"
    return dict(job["spec"]["template"]["spec"])


def service_pod(svc: Resource) -> dict[str, Any]:
    spec = inference.parse(svc)
    assert not isinstance(spec, inference.InvalidSpec)
    template = inference.served_template(spec, "models:/tiny/1")
    revision = Revision(revision=1, model_version="1", started=NOW, outcome="Progressing")
    revision.template = template
    obj = deployment(svc, "stable", revision, 1, 600, OPERATOR_URI)
    return dict(obj["spec"]["template"]["spec"])


def test_trainer_jobs_and_server_deployments_run_restricted() -> None:
    assert_restricted(job_pod(training_run()))
    assert_restricted(service_pod(inference_service()))


def test_a_spec_may_ask_for_the_service_account_token() -> None:
    kubernetes = {"automountServiceAccountToken": True}
    assert job_pod(training_run(kubernetes))["automountServiceAccountToken"] is True


# ---------------------------------------------------------------- SLURM accounts


def test_a_namespace_is_charged_to_its_slurm_account() -> None:
    from infinitecontext.operator.workloads.planner import SubmitSlurm

    policy = POLICY.model_copy(update={"slurm_accounts": {"ns": "team-a"}})
    res = training_run(backend="slurm")
    plan = reconcile(res, parse(res, policy), Observed(tracking_uri=OPERATOR_URI), NOW)
    [submit] = plan.actions
    assert isinstance(submit, SubmitSlurm) and submit.request.account == "team-a"
    same = parse(training_run(backend="slurm", slurm={"account": "team-a"}), policy)
    assert not isinstance(same, InvalidSpec)
    other = parse(training_run(backend="slurm", slurm={"account": "team-b"}), policy)
    assert isinstance(other, InvalidSpec) and other.reason == FORBIDDEN
    assert "team-a" in other.message
    service = inference_service(backend="slurm", slurm={"account": "team-b"})
    refused = inference.parse(service, policy)
    assert isinstance(refused, inference.InvalidSpec) and refused.reason == FORBIDDEN
    unlisted = POLICY.model_copy(update={"slurm_accounts": {"elsewhere": "x"}})
    free = parse(training_run(backend="slurm", slurm={"account": "team-b"}), unlisted)
    assert not isinstance(free, InvalidSpec) and free.slurm is not None
    assert free.slurm.account == "team-b"


# ---------------------------------------------------------------- per-run paths


def test_a_recreated_resource_gets_its_own_checkpoint_directory_on_either_backend() -> None:
    """Same name, new UID: nothing of the old run's checkpoints (or its MLflow run id
    saved beside them) is resumed; a path the spec sets is used as given."""
    from infinitecontext.operator.workloads.planner import SubmitSlurm

    def rendered(uid: str, **spec: Any) -> str:
        res = Resource("TrainingRun", "run", "ns", uid, 1, dict(TINY, **spec), {})
        plan = reconcile(res, parse(res), Observed(tracking_uri=OPERATOR_URI), NOW)
        [action] = plan.actions
        if isinstance(action, SubmitSlurm):
            return json.dumps([action.request.command, list(action.request.files)])
        assert isinstance(action, ApplyChildren)
        return json.dumps(action.objects)

    for backend in ("kubernetes", "slurm"):
        first, second = rendered("uid-1", backend=backend), rendered("uid-2", backend=backend)
        assert "/checkpoints/uid-1" in first and "/checkpoints/uid-2" not in first
        assert "/checkpoints/uid-2" in second and "/checkpoints/uid-1" not in second
        chosen = rendered("uid-1", backend=backend, checkpoint={"path": "/data/mine"})
        assert "/data/mine" in chosen and "/checkpoints/uid-1" not in chosen
    pod = job_pod(training_run(checkpoint={"persistentVolumeClaim": "shared"}))
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "checkpoints"]
    assert mount["mountPath"] == "/checkpoints"  # the claim's root; the run writes below


# ---------------------------------------------------------------- credentials

WANDB = {"name": "WANDB_API_KEY", "secretKeyRef": {"name": "wandb", "key": "token"}}
WANDB_ENV = {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": WANDB["secretKeyRef"]}}


def test_secret_env_reaches_jobs_and_servers_as_references_only() -> None:
    pod = job_pod(training_run(secretEnv=[WANDB]))
    assert WANDB_ENV in pod["containers"][0]["env"]
    server = service_pod(inference_service(secretEnv=[WANDB]))
    assert WANDB_ENV in server["containers"][0]["env"]
    plain = inference.served_template(
        inference.parse(inference_service()),  # type: ignore[arg-type]
        "models:/tiny/1",
    )
    assert "secretEnv" not in plain.model_dump(by_alias=True, exclude_none=True)


def test_secret_env_is_refused_on_slurm_until_it_has_a_secret_channel() -> None:
    spec = parse(training_run(backend="slurm", secretEnv=[WANDB]))
    assert isinstance(spec, InvalidSpec) and "secretEnv" in spec.message
    svc = inference.parse(inference_service(backend="slurm", secretEnv=[WANDB]))
    assert isinstance(svc, inference.InvalidSpec) and "secretEnv" in svc.message


# ---------------------------------------------------------------- the serving API key


def test_the_api_key_comes_from_the_secret_and_the_policy_may_require_it() -> None:
    secret = {"name": "svc-key", "key": "token"}
    pod = service_pod(inference_service(server={"apiKey": secret}))
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["VLLM_API_KEY"] == {
        "name": "VLLM_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "svc-key", "key": "token"}},
    }
    assert "VLLM_API_KEY" not in {
        e["name"] for e in service_pod(inference_service())["containers"][0]["env"]
    }
    strict = POLICY.model_copy(update={"require_api_key": True})
    parsed = inference.parse(inference_service(), strict)
    assert isinstance(parsed, inference.InvalidSpec) and parsed.reason == FORBIDDEN
    assert not isinstance(
        inference.parse(inference_service(server={"apiKey": secret}), strict), inference.InvalidSpec
    )


def test_slurm_services_refuse_an_api_key_until_they_support_one() -> None:
    svc = inference_service(backend="slurm", server={"apiKey": {"name": "k", "key": "k"}})
    parsed = inference.parse(svc)
    assert isinstance(parsed, inference.InvalidSpec) and "apiKey" in parsed.message


def test_readiness_probes_through_the_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM guards /v1/* with VLLM_API_KEY; the in-process probe completion carries it."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from infinitecontext.server.readiness import readiness_middleware

    def completions(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer s3cret":
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        return JSONResponse({"usage": {"completion_tokens": 1}})

    app = Starlette(
        routes=[Route("/v1/completions", completions, methods=["POST"])],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=readiness_middleware)],
    )
    client = TestClient(app)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert client.get("/ready").status_code == 503
    monkeypatch.setenv("VLLM_API_KEY", "s3cret")
    assert client.get("/ready").json() == {"ready": True}


# ---------------------------------------------------------------- on the real API server

HOLD = {"infinitecontext.dev/test": "hold"}  # no kwok node has it: pods stay Pending


def custom(kind: str, name: str, spec: dict[str, Any]) -> str:
    body = {"apiVersion": "infinitecontext.dev/v1alpha1", "kind": kind, "metadata": {"name": name}}
    return yaml.safe_dump(body | {"spec": spec})


def get(cluster: KubeCluster, namespace: str, *what: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", *what, "-n", namespace, "-o", "json")))


def test_the_operators_pods_pass_restricted_pod_security_admission(
    icx_crds: KubeCluster,
    kube_namespace: str,
    operator_factory: StartOperator,
    mlflow_server: MlflowServer,
) -> None:
    """In a namespace that enforces the `restricted` Pod Security Standard, the Job and
    Deployment controllers create the operator's pods; a root pod is refused there."""
    cluster, ns = icx_crds, kube_namespace
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"}}
    plain["spec"] = {"containers": [{"name": "c", "image": "busybox"}]}
    with pytest.raises(ClusterError, match="restricted"):
        cluster.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", stdin=json.dumps(plain))
    register_served_models(mlflow_server.url)  # the InferenceService's tiny 1
    operator_factory(cluster.kubeconfig, [ns], tracking_uri=mlflow_server.url)
    image = {"image": "trainer:test", "nodeSelector": HOLD}
    cluster.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        stdin=custom("TrainingRun", "tr", {**TINY, "kubernetes": image, "secretEnv": [WANDB]}),
    )
    service = {
        "model": {"mlflow": {"name": "tiny", "version": "1"}},
        "resources": {"cpu": "100m", "memory": "256Mi"},
        "kubernetes": {"image": "server:test", "nodeSelector": HOLD},
        "server": {"apiKey": {"name": "svc-key", "key": "api-key"}},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=custom("InferenceService", "svc", service))

    def pods() -> dict[str, dict[str, Any]] | None:
        found = get(cluster, ns, "pods")["items"]
        owners = {p["metadata"]["ownerReferences"][0]["kind"]: p for p in found}
        return owners if {"Job", "ReplicaSet"} <= set(owners) else None

    created = wait_for("the Job's and the Deployment's pods", pods, 90, every_s=0.5)
    for pod in created.values():
        assert_restricted(pod["spec"])
    server_env = created["ReplicaSet"]["spec"]["containers"][0]["env"]
    key = {"secretKeyRef": {"name": "svc-key", "key": "api-key"}}
    assert {"name": "VLLM_API_KEY", "valueFrom": key} in server_env
    assert WANDB_ENV in created["Job"]["spec"]["containers"][0]["env"]
    on_slurm = {**TINY, "backend": "slurm", "secretEnv": [WANDB]}
    with pytest.raises(ClusterError, match="secretEnv needs backend: kubernetes"):
        cluster.kubectl(
            "apply", "--dry-run=server", "-n", ns, "-f", "-",
            stdin=custom("TrainingRun", "s", on_slurm),
        )  # fmt: skip
    policy = REPO / "deploy" / "serving" / "networkpolicy.yaml"
    cluster.kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(policy))


def test_the_operators_slurm_token_is_mounted_for_its_user_only(icx_crds: KubeCluster) -> None:
    rendered = yaml.safe_load_all(icx_crds.kubectl("kustomize", str(REPO / "deploy")))
    [operator] = [d for d in rendered if d and d["kind"] == "Deployment"]
    pod = operator["spec"]["template"]["spec"]
    [token] = [v for v in pod["volumes"] if v["name"] == "slurm-token"]
    assert token["secret"]["defaultMode"] == 0o400
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_a_forbidden_spec_is_refused_without_running_or_fetching_anything(
    icx_crds: KubeCluster,
    kube_namespace: str,
    operator_factory: StartOperator,
    operator_account: Path,
    tmp_path: Path,
) -> None:
    """The admin's policy file: a TrainingRun as a ServiceAccount it does not list, and
    an InferenceService whose tracking URI is not the operator's, end `Ready=False,
    reason Forbidden`; no Job or Deployment is created and the URI is never fetched."""
    cluster, ns = icx_crds, kube_namespace
    fetched: list[str] = []
    trap = _RecordingServer(fetched)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"serviceAccounts": ["trainer"]}))
    operator_factory(operator_account, [ns], extra_args=["--policy", str(policy)])
    options = {"image": "trainer:test", "nodeSelector": HOLD, "serviceAccountName": "admin"}
    run = {**TINY, "kubernetes": options}
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=custom("TrainingRun", "tr", run))
    service = {
        "model": {"mlflow": {"name": "tiny", "alias": "prod"}},
        "mlflow": {"trackingUri": trap.url},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=custom("InferenceService", "svc", service))
    try:
        messages = {}
        for kind, name in (("trainingrun", "tr"), ("inferenceservice", "svc")):

            def refused(kind: str = kind, name: str = name) -> dict[str, Any] | None:
                status = get(cluster, ns, kind, name).get("status") or {}
                found = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
                return found[0] if found and found[0]["reason"] == FORBIDDEN else None

            condition = wait_for(f"{kind} {name} Forbidden", refused, 60, every_s=0.5)
            assert condition["status"] == "False"
            messages[kind] = condition["message"]
        assert "serviceAccountName 'admin'" in messages["trainingrun"]
        assert "trackingUri" in messages["inferenceservice"]
        assert get(cluster, ns, "jobs")["items"] == []
        assert get(cluster, ns, "deployments")["items"] == []
        events = cluster.kubectl("get", "events", "-n", ns, "-o", "json")
        assert FORBIDDEN in events
        assert fetched == []
    finally:
        trap.close()


def test_an_mlflow_error_shows_no_response_body_in_status_or_events(
    icx_crds: KubeCluster, kube_namespace: str, operator_factory: StartOperator
) -> None:
    """The tracking URI's host answers 500 with a body: the InferenceService waits for
    its model and says MLflow failed, but the body is in neither status nor Events."""
    cluster, ns = icx_crds, kube_namespace
    trap = _RecordingServer([], status=500)
    operator_factory(cluster.kubeconfig, [ns], tracking_uri=trap.url)
    service = {"model": {"mlflow": {"name": "tiny", "alias": "prod"}}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=custom("InferenceService", "svc", service))
    try:

        def waiting() -> dict[str, Any] | None:
            status = get(cluster, ns, "inferenceservice", "svc").get("status") or {}
            found = [c for c in status.get("conditions", []) if "MLflow" in c["message"]]
            return found[0] if found else None

        shown = wait_for("the MLflow failure in status", waiting, 60, every_s=0.5)
        assert "MlflowException" in shown["message"]
        everything = cluster.kubectl("get", "inferenceservice,events", "-n", ns, "-o", "json")
        assert trap.body.decode() not in everything
    finally:
        trap.close()


def test_registry_errors_keep_the_code_and_drop_the_text() -> None:
    from mlflow.exceptions import MlflowException

    from infinitecontext.operator import registry

    answer = MlflowException("Response body: 'ami-id instance-id'", error_code="INTERNAL_ERROR")
    shown = str(registry._classified(answer))
    assert "INTERNAL_ERROR" in shown and "ami-id" not in shown


def test_a_namespaces_slurm_jobs_are_charged_to_its_account(
    icx_crds: KubeCluster,
    slurm_cluster: None,
    kube_namespace: str,
    mlflow_server: MlflowServer,
    operator_factory: StartOperator,
    tmp_path: Path,
) -> None:
    """The admin maps the namespace to a SLURM account: the job SLURM runs carries it,
    and a spec that names another account is Forbidden and submits nothing."""
    import subprocess

    cluster, ns = icx_crds, kube_namespace
    tmp_path.chmod(0o755)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"slurmAccounts": {ns: "team-a"}}))
    operator_factory(
        cluster.kubeconfig,
        [ns],
        tracking_uri=mlflow_server.url,
        extra_args=["--policy", str(policy)],
    )
    spec = {
        **TINY,
        "backend": "slurm",
        "slurm": {"partition": "debug", "workingDirectory": str(tmp_path)},
        "checkpoint": {"path": str(tmp_path / "ckpt")},
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=custom("TrainingRun", "tr", spec))
    other = {**spec, "slurm": {**spec["slurm"], "account": "team-b"}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", stdin=custom("TrainingRun", "other", other))

    def job_id() -> int | None:
        job = (get(cluster, ns, "trainingrun", "tr").get("status") or {}).get("job") or {}
        return job.get("slurmJobId")

    submitted = wait_for("a SLURM job id", job_id, 120, every_s=0.5)
    shown = subprocess.run(
        ["scontrol", "show", "job", str(submitted)], capture_output=True, text=True, check=True
    ).stdout
    assert "Account=team-a" in shown

    def refused() -> dict[str, Any] | None:
        status = get(cluster, ns, "trainingrun", "other").get("status") or {}
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return status if ready and ready[0]["reason"] == FORBIDDEN else None

    assert "job" not in wait_for("the other account Forbidden", refused, 60, every_s=0.5)
    cluster.kubectl("delete", "trainingrun", "tr", "other", "-n", ns, "--wait=true")


def test_a_registered_models_manifest_is_recorded_and_checked_before_serving(
    mlflow_server: MlflowServer,
    tiny_hf_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Registration tags the version with the sha256 of the job's manifest; a model
    whose files and manifest were both replaced in the artifact store afterwards is
    refused by `icx serve`'s resolver, the original is served."""
    import shutil

    from infinitecontext.operator import registry
    from infinitecontext.server.manifest import (
        MANIFEST_NAME,
        MANIFEST_TAG,
        ModelError,
        manifest_sha256,
        write_manifest,
    )
    from infinitecontext.server.resolve import resolve_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    client = registry.client(mlflow_server.url)
    run_id = client.create_run(experiment_id="0").info.run_id
    client.log_artifacts(run_id, str(tiny_hf_model), "model")
    name = f"tenancy-{tmp_path.name}"[:60]
    found = registry.register(client, name, f"runs:/{run_id}/model", run_id, {})
    tags = client.get_model_version(name, found.version).tags
    recorded = manifest_sha256((tiny_hf_model / MANIFEST_NAME).read_bytes())
    assert tags[MANIFEST_TAG] == recorded
    assert resolve_model(f"models:/{name}/{found.version}", tmp_path / "first").is_dir()
    swapped = tmp_path / "swapped"
    shutil.copytree(tiny_hf_model, swapped)
    config = json.loads((swapped / "config.json").read_text())
    (swapped / "config.json").write_text(json.dumps(config | {"swapped": True}))
    write_manifest(swapped)  # consistent with the new files: only the tag tells
    client.log_artifacts(run_id, str(swapped), "model")
    with pytest.raises(ModelError, match="not the manifest recorded at registration"):
        resolve_model(f"models:/{name}/{found.version}", tmp_path / "second")


def test_the_model_cache_is_private_to_its_user(tmp_path: Path) -> None:
    """A shared cache root (a SLURM working directory) holds a 0700 directory per user;
    one that another user could write to is refused."""
    import os

    from infinitecontext.server.manifest import ModelError
    from infinitecontext.server.resolve import private_cache

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    mine = private_cache(shared)
    assert mine.parent == shared and mine.stat().st_mode & 0o777 == 0o700
    assert mine.stat().st_uid == os.getuid()
    mine.chmod(0o777)
    with pytest.raises(ModelError, match="writable by other users"):
        private_cache(shared)


class _RecordingServer:
    """An HTTP server that records every request path (an SSRF target) and answers
    `status` with a body that must never be shown."""

    body = b"secret-instance-credentials"

    def __init__(self, seen: list[str], status: int = 200) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(_RecordingServer.body)))
                self.end_headers()
                self.wfile.write(_RecordingServer.body)

            do_POST = do_GET

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
