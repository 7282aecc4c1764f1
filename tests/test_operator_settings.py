"""The kopf settings the operator starts with (operator/main.py), without a cluster."""

from pathlib import Path

import kopf

from infinitecontext.operator import handlers, main

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
    options = main.OperatorOptions(kubeconfig=str(kubeconfig), watch_timeout_s=120)
    running = handlers._context  # an operator fixture's, if one is up: put it back
    try:
        main._configure(options)(settings=settings)
    finally:
        handlers.set_context(running)
    watching = settings.watching
    assert watching.server_timeout == 120
    assert watching.client_timeout is not None and watching.client_timeout > 120
    assert watching.connect_timeout and settings.networking.request_timeout
    assert settings.persistence.finalizer == "infinitecontext.dev/operator"
