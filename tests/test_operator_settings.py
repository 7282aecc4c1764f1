"""The kopf settings the operator starts with (operator/main.py), without a cluster."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest

from infinitecontext.operator import logs, main

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_watch_streams_are_bounded_so_a_lost_watch_comes_back(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    settings = kopf.OperatorSettings()
    assert settings.watching.server_timeout is None  # kopf's default: watch for ever
    options = main.OperatorOptions(kubeconfig=str(kubeconfig))  # the defaults, as deployed
    main._configure(options)(settings=settings)
    watching = settings.watching
    # sent as the watch's timeoutSeconds: the API server rejects "300.0" (400 Bad Request)
    assert isinstance(watching.server_timeout, int) and 60 <= watching.server_timeout <= 600
    assert watching.client_timeout is not None
    assert watching.client_timeout > watching.server_timeout
    assert watching.connect_timeout and settings.networking.request_timeout
    assert settings.persistence.finalizer == "infinitecontext.dev/operator"
    # a timer mid-pass at deletion holds the finalizer until kopf sees it exit: not 60 s
    assert settings.background.cancellation_polling <= 5
    assert settings.background.instant_exit_timeout is not None


def test_both_controllers_register_explicitly_into_the_given_registry(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    ctx = main.build_context(main.OperatorOptions(kubeconfig=str(kubeconfig)))
    registry = kopf.OperatorRegistry()
    main.register_controllers(ctx, registry)
    plurals = {
        handler.selector.any_name
        for handler in registry._changing.get_all_handlers()
        if handler.selector is not None
    }
    assert plurals == {"trainingruns", "alignments", "evaluations", "inferenceservices"}
    assert not kopf.get_default_registry()._changing.get_all_handlers()  # nothing at import


def test_the_slurm_user_survives_a_uid_without_a_passwd_entry(monkeypatch: Any) -> None:
    """The operator image runs as uid 65532, which has no passwd entry."""
    import pwd

    from infinitecontext.operator.context import current_user

    def no_entry(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    assert current_user() == str(os.getuid())


def test_the_operator_does_not_import_the_dev_tooling() -> None:
    """devtools/ (local cluster, demo, provision, PKI, scale benchmark) is not runtime."""
    code = (
        "import sys\n"
        "from infinitecontext.operator import main\n"
        "from infinitecontext.operator.inference import handlers as inference\n"
        "from infinitecontext.operator.workloads import handlers as workloads\n"
        "print([m for m in sys.modules if m.startswith('infinitecontext.devtools')])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_operator_log_lines_carry_a_time_and_timers_do_not_flood_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    objects = logging.getLogger("kopf.objects")
    saved = (root.handlers[:], root.level, objects.filters[:])
    try:
        logs.configure(logs.LogFormat.plain, verbose=False)
        ref = {"namespace": "ns", "name": "run"}
        log = kopf.LocalObjectLogger(body={"metadata": ref}, settings=kopf.OperatorSettings())
        log.info("Timer 'poll' succeeded.")
        log.info("Handler 'reconcile-create' succeeded.")
        log.error("Timer 'poll' failed with an exception. Will retry.")
    finally:
        root.handlers[:], objects.filters[:] = saved[0], saved[2]
        root.setLevel(saved[1])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert "[ns/run] Handler 'reconcile-create' succeeded." in lines[0]
    assert "[ns/run] Timer 'poll' failed" in lines[1]
    for line in lines:  # "[2026-12-07 12:00:00,123] kopf.objects …"
        assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\] ", line), line
