"""Pure parts of the SLURM bridge: validation, quoting, rendering, state mapping, and
`connect()` with nothing to connect to."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infinitecontext.slurm_bridge.auth import TokenFile
from infinitecontext.slurm_bridge.client import connect
from infinitecontext.slurm_bridge.errors import InvalidJobRequest, SlurmRejected, SlurmUnavailable
from infinitecontext.slurm_bridge.logs import expand_output_path
from infinitecontext.slurm_bridge.models import JobRequest, TorchrunSpec
from infinitecontext.slurm_bridge.parse import sacct_status
from infinitecontext.slurm_bridge.render import (
    bash_quote,
    render_script,
    rest_submit_body,
    sbatch_argv,
)
from infinitecontext.slurm_bridge.rest import classify_errors, pick_version
from infinitecontext.slurm_bridge.states import Phase, base_state, decode_exit, phase_of

HOSTILE = [
    "$(touch /tmp/icx-pwned)",
    "`touch /tmp/icx-pwned`",
    "line one\n#SBATCH --mem=1\nline three",
    "it's \"double\" and 'single' \\ back\\slash",
    "tab\there; rm -rf / #",
    "\x01\x1b[31mred\x7f",
    "ünïcødé ✓",
    "",
]


def _request(**fields: object) -> JobRequest:
    options: dict[str, object] = {"name": "job", "command": ["true"], "key": "uid-1"}
    options.update(fields)
    return JobRequest(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", HOSTILE)
def test_bash_quote_round_trips_through_bash(text):
    printed = subprocess.run(
        ["bash", "-c", f"printf %s {bash_quote(text)}"], capture_output=True, check=True
    ).stdout
    assert printed.decode() == text


def test_rendered_script_has_no_user_line():
    request = _request(command=["echo", *HOSTILE])
    script = render_script(request)
    assert all(not line.startswith("#SBATCH") for line in script.splitlines())
    assert len(script.splitlines()) == 4  # shebang, comment, set -e, the command


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "two\nlines"},
        {"name": ""},
        {"key": "a b"},
        {"key": "x" * 129},
        {"command": "echo hi"},
        {"command": []},
        {"partition": "debug\n#SBATCH"},
        {"account": "a;b"},
        {"environment": {"BAD NAME": "x"}},
        {"environment": {"SLURM_JOB_ID": "1"}},
        {"working_directory": "relative"},
        {"stdout_path": "/tmp/x\n#SBATCH"},
        {"nodes": 0},
        {"memory_mb": -1},
        {"files": {"/w/recipe.yaml": "a: 1\nICX_FILE_EOF\nb: 2\n"}},
        {"files": {"/w/recipe.yaml": "nul \x00"}},
        {"files": {"/w/two\nlines.yaml": "a: 1\n"}},
    ],
)
def test_invalid_requests_are_refused(fields):
    with pytest.raises(InvalidJobRequest):
        _request(**fields)


def test_files_are_written_verbatim_by_a_quoted_here_doc(tmp_path):
    """Every hostile text (one a line) lands in the file byte for byte; bash expands
    nothing, so no command in it runs."""
    text = "\n".join(
        [*HOSTILE, f"$(touch {tmp_path}/pwned)", "ICX_FILE_EOF ", " ICX_FILE_EOF", "no newline"]
    )
    path = tmp_path / "dir with space" / "recipe.yaml"
    script = render_script(_request(command=["cat", str(path)], files={str(path): text}))
    done = subprocess.run(["bash", "-c", script], capture_output=True, check=True)
    assert path.read_text() == text + "\n"  # the here-doc ends the last line
    assert done.stdout.decode() == text + "\n"
    assert not (tmp_path / "pwned").exists()


def test_options_travel_as_fields_not_script_lines():
    request = _request(
        name="#SBATCH --wrap=x",
        nodes=2,
        gpus_per_node=8,
        cpus_per_node=16,
        memory_mb=64000,
        time_limit_minutes=90,
        partition="gpu",
        account="research",
        qos="high",
        environment={"HF_HOME": "$(x)"},
    )
    old = rest_submit_body(request, data_parser=False)
    job = old["job"]
    assert job["name"] == "#SBATCH --wrap=x"
    assert job["comment"] == "icx-key=uid-1"
    assert (job["nodes"], job["gpus_per_node"], job["cpus_per_task"]) == ([2, 2], "8", 16)
    assert (job["environment"]["HF_HOME"], job["time_limit"]) == ("$(x)", 90)
    assert old["script"] == render_script(request)
    new = rest_submit_body(request, data_parser=True)
    job = new["job"]
    assert list(new) == ["job"] and job["script"] == render_script(request)
    assert (job["name"], job["comment"]) == ("#SBATCH --wrap=x", "icx-key=uid-1")
    assert (job["minimum_nodes"], job["maximum_nodes"]) == (2, 2)
    assert job["tres_per_node"] == "gres/gpu:8"
    assert "HF_HOME=$(x)" in job["environment"]
    assert job["time_limit"] == {"set": True, "infinite": False, "number": 90}
    assert job["memory_per_node"]["number"] == 64000
    argv = sbatch_argv(request)
    assert "--job-name=#SBATCH --wrap=x" in argv and "--gpus-per-node=8" in argv
    assert "--time=90" in argv and "--mem=64000" in argv and "--qos=high" in argv


def test_multi_node_torchrun_takes_rendezvous_from_slurm():
    request = _request(
        nodes=4,
        command=["train.py", "--lr", "1e-4"],
        torchrun=TorchrunSpec(8, 29400),
        container_image="nvcr.io/nvidia/pytorch:25.01-py3",
    )
    script = render_script(request)
    assert 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    assert "srun --ntasks-per-node=1 --container-image=nvcr.io/nvidia/pytorch:25.01-py3" in script
    assert '--node_rank="$SLURM_NODEID"' in script and '--nnodes="$SLURM_NNODES"' in script
    assert '--rdzv_endpoint="$head_node:29400"' in script and "--nproc_per_node=8" in script
    assert script.rstrip().endswith('icx-torchrun "$head_node" train.py --lr 1e-4')


@pytest.mark.parametrize(
    ("state", "phase", "reason"),
    [
        ("PENDING", Phase.PENDING, "Pending"),
        ("RUNNING", Phase.RUNNING, "Running"),
        ("COMPLETING", Phase.RUNNING, "Completing"),
        ("COMPLETED", Phase.SUCCEEDED, "Completed"),
        ("FAILED", Phase.FAILED, "Failed"),
        ("CANCELLED by 0", Phase.FAILED, "Cancelled"),
        ("TIMEOUT", Phase.FAILED, "Timeout"),
        ("NODE_FAIL", Phase.FAILED, "NodeFail"),
        ("PREEMPTED", Phase.FAILED, "Preempted"),
        ("OUT_OF_MEMORY", Phase.FAILED, "OutOfMemory"),
        ("SOMETHING_NEW", Phase.UNKNOWN, "Something_New"),
    ],
)
def test_states_map_to_phases(state, phase, reason):
    assert phase_of(state) == (phase, reason)


def test_state_and_exit_code_shapes_of_old_and_new_apis():
    assert base_state("RUNNING") == "RUNNING"
    assert base_state(["COMPLETING", "RUNNING"]) == "COMPLETING"
    assert decode_exit(768).exit_code == 3 and decode_exit(9).signal == 9
    new = {"return_code": {"set": True, "number": 2}, "signal": {"id": {"number": 0}}}
    assert (decode_exit(new).exit_code, decode_exit(new).signal) == (2, None)


def test_output_patterns_expand():
    assert expand_output_path("/o/%x-%j.%u.%%", 7, "n", "root", "vm") == "/o/n-7.root.%"


def test_version_discovery_and_error_classes():
    # SLURM 23.02 serves v0.0.37-v0.0.39, 24.05 v0.0.39-v0.0.41, 25.11 v0.0.42-v0.0.44.
    paths = ["/slurm/v0.0.38/ping", "/slurm/v0.0.39/ping", "/slurmdb/v0.0.39/jobs"]
    assert pick_version(paths) == "0.0.38"
    assert pick_version(["/slurm/v0.0.39/ping/", "/slurm/v0.0.41/ping/"]) == "0.0.41"
    assert pick_version([f"/slurm/v0.0.4{minor}/ping/" for minor in (2, 3, 4)]) == "0.0.42"
    with pytest.raises(SlurmRejected, match=r"0\.0\.43"):
        pick_version(["/slurm/v0.0.43/ping/", "/slurm/v0.0.39/ping/"])
    down = classify_errors(500, {"errors": [{"error_number": -1, "error": "Unspecified"}]})
    assert type(down).__name__ == "SlurmUnavailable"
    bad = classify_errors(500, {"errors": [{"error_code": 2000, "error": "Invalid partition"}]})
    assert type(bad).__name__ == "SlurmRejected"
    assert classify_errors(200, {"errors": []}) is None


def test_without_slurmrestd_or_sbatch_connect_is_unavailable(monkeypatch, tmp_path):
    """The operator image has no sbatch: there, a silent slurmrestd is a retryable error."""
    monkeypatch.setenv("PATH", str(tmp_path))
    token = tmp_path / "token"
    token.write_text("t")
    with pytest.raises(SlurmUnavailable, match="did not answer"):
        connect("http://127.0.0.1:9", TokenFile("root", token))


def test_the_bridge_and_provisioning_import_without_torch():
    modules = ["rest", "commands", "client", "cli", "health"]
    code = "; ".join(f"import infinitecontext.slurm_bridge.{name}" for name in modules)
    code += "; import infinitecontext.devtools.provision, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sacct_lines_parse():
    done = sacct_status("42|train|CANCELLED by 0|0:15|/w|icx-key=uid-9|gpu-[01-02]")
    assert (done.job_id, done.phase, done.reason, done.signal) == (
        42,
        Phase.FAILED,
        "Cancelled",
        15,
    )
    assert (done.key, done.nodes, done.working_directory) == ("uid-9", "gpu-[01-02]", "/w")
    failed = sacct_status("43|x|FAILED|3:0|/w||n1")
    assert (failed.exit_code, failed.signal, failed.key) == (3, None, None)
