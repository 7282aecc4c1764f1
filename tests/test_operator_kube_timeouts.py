"""Every Kubernetes API call of the operator has a timeout: an API server that accepts
the connection and never answers makes the call fail (and the pass retry) instead of
holding the object's lock for ever."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from infinitecontext.crds.models import TRAINING_RUN
from infinitecontext.operator import kube
from infinitecontext.operator.kube import DynamicKube, Kube


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
CALLS: dict[str, Callable[[Kube, DynamicKube], Any]] = {
    "apply": lambda k, _: k.apply(CONFIG_MAP),
    "read_job": lambda k, _: k.read_job("j", "n"),
    "read_custom": lambda k, _: k.read_custom(TRAINING_RUN, "r", "n"),
    "patch_status": lambda k, _: k.patch_status(TRAINING_RUN, "r", "n", {"phase": "Running"}),
    "dynamic_apply": lambda _, d: d.apply(CONFIG_MAP),
    "dynamic_list": lambda _, d: d.list("v1", "Pod", "n", "a=b"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_hung_api_server_call_times_out(
    call: Callable[[Kube, DynamicKube], Any], silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "REQUEST_TIMEOUT", (1, 1))
    configuration = client.Configuration()
    configuration.host = silent_server
    configuration.retries = 0
    api_client = client.ApiClient(configuration)
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        call(Kube(api_client), DynamicKube(api_client))
    assert time.monotonic() - started < 10
