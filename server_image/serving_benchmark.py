"""`icx bench serve URL`: a small load generator for an OpenAI-compatible completions server.

Runs `requests` streamed `/v1/completions` calls, `concurrency` at a time, each with a
prompt of `prompt_len` random token ids (ids 10…999, valid in any of our vocabularies,
so no tokenizer is needed) and exactly `output_len` new tokens (`ignore_eos`). Per
request it records the time to the first streamed token (TTFT) and the gaps between
later chunks (inter-token latency, ITL; vLLM streams one token per chunk without
speculative decoding); output tokens are counted from the final `usage` chunk.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

PERCENTILES = (50, 90, 99)
_TOKEN_IDS = range(10, 1000)


@dataclass(frozen=True)
class BenchConfig:
    url: str
    requests: int = 64
    concurrency: int = 8
    prompt_len: int = 128
    output_len: int = 64
    seed: int = 0
    timeout_s: float = 600.0


@dataclass
class RequestResult:
    ok: bool
    latency_s: float = 0.0
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    error: str = ""


@dataclass(frozen=True)
class Summary:
    mean: float
    percentiles: dict[str, float]


@dataclass(frozen=True)
class BenchReport:
    config: BenchConfig
    model: str
    succeeded: int
    failed: int
    duration_s: float
    requests_per_s: float
    output_tokens_per_s: float
    ttft_ms: Summary
    itl_ms: Summary
    latency_ms: Summary
    errors: list[str]


def summarize(values_s: list[float]) -> Summary:
    """Mean and p50/p90/p99 in milliseconds (zeros when there is nothing to summarise)."""
    ms = [v * 1000 for v in values_s]
    if not ms:
        return Summary(0.0, {f"p{p}": 0.0 for p in PERCENTILES})
    cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return Summary(statistics.fmean(ms), {f"p{p}": cuts[p - 1] for p in PERCENTILES})


def build_report(
    config: BenchConfig, model: str, results: list[RequestResult], duration_s: float
) -> BenchReport:
    done = [r for r in results if r.ok]
    return BenchReport(
        config=config,
        model=model,
        succeeded=len(done),
        failed=len(results) - len(done),
        duration_s=duration_s,
        requests_per_s=len(done) / duration_s,
        output_tokens_per_s=sum(r.output_tokens for r in done) / duration_s,
        ttft_ms=summarize([r.ttft_s for r in done if r.ttft_s is not None]),
        itl_ms=summarize([gap for r in done for gap in r.itl_s]),
        latency_ms=summarize([r.latency_s for r in done]),
        errors=sorted({r.error for r in results if not r.ok})[:10],
    )


def make_prompts(config: BenchConfig) -> list[list[int]]:
    rng = random.Random(config.seed)
    return [rng.choices(_TOKEN_IDS, k=config.prompt_len) for _ in range(config.requests)]


async def stream_completion(
    client: httpx.AsyncClient, model: str, prompt: list[int], output_len: int
) -> RequestResult:
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": output_len,
        "min_tokens": output_len,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    result = RequestResult(ok=False)
    last = start
    try:
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                result.error = f"HTTP {response.status_code}: {response.text[:200]}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: ") :])
                if chunk.get("usage"):
                    result.output_tokens = int(chunk["usage"]["completion_tokens"])
                if not chunk.get("choices") or not chunk["choices"][0].get("text"):
                    continue
                now = time.perf_counter()
                if result.ttft_s is None:
                    result.ttft_s = now - start
                else:
                    result.itl_s.append(now - last)
                last = now
    except httpx.HTTPError as error:
        result.error = repr(error)
        return result
    result.latency_s = time.perf_counter() - start
    result.ok = result.output_tokens > 0
    if not result.ok:
        result.error = "no tokens in the response"
    return result


async def _run(config: BenchConfig) -> BenchReport:
    limits = httpx.Limits(max_connections=config.concurrency)
    async with httpx.AsyncClient(
        base_url=config.url, timeout=config.timeout_s, limits=limits
    ) as client:
        models = (await client.get("/v1/models")).raise_for_status().json()["data"]
        model = str(models[0]["id"])
        gate = asyncio.Semaphore(config.concurrency)

        async def one(prompt: list[int]) -> RequestResult:
            async with gate:
                return await stream_completion(client, model, prompt, config.output_len)

        prompts = make_prompts(config)
        start = time.perf_counter()
        results = await asyncio.gather(*(one(p) for p in prompts))
        duration = time.perf_counter() - start
    return build_report(config, model, list(results), duration)


def run_bench(config: BenchConfig) -> BenchReport:
    return asyncio.run(_run(config))


def report_json(report: BenchReport) -> str:
    return json.dumps(asdict(report), indent=2)


def print_report(report: BenchReport, json_out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    c = report.config
    console = Console()
    console.print(
        f"[bold]{report.model}[/] at {c.url}: {report.succeeded}/{c.requests} ok, "
        f"concurrency {c.concurrency}, prompt {c.prompt_len}, output {c.output_len} tokens, "
        f"{report.duration_s:.1f} s"
    )
    console.print(
        f"requests/s {report.requests_per_s:.2f}   output tokens/s {report.output_tokens_per_s:.1f}"
    )
    table = Table()
    for column in ("ms", "mean", *(f"p{p}" for p in PERCENTILES)):
        table.add_column(column, justify="left" if column == "ms" else "right")
    for name, summary in (
        ("TTFT", report.ttft_ms),
        ("ITL", report.itl_ms),
        ("latency", report.latency_ms),
    ):
        row = [f"{summary.mean:.1f}", *(f"{v:.1f}" for v in summary.percentiles.values())]
        table.add_row(name, *row)
    console.print(table)
    for error in report.errors:
        console.print(f"[red]error:[/] {error}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(report_json(report) + "\n")
        console.print(f"wrote {json_out}")
