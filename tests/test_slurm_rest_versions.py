"""The REST client's reading of real slurmrestd replies, per API version.

The files under tests/data/slurm_rest/ were recorded from the servers these tests
stand for: v0.0.38 from SLURM 22.05.8 (this machine's, Ansible-provisioned) and
v0.0.42 from SLURM 24.11.5 (Debian trixie's, tests/slurm_container/). Each holds one
unmodified reply: `/openapi/v3` (its paths), `GET /job/{id}` for a job in each state,
`DELETE` of a finished job, `GET` of an unknown id (HTTP status and body) and `/ping`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infinitecontext.slurm_bridge.errors import JobNotFound
from infinitecontext.slurm_bridge.parse import job_status
from infinitecontext.slurm_bridge.rest import (
    classify_errors,
    pick_version,
    ping_up,
    uses_data_parser,
)
from infinitecontext.slurm_bridge.states import Phase

RECORDED = Path(__file__).parent / "data" / "slurm_rest"
VERSIONS = ["0.0.38", "0.0.42"]


def _reply(version: str, name: str) -> Any:
    return json.loads((RECORDED / f"v{version}" / f"{name}.json").read_text())


def _job(version: str, name: str) -> Any:
    return _reply(version, f"job-{name}")["jobs"][0]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_client_picks_the_version_the_server_serves(version):
    paths = _reply(version, "openapi-paths")["paths"]
    assert pick_version(paths) == version
    assert uses_data_parser(version) == (version != "0.0.38")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("job", "state", "phase", "reason", "exit_code", "signal"),
    [
        ("completed", "COMPLETED", Phase.SUCCEEDED, "Completed", 0, None),
        ("running", "RUNNING", Phase.RUNNING, "Running", 0, None),
        ("failed", "FAILED", Phase.FAILED, "Failed", 3, None),
        ("signaled", "FAILED", Phase.FAILED, "Signaled", None, 9),
        ("cancelled", "CANCELLED", Phase.FAILED, "Cancelled", None, 15),
    ],
)
def test_recorded_jobs_parse_the_same_in_every_version(
    version, job, state, phase, reason, exit_code, signal
):
    status = job_status(_job(version, job))
    if (job, version) == ("signaled", "0.0.38"):
        # Slurm 22.05 records this SIGKILLed batch script with the state reason
        # JobLaunchFailure, and the bridge reports SLURM's own reason where it names one.
        reason = "JobLaunchFailure"
    assert (status.state, status.phase, status.reason) == (state, phase, reason)
    assert (status.exit_code, status.signal) == (exit_code, signal)
    assert status.key == f"{job}-{version}"
    assert status.name == job
    assert status.stdout_path == f"/tmp/s24jobs/{job}-{status.job_id}.out"
    assert status.nodes


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_errors_and_pings_are_understood(version):
    unknown = _reply(version, "job-unknown")
    assert isinstance(classify_errors(unknown["status"], unknown["body"]), JobNotFound)
    # Cancelling a finished job: v0.0.38 answers plainly, v0.0.42 puts error 2021 in
    # `status` and none in `errors`; both are a success for `cancel`.
    cancelled = _reply(version, "cancel-finished")
    assert classify_errors(cancelled["status"], cancelled["body"]) is None
    assert ping_up(_reply(version, "ping"))
    assert not ping_up({"pings": [{"pinged": "DOWN"}]})
