"""The quickstart's lifecycle (`icx demo up --preset tiny`) end to end: the real control
plane, the operator process, MLflow, the local SLURM cluster and vLLM's CPU build.
TrainingRun → Alignment → Evaluation → InferenceService must all end Ready, the versions
carry their lineage, and the served model answers; `down` leaves no process behind."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import yaml
from plugins.kube import KubeCluster
from plugins.processes import free_port

from infinitecontext.crds import models
from infinitecontext.devtools import demo

SPECS = {
    "TrainingRun": models.TrainingRunSpec,
    "Alignment": models.AlignmentSpec,
    "Evaluation": models.EvaluationSpec,
    "InferenceService": models.InferenceServiceSpec,
}


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return pid > 0 and stat.is_file() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _lifecycle_documents(folder: str) -> list[dict]:
    files = sorted((demo.REPO / "examples" / folder).glob("*.yaml"))
    return [yaml.safe_load(f.read_text()) for f in files]


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_rendered_lifecycle_is_valid_and_lives_under_the_state_dir(
    preset: demo.DemoPreset, tmp_path: Path
) -> None:
    config = demo.DemoConfig(preset=preset, namespace="ns", state_dir=tmp_path)
    jobs_dir = config.jobs_dir("k1")
    rendered = demo.render(_lifecycle_documents("lifecycle"), config, jobs_dir, serve_port=9123)
    assert [d["kind"] for d in rendered] == list(SPECS)
    for doc in rendered:
        spec = SPECS[doc["kind"]].model_validate(doc["spec"])
        assert doc["metadata"]["namespace"] == "ns"
        assert spec.backend == "slurm"
        assert spec.slurm is not None and spec.slurm.working_directory == str(jobs_dir)
    assert rendered[0]["spec"]["checkpoint"]["path"] == str(jobs_dir / "passkey-train")
    steps = rendered[0]["spec"]["hyperparameters"]["steps"]
    assert steps == (4 if preset == "tiny" else 600)
    assert rendered[3]["spec"]["server"]["port"] == 9123


def test_a_new_lifecycle_gets_job_folders_of_its_own() -> None:
    """A demo after `down` must not resume the first one's checkpoints (it then logged
    into the old MLflow run, and the TrainingRun failed); a re-run `up` keeps the
    folders, so that re-applying changes no spec and nothing trains again."""
    first = demo.jobs_key_for(demo.Processes(), lifecycle_exists=False, now=1_800_000_000)
    running = demo.Processes(jobs_key=first)
    assert demo.jobs_key_for(running, lifecycle_exists=True, now=1_800_000_500) == first
    after_down = demo.jobs_key_for(demo.Processes(), lifecycle_exists=False, now=1_800_000_500)
    resources_gone = demo.jobs_key_for(running, lifecycle_exists=False, now=1_800_000_500)
    assert after_down != first and resources_gone != first


def test_only_the_lifecycle_s_own_resources_count(tmp_path: Path) -> None:
    """A Failed resource of someone else's in the namespace does not fail `up`."""
    config = demo.DemoConfig(state_dir=tmp_path)
    keys = demo.lifecycle_keys(config)
    failed = {"type": "Ready", "status": "False", "reason": "JobFailed", "message": "oom"}
    other = {
        "kind": "TrainingRun",
        "metadata": {"name": "someone-elses"},
        "status": {"phase": "Failed", "conditions": [failed]},
    }
    ours = [{"kind": kind, "metadata": {"name": name}} for kind, name in sorted(keys)]
    own = demo.own_resources([other, *ours], keys)
    assert [o["kind"] for o in own] == list(SPECS)
    assert not [f for f in map(demo.failure_of, own) if f]
    # … nor is it deleted by `down`.
    assert sorted(demo.lifecycle_names(config)) == [
        "alignment/passkey-dpo",
        "evaluation/passkey-eval",
        "inferenceservice/passkey-serve",
        "trainingrun/passkey-train",
    ]


def test_down_says_what_it_leaves_running(tmp_path: Path) -> None:
    """With $KUBECONFIG's cluster in use, `down` says it leaves that cluster running;
    the demo's own plane it stops, whichever way `up` found it."""
    layout = demo.DemoConfig(state_dir=tmp_path).cluster_layout
    theirs = demo.Processes(kubeconfig=str(tmp_path / "theirs.kubeconfig"))
    assert demo.left_running(theirs, layout) == [
        f"the Kubernetes cluster of {tmp_path / 'theirs.kubeconfig'} (the demo did not start it)"
    ]
    ours = demo.Processes(kubeconfig=str(layout.admin_kubeconfig))
    assert demo.left_running(ours, layout) == []
    assert demo.left_running(demo.Processes(), layout) == []


def test_the_demo_says_how_to_reach_its_cluster_with_kubectl(tmp_path: Path) -> None:
    hint = demo.kubectl_hint(Path("/b/kubectl"), tmp_path / "admin.kubeconfig", "icx-demo")
    assert hint.splitlines() == [
        f"export KUBECONFIG={tmp_path / 'admin.kubeconfig'}",
        "export PATH=/b:$PATH",
        "kubectl get infinitecontext -n icx-demo",
    ]


