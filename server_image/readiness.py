"""`GET /ready`: the model is loaded and answering, checked with a one-token completion.

vLLM loads it through `--middleware` (launch.py). vLLM's `/health` only says the engine
process is alive; readiness runs a real request through the whole stack (tokeniser-free:
the prompt is token id 0, valid for every vocabulary) by calling the same FastAPI app
in process, so it needs no port, no model name and no network.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

READY_PATH = "/ready"
PROBE_REQUEST = {"prompt": [0], "max_tokens": 1, "temperature": 0.0}
PROBE_TIMEOUT_S = 10.0
API_KEY_ENV = "VLLM_API_KEY"
"""Set: vLLM guards /v1/* with this key, and the probe completion must carry it."""


async def readiness_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if request.url.path != READY_PATH or request.method not in ("GET", "HEAD"):
        return await call_next(request)
    transport = httpx.ASGITransport(app=request.app)
    key = os.environ.get(API_KEY_ENV)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://probe", timeout=PROBE_TIMEOUT_S, headers=headers
        ) as client:
            answer = await client.post("/v1/completions", json=PROBE_REQUEST)
    except (httpx.HTTPError, RuntimeError) as error:
        return JSONResponse({"ready": False, "reason": repr(error)}, status_code=503)
    reason = probe_failure(answer)
    if reason:
        return JSONResponse({"ready": False, "reason": reason}, status_code=503)
    return JSONResponse({"ready": True})


def probe_failure(answer: httpx.Response) -> str:
    """Why the probe completion does not show a serving model ('' when it does)."""
    if answer.status_code != 200:
        return f"probe completion returned {answer.status_code}: {answer.text[:200]}"
    # While draining after SIGTERM, vLLM answers new requests 200 with no tokens.
    usage = answer.json().get("usage") or {}
    if int(usage.get("completion_tokens", 0)) < 1:
        return "probe completion produced no token (shutting down?)"
    return ""
