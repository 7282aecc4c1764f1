"""Spec edits as the real API server admits them: a TrainingRun, Alignment or Evaluation
may change freely until its job is submitted (`status.job`); after that only `suspend`,
`retryPolicy` and `activeDeadlineSeconds` may (crds/models.py WORKLOAD_MUTABLE_FIELDS)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from plugins.kube import KubeCluster

from infinitecontext.devtools import cluster as devcluster

TINY = {"model": {"preset": "tiny"}, "hyperparameters": {"steps": 8, "warmupSteps": 2}}
SUBMITTED = {"status": {"job": {"backend": "kubernetes", "name": "run-train", "attempt": 0}}}


def patch(cluster: KubeCluster, namespace: str, kind: str, name: str, body: Any) -> None:
    cluster.kubectl(
        "patch", kind, name, "-n", namespace, "--type=merge", "-p", json.dumps(body)
    )  # fmt: skip


def create(cluster: KubeCluster, namespace: str, kind: str, name: str, spec: Any) -> None:
    obj = {
        "apiVersion": "infinitecontext.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(obj))


def submit(cluster: KubeCluster, namespace: str, kind: str, name: str) -> None:
    cluster.kubectl(
        "patch", kind, name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(SUBMITTED),
    )  # fmt: skip


def test_a_submitted_training_run_takes_only_the_edits_that_do_not_change_the_work(
    icx_crds: KubeCluster, kube_namespace: str
) -> None:
    create(icx_crds, kube_namespace, "TrainingRun", "edits", TINY)
    before = {"spec": {"hyperparameters": {"steps": 10}}}
    patch(icx_crds, kube_namespace, "trainingrun", "edits", before)  # not submitted: fine
    submit(icx_crds, kube_namespace, "trainingrun", "edits")
    refused = [
        {"spec": {"hyperparameters": {"steps": 12}}},
        {"spec": {"hyperparameters": {"learningRate": 0.01}}},
        {"spec": {"kubernetes": {"image": "other:1"}}},  # a field that was absent
    ]
    for body in refused:
        with pytest.raises(devcluster.ClusterError) as rejected:
            patch(icx_crds, kube_namespace, "trainingrun", "edits", body)
        assert "the spec of a submitted TrainingRun cannot change" in str(rejected.value)
    allowed = {
        "spec": {"suspend": True, "activeDeadlineSeconds": 600, "retryPolicy": {"backoffLimit": 5}}
    }
    patch(icx_crds, kube_namespace, "trainingrun", "edits", allowed)
    icx_crds.kubectl(
        "annotate", "trainingrun", "edits", "-n", kube_namespace,
        "infinitecontext.dev/resubmit-lost-job=42",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "spec", "edit"),
    [
        ("Alignment", {"baseModel": {"trainingRun": "a"}}, {"baseModel": {"trainingRun": "b"}}),
        ("Evaluation", {"model": {"trainingRun": "a"}}, {"passkey": {"samples": 3}}),
    ],
)
def test_submitted_alignments_and_evaluations_are_immutable_too(
    icx_crds: KubeCluster, kube_namespace: str, kind: str, spec: Any, edit: Any
) -> None:
    name = kind.lower()
    create(icx_crds, kube_namespace, kind, name, spec)
    submit(icx_crds, kube_namespace, name, name)
    with pytest.raises(devcluster.ClusterError) as rejected:
        patch(icx_crds, kube_namespace, name, name, {"spec": edit})
    assert f"the spec of a submitted {kind} cannot change" in str(rejected.value)
    patch(icx_crds, kube_namespace, name, name, {"spec": {"suspend": True}})
