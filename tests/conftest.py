"""Shared pytest set-up. Fixtures that start real services live in tests/plugins/.

Two lanes: the full suite (`./dev.sh test`, CI) and the fast lane (`./dev.sh test-fast`,
`pytest -m "not e2e and not slow and not triton_interpreter"`) for the edit loop. A test
is `e2e` when it uses a fixture that starts a real service (the fixtures below), and
`triton_interpreter` when it is a kernel test on a machine without a GPU; nobody marks
either by hand.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins: list[str] = [
    # one line per plugin module under tests/plugins/, each after those it imports
    "plugins.kube",
    "plugins.helm",
    "plugins.mlflow_server",
    "plugins.server",
    "plugins.inference",
    "plugins.kernels",
    "plugins.slurm",
    "plugins.operator",
    "plugins.realnode",
    "plugins.trainer",
    "plugins.prometheus",
]

# The fixtures that start (or need) a real service; every other fixture builds on these,
# and item.fixturenames holds the whole closure, so a test using `operator_factory` or
# `tiny_vllm` is caught through `kube_cluster` or `mlflow_server`.
SERVICE_FIXTURES = frozenset(
    {
        "kube_binaries",  # the local control plane's Go binaries
        "kube_cluster",  # a Kubernetes API server
        "helm",  # Helm, built from its Go module
        "slurm_cluster",  # the local SLURM cluster
        "mlflow_server",  # an MLflow tracking server (the vLLM servers build on it)
        "start_prometheus",  # a Prometheus server
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: uses a real service (set from the fixtures in tests/conftest.py)"
    )
    config.addinivalue_line(
        "markers", "triton_interpreter: a kernel test run by Triton's CPU interpreter (no GPU)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tests/plugins/kernels.py turns the interpreter on when there is no GPU; it takes
    # seconds per kernel case there, a minute for the kernel tests together.
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERVICE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.e2e)
        if interpreted and "kernel_device" in fixtures:
            item.add_marker(pytest.mark.triton_interpreter)
