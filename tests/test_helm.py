"""The Helm chart deploy/helm/infinitecontext: linted, rendered and installed with the
Helm built from tests/helm/go.mod, and checked against the kustomize manifests of
deploy/ object by object so the two cannot drift."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugins.helm import Helm, HelmError
from plugins.kube import KubeCluster

from infinitecontext.crds.models import KINDS
from infinitecontext.devtools.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "infinitecontext"
DEPLOY = REPO / "deploy"

# Labels only the chart sets (Helm's bookkeeping); everything else must match deploy/.
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
CLUSTER_SCOPED = {
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterKopfPeering",
    "Namespace",
}

Key = tuple[str, str, str]  # kind, namespace ("" when cluster-scoped), name


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_key(docs: list[dict[str, Any]], namespace: str) -> dict[Key, dict[str, Any]]:
    """The objects by kind/namespace/name, without the chart's own labels; an object with
    no namespace lands in `namespace`, as `kubectl apply -n` or `helm install -n` do."""
    objects: dict[Key, dict[str, Any]] = {}
    for doc in docs:
        obj = copy.deepcopy(doc)
        metadata = obj["metadata"]
        if obj["kind"] not in CLUSTER_SCOPED:
            metadata.setdefault("namespace", namespace)
        labels = {k: v for k, v in metadata.pop("labels", {}).items() if k not in HELM_LABELS}
        if labels:
            metadata["labels"] = labels
        objects[(obj["kind"], metadata.get("namespace", ""), metadata["name"])] = obj
    return objects


def kustomize(kubectl: Path, folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, check=True
    )
    return documents(done.stdout)


def template(helm: Helm, namespace: str, *values: str) -> list[dict[str, Any]]:
    sets = [arg for value in values for arg in ("--set", value)]
    return documents(helm("template", "icx", str(CHART), "--namespace", namespace, *sets))


def chart_crds() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted((CHART / "crds").glob("*.yaml"))
        for doc in documents(path.read_text())
    ]


def assert_same_objects(rendered: dict[Key, Any], expected: dict[Key, Any]) -> None:
    assert sorted(rendered) == sorted(expected)
    for key, obj in expected.items():
        assert rendered[key] == obj, f"{key} differs between the chart and deploy/"


@pytest.fixture(scope="module")
def kubectl(kube_binaries: Path) -> Path:
    return kube_binaries / "kubectl"


# --- files the chart keeps copies of (no Helm needed) ----------------------------------


def test_chart_crds_are_the_generated_and_kopf_ones():
    for kind in KINDS:
        name = f"{kind.crd_name}.yaml"
        assert (CHART / "crds" / name).read_text() == (REPO / "crds" / name).read_text()
    peering_crds = [
        doc
        for doc in documents((DEPLOY / "peering.yaml").read_text())
        if doc["kind"] == "CustomResourceDefinition"
    ]
    assert documents((CHART / "crds" / "kopf-peering.yaml").read_text()) == peering_crds


def test_chart_monitoring_files_are_deploy_monitoring_ones():
    copies = {
        "files/prometheusrule.yaml": "prometheusrule.yaml",
        "files/prometheus-adapter-rules.yaml": "prometheus-adapter-rules.yaml",
    } | {
        f"files/dashboards/{p.name}": f"dashboards/{p.name}"
        for p in (DEPLOY / "monitoring" / "dashboards").glob("*.json")
    }
    assert sorted(p.name for p in (CHART / "files" / "dashboards").iterdir()) == sorted(
        Path(source).name for source in copies.values() if source.startswith("dashboards/")
    )
    for copied, source in copies.items():
        assert (CHART / copied).read_text() == (DEPLOY / "monitoring" / source).read_text(), (
            f"{copied} differs from deploy/monitoring/{source}: run `make helm-sync`"
        )


# --- helm lint and helm template --------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [(), ("scope=namespace", "monitoring.enabled=true")],
    ids=["defaults", "namespaced-monitoring"],
)
def test_chart_lints(helm, values):
    sets = [arg for value in values for arg in ("--set", value)]
    out = helm("lint", "--strict", str(CHART), *sets)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_defaults_render_deploy(helm, kubectl):
    """`helm template` with the defaults is `kubectl kustomize deploy/` less the Namespace
    (helm install --create-namespace makes it) and the CRDs (the chart's crds/)."""
    namespace = "infinitecontext-system"
    kustomized = kustomize(kubectl, DEPLOY)
    crds = [doc for doc in kustomized if doc["kind"] == "CustomResourceDefinition"]
    rest = [
        doc for doc in kustomized if doc["kind"] not in {"CustomResourceDefinition", "Namespace"}
    ]
    assert_same_objects(by_key(template(helm, namespace), namespace), by_key(rest, namespace))
    # The same CRDs: their content is checked file by file above (kustomize's YAML writer
    # turns 1.0e-06 into 1e-06, which PyYAML reads back as a string).
    assert sorted(by_key(chart_crds(), namespace)) == sorted(by_key(crds, namespace))


def test_namespace_scope_renders_deploy_namespaced(helm, kubectl):
    namespace = "infinitecontext"  # deploy/namespaced/kustomization.yaml's
    rendered = template(helm, namespace, "scope=namespace")
    expected = kustomize(kubectl, DEPLOY / "namespaced")
    assert_same_objects(by_key(rendered, namespace), by_key(expected, namespace))
    assert not {doc["kind"] for doc in rendered} & CLUSTER_SCOPED


def test_monitoring_renders_deploy_monitoring(helm, kubectl):
    namespace = "infinitecontext-system"
    operator = by_key(template(helm, namespace), namespace)
    everything = by_key(template(helm, namespace, "monitoring.enabled=true"), namespace)
    monitoring = {key: obj for key, obj in everything.items() if key not in operator}
    expected = by_key(kustomize(kubectl, DEPLOY / "monitoring"), namespace)
    assert_same_objects(monitoring, expected)
    # One part off leaves the others.
    without_rule = template(
        helm, namespace, "monitoring.enabled=true", "monitoring.prometheusRule.enabled=false"
    )
    kinds = {doc["kind"] for doc in without_rule}
    assert "PrometheusRule" not in kinds and "PodMonitor" in kinds


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    return found


def test_values_reach_the_operator(helm):
    rendered = template(
        helm,
        "ops",
        "image.repository=registry.example/icx/operator",
        "image.tag=0.2.0-rc1",
        "image.pullPolicy=Always",
        "resources.limits.memory=2Gi",
        "slurm.url=https://slurm.example:6820",
        "slurm.user=svc-icx",
        "slurm.tokenSecret.name=slurm-jwt",
        "slurm.tokenSecret.key=jwt",
        "mlflow.trackingUri=https://mlflow.example",
        "logFormat=json",
        "extraEnv[0].name=ICX_OPERATOR_POLL_SECONDS",
        "extraEnv[0].value=30",
        "extraEnv[1].name=ICX_PROMETHEUS_URL",
        "extraEnv[1].valueFrom.configMapKeyRef.name=prometheus",
        "extraEnv[1].valueFrom.configMapKeyRef.key=url",
        "nodeSelector.pool=system",
    )
    pod = deployment(rendered)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert container["image"] == "registry.example/icx/operator:0.2.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["limits"]["memory"] == "2Gi"
    assert env["ICX_SLURM_URL"] == "https://slurm.example:6820"
    assert env["ICX_SLURM_USER"] == "svc-icx"
    assert env["ICX_SLURM_TOKEN_FILE"] == "/var/run/secrets/slurm/jwt"
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example"
    assert env["ICX_LOG_FORMAT"] == "json"
    assert env["ICX_OPERATOR_POLL_SECONDS"] == "30"  # a string, as the API server needs
    assert container["env"][-1]["valueFrom"] == {
        "configMapKeyRef": {"name": "prometheus", "key": "url"}
    }
    assert pod["nodeSelector"] == {"pool": "system"}
    token_volume = next(v for v in pod["volumes"] if v["name"] == "slurm-token")
    assert token_volume["secret"]["secretName"] == "slurm-jwt"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("scope=everywhere", "scope"),
        ("slurm.url=slurmrestd:6820", "slurm.url"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("logFormat=yaml", "logFormat"),
        ("replica=3", "replica"),  # a misspelt key is an error, not silently ignored
    ],
)
def test_invalid_values_are_rejected(helm, value, complaint):
    with pytest.raises(HelmError, match=complaint):
        template(helm, "ops", value)


