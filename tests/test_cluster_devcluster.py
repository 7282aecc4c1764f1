"""The pieces of devcluster.py that need no running plane, and its CLI end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from infinitecontext.cli import app
from infinitecontext.devtools import cluster as devcluster
from infinitecontext.devtools.pki import write_pki


def test_every_component_listens_on_loopback_only(tmp_path):
    layout = devcluster.ClusterLayout(state_dir=tmp_path)
    state = devcluster.ClusterState(etcd_port=2379, etcd_peer_port=2380, apiserver_port=6443)
    commands = devcluster.component_commands(layout, state)
    assert set(commands) == set(devcluster.COMPONENTS)
    flags = [arg for command in commands.values() for arg in command[1:]]
    hosts = re.findall(r"(?:https?://)?(\d+\.\d+\.\d+\.\d+):\d+", " ".join(flags))
    assert hosts and set(hosts) == {"127.0.0.1"}
    addresses = [f.split("=", 1)[1] for f in flags if f.split("=")[0].endswith("-address")]
    assert addresses and set(addresses) == {"127.0.0.1"}
    assert "--authorization-mode=Node,RBAC" in commands["kube-apiserver"]


def test_gpu_nodes_carry_gpu_capacity_and_the_kwok_annotation():
    spec = devcluster.ClusterSpec(cpu_nodes=1, gpu_nodes=2, gpus_per_node=4)
    nodes = devcluster.node_manifests(spec)
    assert [n["metadata"]["name"] for n in nodes] == ["icx-cpu-0", "icx-gpu-0", "icx-gpu-1"]
    assert all(n["metadata"]["annotations"] == {"kwok.x-k8s.io/node": "fake"} for n in nodes)
    gpus = [n["status"]["capacity"].get("nvidia.com/gpu") for n in nodes]
    assert gpus == [None, "4", "4"]


def test_pki_identities_match_what_rbac_expects(tmp_path):
    write_pki(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())

    def load(stem: str) -> x509.Certificate:
        cert = x509.load_pem_x509_certificate((tmp_path / f"{stem}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        return cert

    admin = load("admin").subject
    assert admin.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    scheduler = load("kube-scheduler").subject
    assert scheduler.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:kube-scheduler"
    server = load("apiserver")
    usages = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    # A second call keeps what exists: kubeconfigs handed out stay valid.
    before = (tmp_path / "ca.crt").read_bytes()
    write_pki(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == before


def test_status_without_a_cluster_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ICX_CLUSTER_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["dev", "cluster", "status"])
    assert result.exit_code == 1
    assert "no cluster" in result.output


def test_status_finds_the_demo_s_plane(tmp_path, monkeypatch):
    """`icx demo up` runs its plane in .cache/demo/cluster/: status shows it (it said
    "no cluster"), with the kubeconfig to export."""
    from infinitecontext.devtools import demo

    monkeypatch.delenv("ICX_CLUSTER_DIR", raising=False)
    monkeypatch.setattr(demo, "DEFAULT_STATE_DIR", tmp_path / "demo")
    layout = demo.DemoConfig(state_dir=tmp_path / "demo").cluster_layout
    layout.state_dir.mkdir(parents=True)
    state = devcluster.ClusterState(etcd_port=1, etcd_peer_port=2, apiserver_port=9)
    layout.state_file.write_text(json.dumps({**state.__dict__, "pids": {}}))
    result = CliRunner().invoke(app, ["dev", "cluster", "status"])
    assert "no cluster" not in result.output
    assert "the demo's plane, server https://127.0.0.1:9  ready=False" in result.output
    assert f"export KUBECONFIG={layout.admin_kubeconfig}" in result.output
    assert result.exit_code == 1  # not ready: nothing answers on port 9


@pytest.mark.slow
def test_cli_up_status_down(kube_binaries, tmp_path):
    env = {**os.environ, "ICX_CLUSTER_DIR": str(tmp_path)}
    icx = [sys.executable, "-m", "infinitecontext"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*icx, *args], env=env, capture_output=True, text=True, timeout=180)

    try:
        started = run("dev", "cluster", "up", "--cpu-nodes=1", "--gpu-nodes=1", "--no-build")
        assert started.returncode == 0, started.stderr
        assert f"export KUBECONFIG={tmp_path / 'admin.kubeconfig'}" in started.stdout
        shown = run("dev", "cluster", "status")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "ready=True" in shown.stdout and "STOPPED" not in shown.stdout
        config = yaml.safe_load(Path(tmp_path / "admin.kubeconfig").read_text())
        assert config["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
        sa_config = tmp_path / "probe.kubeconfig"
        written = run(
            "dev", "cluster", "sa-kubeconfig", "default", "probe", "--out", str(sa_config)
        )
        assert written.returncode == 0, written.stderr
        can_i = [str(kube_binaries / "kubectl"), f"--kubeconfig={sa_config}", "auth", "can-i"]
        answer = subprocess.run([*can_i, "list", "secrets"], capture_output=True, text=True)
        assert answer.stdout.strip() == "no"
    finally:
        stopped = run("dev", "cluster", "down")
    assert "kube-apiserver" in stopped.stdout
    assert not (tmp_path / "cluster.json").exists()