def test_processes_from_an_older_demo_still_load(tmp_path: Path) -> None:
    path = tmp_path / "processes.json"
    path.write_text('{"kubeconfig": "k", "local_cluster": true, "mlflow_pid": 7}')
    assert demo.Processes.load(path) == demo.Processes(kubeconfig="k", mlflow_pid=7)


def test_the_table_and_summary_keep_names_whole_at_80_columns() -> None:
    from rich.console import Console

    console = Console(width=80, record=True)
    row = demo.Row(
        "InferenceService", "passkey-serve", "Progressing", "WaitingForReplicas",
        "waiting for the server job to answer /health " * 3, "0/1 ready",
    )  # fmt: skip
    console.print(demo.render_table([row], 12.0))
    text = console.export_text()
    for whole in ("InferenceService", "passkey-serve", "Progressing", "0/1 ready"):
        assert whole in text
    assert "WaitingForReplicas" in text.replace(" ", "").replace("\n", "")
    assert demo.accuracy_text(1 / 6) == "0.17" and demo.accuracy_text(None) == "not measured"


def test_gpu_examples_are_valid() -> None:
    for doc in _lifecycle_documents("gpu"):
        spec = SPECS[doc["kind"]].model_validate(doc["spec"])
        assert spec.backend == "kubernetes"


def test_rows_and_failures_come_from_status() -> None:
    running = {
        "kind": "TrainingRun",
        "metadata": {"name": "t"},
        "spec": {"hyperparameters": {"steps": 600}},
        "status": {"phase": "Running", "progress": {"step": 40, "loss": 1.5}},
    }
    assert demo.row_of(running).progress == "step 40/600 loss 1.500"
    assert not demo.is_done(running) and demo.failure_of(running) is None
    ready = {"type": "Ready", "status": "False", "reason": "JobFailed", "message": "oom"}
    failed = running | {"status": {"phase": "Failed", "conditions": [ready]}}
    assert demo.failure_of(failed) == "TrainingRun t is Failed: oom"
    done = running | {"status": {"phase": "Succeeded", "conditions": [ready | {"status": "True"}]}}
    assert demo.is_done(done)


def test_the_summary_says_whether_the_served_answer_is_right() -> None:
    right = demo.Summary("", expected=" 89535", completion=" 89535. The pass key")
    wrong = demo.Summary("", expected=" 89535", completion=" 85553 is the pass key")
    assert right.answered_right and right.answer_line().startswith("✓")
    assert not wrong.answered_right
    assert (
        wrong.answer_line()
        == "✗ the served model answered '85553 is the pass key'; the pass key is 89535"
    )
    assert not demo.Summary("", expected="1", completion="").answered_right


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_lifecycle_runs_through_the_operator(
    icx_crds: KubeCluster, slurm_cluster: None, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    config = demo.DemoConfig(
        preset="tiny",
        namespace=f"demo-{uuid.uuid4().hex[:8]}",
        state_dir=tmp_path / "demo",
        mlflow_port=free_port(),
        serve_port=free_port(),
        kubeconfig=icx_crds.kubeconfig,
        timeout_s=600,
        live=False,
    )
    try:
        summary = demo.up(config)
        rows = demo.status(config)
        assert [(r.kind, r.phase, r.reason) for r in rows] == [
            ("TrainingRun", "Succeeded", rows[0].reason),
            ("Alignment", "Succeeded", rows[1].reason),
            ("Evaluation", "Succeeded", rows[2].reason),
            ("InferenceService", "Available", rows[3].reason),
        ]
        trained, aligned = summary.models
        assert trained["resource"] == "TrainingRun/passkey-train"
        assert aligned["tags"]["infinitecontext.parent_model"] == trained["uri"]
        assert summary.evaluation["passed"] is True
        assert len(summary.evaluation["perLength"]) == 2
        assert Path(summary.heatmap).is_file()
        assert summary.completion_tokens > 0 and summary.expected.strip().isdigit()
        # A second `up` reuses everything: nothing is trained again.
        again = demo.up(config)
        assert [m["uri"] for m in again.models] == [m["uri"] for m in summary.models]
        # After `down`, a new demo trains afresh in folders of its own (it used to resume
        # the first one's checkpoints, log into its MLflow run and fail).
        first_key = demo.Processes.load(config.processes_file).jobs_key
        assert demo.down(config).left_running == [
            f"the Kubernetes cluster of {icx_crds.kubeconfig} (the demo did not start it)"
        ]
        time.sleep(1)  # keys are UTC seconds
        fresh = demo.up(config)
        assert demo.Processes.load(config.processes_file).jobs_key != first_key
        assert fresh.models[0]["uri"] != summary.models[0]["uri"]
    finally:
        started = demo.Processes.load(config.processes_file)
        demo.down(config)
    assert not config.processes_file.exists()
    for pid in (started.operator_pid, started.mlflow_pid):
        assert not _alive(pid), f"process {pid} survived `down`"
    assert os.path.isdir(config.state_dir)
