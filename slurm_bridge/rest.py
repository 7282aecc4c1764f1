"""A slurmrestd client (JWT auth, version discovered from `/openapi/v3`)."""

from __future__ import annotations

import builtins
import getpass
import re
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from infinitecontext.slurm_bridge.auth import ScontrolToken, TokenProvider
from infinitecontext.slurm_bridge.client import filter_jobs, find_by_key, read_logs
from infinitecontext.slurm_bridge.errors import (
    JobNotFound,
    SlurmAuthError,
    SlurmRejected,
    SlurmUnavailable,
)
from infinitecontext.slurm_bridge.models import JobLogs, JobRef, JobRequest, JobStatus
from infinitecontext.slurm_bridge.parse import job_status
from infinitecontext.slurm_bridge.render import rest_submit_body
from infinitecontext.slurm_bridge.states import Phase

# API versions whose job schema this client speaks, newest first (docs/slurm.md,
# "Versions"): v0.0.40-v0.0.42 (data_parser schema; tested: v0.0.42, SLURM 24.11) and
# v0.0.38 (tested: SLURM 22.05). v0.0.39 is not spoken: no server here serves it, and
# every SLURM that does (23.02, 23.11, 24.05) also serves v0.0.38 or v0.0.40+.
SUPPORTED_VERSIONS = ("0.0.42", "0.0.41", "0.0.40", "0.0.38")
# The first version of the data_parser schema (render.rest_submit_body).
_DATA_PARSER_SINCE = (0, 0, 40)
# slurm_errno values meaning "slurmctld did not answer" (slurm_errno.h): retryable.
# SLURM 22.05's slurmrestd reports a stopped slurmctld as -1 ("Unspecified error",
# "Unable to find JobId=…") with HTTP 500; an unknown job id is 2017.
_UNREACHABLE_ERRNOS = {-1, 1007, 1008, 1009, 1010, 1011, 5004, 5005}
_INVALID_JOB_ID = 2017
_ALREADY_DONE = 2021
_VERSION_PATH = re.compile(r"^/slurm/v(\d+\.\d+\.\d+)/")


def pick_version(paths: Iterable[str]) -> str:
    """The newest version the server offers that this client speaks."""
    offered = {match.group(1) for path in paths if (match := _VERSION_PATH.match(path))}
    for version in SUPPORTED_VERSIONS:
        if version in offered:
            return version
    raise SlurmRejected(
        f"slurmrestd offers API versions {sorted(offered)}; this client speaks "
        f"{list(SUPPORTED_VERSIONS)} (use the CLI backend)"
    )


def uses_data_parser(version: str) -> bool:
    """Whether this API version takes the v0.0.40+ (data_parser) job schema."""
    return tuple(int(part) for part in version.split(".")) >= _DATA_PARSER_SINCE


def ping_up(body: Mapping[str, Any]) -> bool:
    """Whether a `/ping` reply has a controller that says UP (`ping` before v0.0.40,
    `pinged` since)."""
    return any(
        str(entry.get("pinged", entry.get("ping", ""))).upper() == "UP"
        for entry in body.get("pings", [])
    )


def classify_errors(status_code: int, body: Mapping[str, Any]) -> Exception | None:
    """The exception for a slurmrestd reply, or None when it succeeded."""
    errors = [e for e in body.get("errors", []) if isinstance(e, Mapping)]
    if status_code < 400 and not errors:
        return None
    numbers = {int(e.get("error_number", e.get("error_code", 0)) or 0) for e in errors}
    message = (
        "; ".join(str(e.get("description") or e.get("error") or e) for e in errors)
        or f"HTTP {status_code}"
    )
    if numbers & _UNREACHABLE_ERRNOS or status_code in (502, 503, 504):
        return SlurmUnavailable(f"slurmctld unreachable: {message}")
    if _INVALID_JOB_ID in numbers:
        return JobNotFound(message)
    rejected = SlurmRejected(message)
    rejected.slurm_errnos = numbers
    return rejected


class RestClient:
    def __init__(
        self,
        url: str = "http://127.0.0.1:6820",
        token: TokenProvider | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._token = token or ScontrolToken(getpass.getuser())
        self._http = httpx.Client(base_url=url, timeout=timeout_s)
        self._version: str | None = None

    def close(self) -> None:
        self._http.close()

    def api_version(self) -> str:
        if self._version is None:
            spec = self._request("GET", "/openapi/v3")
            self._version = pick_version(spec.get("paths", {}))
        return self._version

    def ping(self) -> bool:
        """True when slurmrestd answers and reaches a slurmctld that says UP."""
        return ping_up(self._request("GET", self._path("ping")))

    def submit(self, request: JobRequest) -> JobRef:
        existing = find_by_key(self._jobs(), request.key)
        if existing is not None:
            return JobRef(existing.job_id, created=False)
        body = rest_submit_body(request, uses_data_parser(self.api_version()))
        reply = self._request("POST", self._path("job/submit"), json=body)
        return JobRef(int(reply["job_id"]), created=True)

    def get(self, job_id: int) -> JobStatus:
        jobs = self._request("GET", self._path(f"job/{int(job_id)}")).get("jobs", [])
        if not jobs:
            raise JobNotFound(f"job {job_id} is unknown to slurmctld")
        return job_status(jobs[0])

    def list(
        self, key: str | None = None, phases: Iterable[Phase] | None = None
    ) -> builtins.list[JobStatus]:
        return filter_jobs(self._jobs(), key, phases)

    def cancel(self, job_id: int) -> None:
        try:
            self._request("DELETE", self._path(f"job/{int(job_id)}"))
        except SlurmRejected as err:
            if _ALREADY_DONE not in err.slurm_errnos:
                raise

    def logs(self, job_id: int, tail: int = 100) -> JobLogs:
        return read_logs(self.get(job_id), tail)

    def _jobs(self) -> builtins.list[JobStatus]:
        return [job_status(job) for job in self._request("GET", self._path("jobs"))["jobs"]]

    def _path(self, endpoint: str) -> str:
        return f"/slurm/v{self.api_version()}/{endpoint}"

    def _request(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        reply = self._send(method, path, json, refresh=False)
        if reply.status_code in (401, 403):
            # The token may have expired or been rotated: fetch a new one, once.
            reply = self._send(method, path, json, refresh=True)
            if reply.status_code in (401, 403):
                raise SlurmAuthError(f"slurmrestd refused the token for {self._token.username}")
        body = _json_body(reply)
        error = classify_errors(reply.status_code, body)
        if error is not None:
            raise error
        return body

    def _send(self, method: str, path: str, json: Any, refresh: bool) -> httpx.Response:
        headers = {
            "X-SLURM-USER-NAME": self._token.username,
            "X-SLURM-USER-TOKEN": self._token.token(refresh=refresh),
        }
        try:
            return self._http.request(method, path, json=json, headers=headers)
        except httpx.TransportError as err:
            raise SlurmUnavailable(
                f"slurmrestd at {self._http.base_url} did not answer: {err!r}"
            ) from err


def _json_body(reply: httpx.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        if reply.status_code >= 500:
            raise SlurmUnavailable(f"slurmrestd answered HTTP {reply.status_code}") from None
        raise SlurmRejected(
            f"slurmrestd answered HTTP {reply.status_code}: {reply.text[:200]}"
        ) from None
    return body if isinstance(body, dict) else {"value": body}
