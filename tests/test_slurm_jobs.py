"""The SLURM bridge against real clusters: the host's SLURM 22.05 (REST and CLI) and,
for the REST API, the two-node Slurm 24.11 cluster in containers (tests/plugins/slurm.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path

import pytest
from plugins.slurm import start_daemon, stop_daemon, wait_for_job

from infinitecontext.devtools.waiting import wait_for
from infinitecontext.operator.finalizers import cancel_live
from infinitecontext.slurm_bridge.client import connect
from infinitecontext.slurm_bridge.commands import CommandClient
from infinitecontext.slurm_bridge.errors import JobNotFound, SlurmUnavailable
from infinitecontext.slurm_bridge.models import JobRequest, TorchrunSpec
from infinitecontext.slurm_bridge.rest import RestClient
from infinitecontext.slurm_bridge.states import Phase

HOSTILE = [
    "$(touch {marker})",
    "`touch {marker}`",
    "a\nb\n#SBATCH --mem=1",
    "#SBATCH --wrap='touch {marker}'",
    'it\'s "quoted" \\ and ; touch {marker} && echo',
]


def _request(job_dir: Path, command: list[str], **fields: object) -> JobRequest:
    options: dict[str, object] = {
        "name": "icx-test",
        "key": f"test-{uuid.uuid4()}",
        "working_directory": str(job_dir),
        "stdout_path": str(job_dir / "%x-%j.out"),
        "stderr_path": str(job_dir / "%x-%j.err"),
        "time_limit_minutes": 5,
        "memory_mb": 256,
    }
    options.update(fields)
    return JobRequest(command=command, **options)  # type: ignore[arg-type]


def _finished(client: RestClient | CommandClient, job_id: int, timeout_s: float = 60):
    return wait_for_job(
        f"job {job_id} to finish", lambda: client.get(job_id), lambda s: s.finished, timeout_s
    )


def test_python_job_completes_and_its_output_reads_back(slurm_client, job_dir):
    script = job_dir / "hello.py"
    script.write_text(
        "import os, sys\nprint('hello', os.environ['GREETING'])\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    request = _request(job_dir, ["python3", str(script)], environment={"GREETING": "slurm"})
    ref = slurm_client.submit(request)
    status = _finished(slurm_client, ref.job_id)
    assert (status.state, status.phase, status.exit_code) == ("COMPLETED", Phase.SUCCEEDED, 0)
    assert status.key == request.key
    logs = slurm_client.logs(ref.job_id, tail=10)
    assert logs.stdout == "hello slurm\n"
    assert logs.stderr == "to stderr\n"
    assert logs.stdout_path == str(job_dir / f"icx-test-{ref.job_id}.out")


def test_failing_job_is_failed_with_its_exit_code(slurm_client, job_dir):
    ref = slurm_client.submit(_request(job_dir, ["python3", "-c", "raise SystemExit(3)"]))
    status = _finished(slurm_client, ref.job_id)
    assert (status.state, status.phase, status.exit_code) == ("FAILED", Phase.FAILED, 3)


def test_long_job_is_cancelled(slurm_client, job_dir):
    ref = slurm_client.submit(_request(job_dir, ["sleep", "300"]))
    wait_for_job(
        "the job to run", lambda: slurm_client.get(ref.job_id), lambda s: s.phase == Phase.RUNNING
    )
    slurm_client.cancel(ref.job_id)
    status = _finished(slurm_client, ref.job_id)
    assert (status.state, status.phase, status.reason) == ("CANCELLED", Phase.FAILED, "Cancelled")
    slurm_client.cancel(ref.job_id)  # cancelling a finished job is not an error


def test_same_key_returns_the_same_job(slurm_rest, slurm_commands, job_dir):
    request = _request(job_dir, ["true"])
    first = slurm_rest.submit(request)
    again = slurm_rest.submit(request)
    from_cli = slurm_commands.submit(request)
    assert first.created and not again.created and not from_cli.created
    assert first.job_id == again.job_id == from_cli.job_id
    assert [job.job_id for job in slurm_rest.list(key=request.key)] == [first.job_id]


def test_same_key_returns_the_same_job_on_slurm_24_11(slurm24_rest, job_dir):
    request = _request(job_dir, ["true"])
    first = slurm24_rest.submit(request)
    again = slurm24_rest.submit(request)
    assert first.created and not again.created and first.job_id == again.job_id
    assert [job.job_id for job in slurm24_rest.list(key=request.key)] == [first.job_id]


def test_two_node_job_runs_one_task_on_each_node_of_slurm_24_11(slurm24_rest, job_dir):
    # One write(2) per task: both tasks share the job's output file.
    printer = (
        "import os; line = os.environ['SLURM_NODEID'] + ' ' + os.environ['SLURMD_NODENAME']; "
        "os.write(1, (line + '\\n').encode())"
    )
    ref = slurm24_rest.submit(_request(job_dir, ["python3", "-c", printer], nodes=2))
    status = _finished(slurm24_rest, ref.job_id)
    logs = slurm24_rest.logs(ref.job_id)
    assert (status.phase, status.nodes) == (Phase.SUCCEEDED, "n[1-2]"), logs.stderr
    assert sorted(logs.stdout.splitlines()) == ["0 n1", "1 n2"]


def test_unknown_job_is_not_found(slurm_client):
    with pytest.raises(JobNotFound):
        slurm_client.get(999_999_999)


def test_the_finalizers_cancel_skips_finished_and_purged_jobs(slurm_client, job_dir):
    done = slurm_client.submit(_request(job_dir, ["true"]))
    _finished(slurm_client, done.job_id)
    live = slurm_client.submit(_request(job_dir, ["sleep", "300"]))
    purged = 999_999_999  # as a job SLURM forgot after MinJobAge
    assert cancel_live(slurm_client, [done.job_id, purged, live.job_id]) == [live.job_id]
    assert _finished(slurm_client, live.job_id).state == "CANCELLED"


def test_hostile_strings_reach_the_job_verbatim(slurm_client, job_dir):
    marker = job_dir / "pwned"
    values = [text.format(marker=marker) for text in HOSTILE]
    environment = {f"HOSTILE_{i}": value for i, value in enumerate(values)}
    printer = (
        "import os, sys; print(repr(sys.argv[1:])); print(repr(sorted("
        "(k, v) for k, v in os.environ.items() if k.startswith('HOSTILE_'))))"
    )
    name = "#SBATCH --wrap=x $(touch " + str(marker) + ") `id` 'q' \"d\""
    request = _request(
        job_dir,
        ["python3", "-c", printer, *values],
        environment=environment,
        name=name,
        stdout_path=str(job_dir / "out-%j"),
        stderr_path=None,
    )
    ref = slurm_client.submit(request)
    status = _finished(slurm_client, ref.job_id)
    assert status.phase == Phase.SUCCEEDED, slurm_client.logs(ref.job_id).stdout
    assert status.name == name
    argv_line, env_line = slurm_client.logs(ref.job_id).stdout.splitlines()
    assert argv_line == repr(values)
    assert env_line == repr(sorted(environment.items()))
    assert not marker.exists()


@pytest.mark.slow
def test_single_node_torchrun_takes_rendezvous_from_slurm(slurm_rest, job_dir):
    script = job_dir / "rank.py"
    # One write(2) per rank: both ranks share the job's output file, and print() of several
    # values may write them piecewise (unbuffered), interleaving "0 2 0" with "1 2 0".
    script.write_text(
        "import os\n"
        "line = ' '.join(os.environ[k] for k in ('RANK', 'WORLD_SIZE', 'GROUP_RANK'))\n"
        "os.write(1, (line + '\\n').encode())\n"
    )
    venv_bin = str(Path(sys.executable).parent)
    request = _request(
        job_dir,
        [str(script)],
        torchrun=TorchrunSpec(nproc_per_node=2),
        environment={"PATH": f"{venv_bin}:/usr/bin:/bin"},
        cpus_per_node=2,
        memory_mb=4096,
    )
    ref = slurm_rest.submit(request)
    status = _finished(slurm_rest, ref.job_id, timeout_s=180)
    logs = slurm_rest.logs(ref.job_id)
    assert status.phase == Phase.SUCCEEDED, logs.stderr
    assert sorted(logs.stdout.split("\n")[:-1]) == ["0 2 0", "1 2 0"]


@pytest.mark.slow
def test_tracking_continues_across_a_slurmctld_restart(slurm_rest, job_dir):
    ref = slurm_rest.submit(_request(job_dir, ["sleep", "12"]))
    wait_for_job(
        "the job to run", lambda: slurm_rest.get(ref.job_id), lambda s: s.phase == Phase.RUNNING
    )
    stop_daemon("slurmctld")
    try:
        with pytest.raises(SlurmUnavailable):
            slurm_rest.get(ref.job_id)
    finally:
        start_daemon("slurmctld")
    status = _finished(slurm_rest, ref.job_id, timeout_s=90)
    assert (status.state, status.exit_code) == ("COMPLETED", 0)


@pytest.mark.slow
def test_slurmrestd_down_is_a_clear_retryable_error(slurm_rest, job_dir):
    stop_daemon("slurmrestd")
    try:
        with pytest.raises(SlurmUnavailable, match=r"slurmrestd .* did not answer") as caught:
            slurm_rest.list()
        assert caught.value.retryable
        # With the commands at hand, connect() falls back to them.
        assert isinstance(connect(), CommandClient)
    finally:
        start_daemon("slurmrestd")
    # Back up: the same client works again without being rebuilt.
    ref = wait_until_submitted(slurm_rest, _request(job_dir, ["true"]))
    assert _finished(slurm_rest, ref.job_id).phase == Phase.SUCCEEDED


def wait_until_submitted(client: RestClient, request: JobRequest, timeout_s: float = 30):
    submit = partial(client.submit, request)
    return wait_for("slurmrestd to take a job", submit, timeout_s, retry_on=(SlurmUnavailable,))


def test_icx_slurm_commands(slurm_cluster, job_dir):
    icx = [str(Path(sys.executable).parent / "icx"), "slurm"]
    key = f"cli-{uuid.uuid4()}"
    submit = [*icx, "submit", "--name", "cli", "--key", key, "--workdir", str(job_dir)]
    out = subprocess.run([*submit, "--", "echo", "$(from icx)"], capture_output=True, text=True)
    job_id = json.loads(out.stdout)["job_id"]
    wait_for_job(f"job {job_id} to finish", lambda: RestClient().get(job_id), lambda s: s.finished)
    status = json.loads(subprocess.run([*icx, "status", str(job_id)], capture_output=True).stdout)
    assert (status["phase"], status["key"]) == ("Succeeded", key)
    logs = subprocess.run([*icx, "logs", str(job_id)], capture_output=True, text=True).stdout
    assert logs == "$(from icx)\n"
