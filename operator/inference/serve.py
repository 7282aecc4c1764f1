"""The `icx serve` command line of a replica, the same on both backends (the server
image's entrypoint on Kubernetes, the replica job's command on SLURM)."""

from __future__ import annotations

from infinitecontext.crds.models import ServerOptions

PRESTOP_SLEEP_SECONDS = 5
"""On Kubernetes the pod leaves the endpoints this long before vLLM gets SIGTERM."""


def serve_argv(
    model_uri: str,
    served_name: str,
    server: ServerOptions,
    gpus_per_node: int,
    port: int,
    cache_dir: str,
) -> list[str]:
    """Served under the InferenceService's name, so clients keep their `model` field
    across model versions; drained within the grace period before the kill."""
    drain = max(server.termination_grace_period_seconds - PRESTOP_SLEEP_SECONDS - 10, 1)
    argv = ["icx", "serve", model_uri, "--served-model-name", served_name]
    argv += ["--port", str(port), "--shutdown-timeout", str(drain)]
    argv += ["--cache-dir", cache_dir]
    if gpus_per_node > 1:
        argv += ["--tensor-parallel-size", str(gpus_per_node)]
    if server.max_model_len is not None:
        argv += ["--max-model-len", str(server.max_model_len)]
    argv += [f"--vllm-arg={extra}" for extra in server.extra_args]
    return argv
