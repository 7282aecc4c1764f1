"""The kopf settings the operator starts with (operator/main.py), without a cluster."""

from pathlib import Path

import kopf

from infinitecontext.operator import main
from infinitecontext.operator.workloads import handlers

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
    running = handlers._context  # an operator fixture's, if one is up: put it back
    try:
        main._configure(options)(settings=settings)
    finally:
        handlers.set_context(running)
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