# --- install on the local control plane -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scope", "objects"),
    [
        ("cluster", ["clusterkopfpeering", "clusterrole", "clusterrolebinding"]),
        ("namespace", ["kopfpeering", "role", "rolebinding"]),
    ],
    ids=["cluster", "namespace"],
)
def test_install_makes_the_operator_available_and_uninstall_removes_it(
    helm: Helm, kube_cluster: KubeCluster, scope: str, objects: list[str]
):
    """The chart installs and its Deployment becomes Available; `scope: namespace` as
    docs/install.md has it (the CRDs applied first, then `--skip-crds`). On the local
    control plane the pods land on kwok's simulated nodes, which report them Running and
    Ready without running the image: this proves the objects are accepted and wired, not
    that the operator inside starts."""
    namespace = f"icx-helm-{uuid.uuid4().hex[:6]}"
    kubeconfig = kube_cluster.kubeconfig
    names = ["deployment/infinitecontext-operator", "serviceaccount/infinitecontext-operator"]
    names += [
        f"{kind}/infinitecontext{'' if 'peering' in kind else '-operator'}" for kind in objects
    ]
    args = ["--set", f"scope={scope}"]
    if scope == "namespace":
        kube_cluster.kubectl("apply", "-f", str(CHART / "crds"))
        args.append("--skip-crds")
    try:
        helm(
            "install", "icx", str(CHART), "--namespace", namespace, "--create-namespace",
            "--wait", "--timeout", "120s", *args, kubeconfig=kubeconfig,
        )  # fmt: skip
        status = json.loads(kube_cluster.kubectl("get", names[0], "-n", namespace, "-o", "json"))[
            "status"
        ]
        available = {c["type"]: c["status"] for c in status["conditions"]}["Available"]
        assert available == "True" and status["readyReplicas"] == 2
        for kind in KINDS:
            kube_cluster.kubectl("get", f"crd/{kind.crd_name}")
        kube_cluster.kubectl("get", "-n", namespace, *names)

        helm("uninstall", "icx", "--namespace", namespace, "--wait", kubeconfig=kubeconfig)

        def removed() -> bool:
            left = kube_cluster.kubectl(
                "get", "-n", namespace, "--ignore-not-found", "-o", "name", *names
            )
            return not left.strip()

        wait_for("helm uninstall to remove the operator", removed, 60)
        # Helm never deletes CRDs (that would delete every resource of the kinds).
        kube_cluster.kubectl("get", f"crd/{KINDS[0].crd_name}")
    finally:
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
