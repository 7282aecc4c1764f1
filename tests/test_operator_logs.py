"""The operator's log lines (operator/logs.py): JSON or plain, each line logged during a
reconcile pass tagged with the object it is about."""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from infinitecontext.crds.models import TRAINING_RUN
from infinitecontext.operator import logs
from infinitecontext.operator.passes import reconcile_pass

BODY = {
    "apiVersion": "infinitecontext.dev/v1alpha1",
    "kind": "TrainingRun",
    "metadata": {"name": "base", "namespace": "team-a", "uid": "0b5e", "generation": 1},
    "spec": {},
    "status": {},
}
OBJECT = {
    "apiVersion": "infinitecontext.dev/v1alpha1",
    "kind": "TrainingRun",
    "name": "base",
    "uid": "0b5e",
    "namespace": "team-a",
}
log = logging.getLogger("infinitecontext.operator.test")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """kopf.configure replaces the root logger's handler and level: put them back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_name_the_object_of_the_pass(root_logging, capsys):
    logs.configure(logs.LogFormat.json, verbose=False)
    log.info("starting")
    with logs.about(BODY):
        log.info("submitted job %s", "tr-base-1")
    log.warning("peering lost")

    starting, submitted, peering = json_lines(capsys.readouterr().err)
    assert submitted["message"] == "submitted job tr-base-1"
    assert submitted["object"] == OBJECT
    assert submitted["severity"] == "info"
    assert "object" not in starting and "object" not in peering


def test_kopf_object_lines_keep_their_own_object(root_logging, capsys):
    logs.configure(logs.LogFormat.json, verbose=False)
    other = {**BODY, "metadata": {"name": "other", "namespace": "team-b", "uid": "77"}}
    settings = kopf.OperatorSettings()
    with logs.about(BODY):
        kopf.LocalObjectLogger(body=other, settings=settings).info("Handler succeeded.")

    (line,) = json_lines(capsys.readouterr().err)
    assert (line["object"]["namespace"], line["object"]["name"]) == ("team-b", "other")


def test_plain_lines_are_prefixed_with_the_object(root_logging, capsys):
    logs.configure(logs.LogFormat.plain, verbose=False)
    with logs.about(BODY):
        log.info("submitted")
    # kopf's FULL format: [time] logger [LEVEL] [namespace/name] message
    assert capsys.readouterr().err.strip().endswith("[INFO    ] [team-a/base] submitted")


def test_a_reconcile_pass_tags_its_lines(root_logging, capsys):
    logs.configure(logs.LogFormat.json, verbose=False)
    # What a pass that writes no status reads of the context: the lock and last writes.
    ctx: Any = SimpleNamespace(locks=defaultdict(threading.Lock), written={}, kube=None)
    with reconcile_pass(ctx, TRAINING_RUN, BODY):
        log.info("planning")

    (line,) = json_lines(capsys.readouterr().err)
    assert line["object"] == OBJECT


@pytest.mark.slow
def test_the_operator_writes_json_lines_naming_the_object(
    operator_factory, icx_crds, kube_namespace
):
    """`icx operator run --log-format json`, the real process: every line is JSON, and
    the lines about a TrainingRun carry its namespace, name and uid."""
    from test_operator_e2e import HOLD, TINY_TRAINING, apply, get, resource, wait_for

    operator = operator_factory(
        icx_crds.kubeconfig, [kube_namespace], extra_args=["--log-format", "json"]
    )
    obj = resource(
        "TrainingRun",
        "logged",
        TINY_TRAINING | {"kubernetes": {"image": "t:1", "nodeSelector": HOLD}},
    )
    obj["metadata"]["namespace"] = kube_namespace
    apply(icx_crds, obj)
    uid = wait_for(
        "the TrainingRun", lambda: get(icx_crds, "trainingrun", "logged", kube_namespace)
    )["metadata"]["uid"]

    def about_it() -> list[dict[str, Any]]:
        lines = json_lines(operator.log.read_text())  # raises on a line that is not JSON
        return [line for line in lines if (line.get("object") or {}).get("uid") == uid]

    lines = wait_for("a log line about the TrainingRun", about_it, timeout=60)
    assert all(
        (line["object"]["namespace"], line["object"]["name"]) == (kube_namespace, "logged")
        for line in lines
    )
