"""Shared pytest set-up. Fixtures that start real services live in tests/plugins/."""

pytest_plugins: list[str] = [
    # one line per plugin module under tests/plugins/
    "plugins.mlflow_server",
    "plugins.server",
    "plugins.inference",
    "plugins.kube",
    "plugins.kernels",
    "plugins.slurm",
    "plugins.operator",
    "plugins.trainer",
    "plugins.prometheus",
]
