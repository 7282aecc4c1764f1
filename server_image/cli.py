"""`icx serve MODEL` (the server image's entrypoint) and `icx bench serve URL`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)

MODEL_HELP = "models:/NAME/VERSION, models:/NAME@ALIAS, an MLflow artifact URI or a directory."


def serve(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    served_model_name: Annotated[
        str | None, typer.Option(help="Name clients use in `model`; default: MODEL.")
    ] = None,
    host: str = "0.0.0.0",
    port: int = 8000,
    max_model_len: Annotated[
        int | None, typer.Option(help="Context limit; default: the model's.")
    ] = None,
    kv_cache_dtype: Annotated[str, typer.Option(help="auto, bfloat16, fp8 …")] = "auto",
    dtype: Annotated[str, typer.Option(help="Weights/activations: auto, bfloat16 …")] = "auto",
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    cpu_kv_cache_gib: Annotated[
        float, typer.Option(help="KV cache size on vLLM's CPU build (GiB).")
    ] = 1.0,
    enforce_eager: Annotated[
        bool | None, typer.Option(help="Default: eager on CPU, compiled on GPU.")
    ] = None,
    shutdown_timeout: Annotated[
        int, typer.Option(help="Seconds in-flight requests get after SIGTERM.")
    ] = 30,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Model cache; default $ICX_MODEL_CACHE or ~/.cache.")
    ] = None,
    vllm_arg: Annotated[
        list[str] | None, typer.Option(help="Extra `vllm serve` argument; repeatable.")
    ] = None,
) -> None:
    """Download and verify MODEL, then serve it with vLLM's OpenAI-compatible server."""
    from infinitecontext.server.launch import DEFAULT_CACHE, ServeOptions
    from infinitecontext.server.launch import serve as run_server
    from infinitecontext.server.manifest import ModelError

    logging.basicConfig(level=logging.INFO, format="icx serve: %(message)s")
    options = ServeOptions(
        served_model_name=served_model_name,
        host=host,
        port=port,
        max_model_len=max_model_len,
        kv_cache_dtype=kv_cache_dtype,
        dtype=dtype,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        cpu_kv_cache_gib=cpu_kv_cache_gib,
        enforce_eager=enforce_eager,
        shutdown_timeout=shutdown_timeout,
        extra_args=tuple(vllm_arg or ()),
    )
    try:
        run_server(model, options, cache_dir or DEFAULT_CACHE)
    except ModelError as error:
        console.print(f"[red]icx serve: error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


bench_app = typer.Typer(help="Load generators.", no_args_is_help=True)


@bench_app.command("serve")
def bench_serve(
    url: Annotated[str, typer.Argument(help="Server base URL, e.g. http://127.0.0.1:8000.")],
    requests: Annotated[int, typer.Option(help="Number of requests.")] = 64,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
    prompt_len: Annotated[int, typer.Option(help="Prompt length in tokens.")] = 128,
    output_len: Annotated[int, typer.Option(help="Completion length in tokens.")] = 64,
    seed: int = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Streamed completions at fixed concurrency: requests/s, tokens/s, TTFT and ITL."""
    from infinitecontext.server.serving_benchmark import BenchConfig, print_report, run_bench

    config = BenchConfig(url, requests, concurrency, prompt_len, output_len, seed)
    print_report(run_bench(config), json_out)
