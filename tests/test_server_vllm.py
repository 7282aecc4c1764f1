"""`icx serve models:/…` with the real vLLM server (CPU build here): the model-format
contract, health, metrics, concurrency, the load generator and the SIGTERM drain.

All tests share one server (tests/plugins/server.py); the drain test stops it, so it
stays the last test of this file.
"""

import json
import signal
import subprocess
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from plugins.processes import http_status
from plugins.server import completion, icx_command

from infinitecontext.devtools.waiting import wait_for

pytestmark = pytest.mark.slow

TOKEN_PROMPTS = [[5, 6, 7, 8, 9], [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 11], [42]]
NEW_TOKENS = 32
# Both sides in float32: measured agreement is 1e-6 nats; a RoPE mistake moves log-probs
# of this random model by ~5e-3 (docs/server.md), a weight-mapping mistake by nats.
LOGPROB_TOLERANCE = 1e-3


def test_health_and_readiness(vllm_server):
    assert http_status(f"{vllm_server.url}/health") == 200
    with urllib.request.urlopen(f"{vllm_server.url}/ready", timeout=30) as response:
        assert json.loads(response.read()) == {"ready": True}


def test_greedy_completions_match_our_generate(vllm_server, registered_tiny):
    """The model-format contract: vLLM decodes our export token for token as we do."""
    from infinitecontext.model import hf
    from infinitecontext.model.generate import Sampling, generate
    from infinitecontext.model.tokenizer import load_tokenizer

    model = hf.load(registered_tiny.source_dir).eval()
    text = "The pass key is 12345. Remember it."
    prompts = [*TOKEN_PROMPTS, load_tokenizer(registered_tiny.source_dir).encode(text).ids]
    expected = generate(model, prompts, Sampling(max_new_tokens=NEW_TOKENS, temperature=0.0))
    for request_prompt, ids, want in zip([*TOKEN_PROMPTS, text], prompts, expected, strict=True):
        body = {"model": registered_tiny.name, "prompt": request_prompt, "temperature": 0.0}
        body |= {"max_tokens": NEW_TOKENS, "ignore_eos": True, "return_token_ids": True}
        answer = completion(vllm_server.url, body)
        assert answer["choices"][0]["prompt_token_ids"] == ids  # same tokenizer
        assert answer["choices"][0]["token_ids"] == want, request_prompt


def test_prompt_logprobs_match_our_model(vllm_server, registered_tiny):
    """Teacher-forced log-probabilities over 64 positions agree to float32 precision."""
    from infinitecontext.model import hf

    model = hf.load(registered_tiny.source_dir).eval()
    prompt = [(37 * i) % 990 + 10 for i in range(64)]
    body = {"model": registered_tiny.name, "prompt": prompt, "max_tokens": 1}
    body |= {"prompt_logprobs": 0}
    theirs = completion(vllm_server.url, body)["choices"][0]["prompt_logprobs"]
    ours = teacher_forced_logprobs(model, prompt)
    for position in range(1, len(prompt)):
        vllm_logprob = theirs[position][str(prompt[position])]["logprob"]
        assert abs(vllm_logprob - ours[position - 1]) < LOGPROB_TOLERANCE, position


def teacher_forced_logprobs(model, ids):
    import torch

    with torch.no_grad():
        logprobs = model(torch.tensor([ids]))[0].float().log_softmax(-1)
    return [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]


def test_metrics_expose_the_autoscaling_gauges(vllm_server):
    with urllib.request.urlopen(f"{vllm_server.url}/metrics", timeout=30) as response:
        names = {line.split("{")[0] for line in response.read().decode().splitlines()}
    assert "vllm:num_requests_waiting" in names
    assert names & {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}


def test_32_concurrent_requests_all_succeed(vllm_server, registered_tiny):
    def one(i: int) -> int:
        body = {"model": registered_tiny.name, "prompt": [10 + i] * 8, "max_tokens": 24}
        body |= {"ignore_eos": True}
        usage = completion(vllm_server.url, body, timeout=300)["usage"]
        return int(usage["completion_tokens"])  # type: ignore[index]

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert list(pool.map(one, range(32))) == [24] * 32


def test_bench_serve_reports_throughput_and_latency(vllm_server, tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "serve", vllm_server.url, "--requests", "8", "--concurrency", "4"]
    args += ["--prompt-len", "32", "--output-len", "16", "--json", str(out)]
    result = subprocess.run(
        icx_command() + args, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["succeeded"] == 8 and report["failed"] == 0
    assert report["output_tokens_per_s"] > 0 and report["requests_per_s"] > 0
    assert 0 < report["ttft_ms"]["percentiles"]["p50"] <= report["ttft_ms"]["percentiles"]["p99"]
    assert report["itl_ms"]["mean"] > 0
    assert "TTFT" in result.stdout and "ITL" in result.stdout


def requests_running(url: str) -> float:
    """vLLM's `vllm:num_requests_running` gauge, summed over its engines."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        lines = response.read().decode().splitlines()
    running = [line for line in lines if line.startswith("vllm:num_requests_running")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in running)


def test_sigterm_finishes_in_flight_requests_then_exits_zero(vllm_server, registered_tiny):
    long_request = {"model": registered_tiny.name, "prompt": [7, 8, 9], "max_tokens": 1500}
    long_request |= {"ignore_eos": True}
    answers: list[dict[str, object]] = []
    worker = threading.Thread(
        target=lambda: answers.append(completion(vllm_server.url, long_request, timeout=300))
    )
    worker.start()
    # SIGTERM only once the request is being decoded (1500 tokens take several seconds).
    wait_for("the long request to run", lambda: requests_running(vllm_server.url) >= 1, 60)
    vllm_server.process.send_signal(signal.SIGTERM)
    wait_for(
        "/ready to stop answering 200 (no new work while draining)",
        lambda: http_status(f"{vllm_server.url}/ready") != 200,
        timeout_s=30,
        every_s=0.2,
    )
    worker.join(timeout=300)
    assert answers and answers[0]["usage"]["completion_tokens"] == 1500  # type: ignore[index]
    assert vllm_server.process.wait(timeout=120) == 0
