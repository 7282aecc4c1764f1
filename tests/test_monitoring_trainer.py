"""The trainer's own observability: Prometheus metrics while it runs, W&B offline runs."""

import math
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infinitecontext.trainer.metrics import TrainerMetrics
from infinitecontext.trainer.wandb_tracking import WandbTracker


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("run") == "r1"
    }


def test_trainer_metrics_are_served_while_it_runs():
    metrics = TrainerMetrics("r1", port=0, address="127.0.0.1")
    assert metrics.server is not None
    port = metrics.server.server_port
    try:
        before = scrape(port)
        assert math.isnan(before["icx_trainer_mfu"])  # unknown until measured
        assert before["icx_trainer_checkpoints_total"] == 0
        metrics.log_metrics({"loss": 2.5, "tokens_per_s": 1234.0}, step=6)
        metrics.log_metrics({"loss": 2.5, "tokens_per_s": 1234.0}, step=7)
        metrics.checkpoint_saved()
        after = scrape(port)
        assert after["icx_trainer_step"] == 7
        assert after["icx_trainer_loss"] == 2.5
        assert after["icx_trainer_tokens_per_second"] == 1234.0
        assert after["icx_trainer_checkpoints_total"] == 1
        assert 0 <= after["icx_trainer_step_seconds"] < 5
        progress = "icx_trainer_last_progress_timestamp_seconds"
        assert after[progress] >= before[progress]
    finally:
        metrics.finish()


def test_wandb_runs_offline_without_an_api_key(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    tracker = WandbTracker("icx-test", "offline-run", tmp_path, {"lr": 0.001})
    for step in range(3):
        tracker.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    tracker.finish()
    assert tracker.mode == "offline"
    run_dir = tracker.run_dir
    assert run_dir.parent == tmp_path / "wandb"
    assert run_dir.name.startswith("offline-run-")
    assert list(run_dir.glob("run-*.wandb")), "no run file for `wandb sync`"


def test_training_run_tracking_reaches_the_recipe():
    import yaml

    from infinitecontext.crds.models import TrainingRunSpec
    from infinitecontext.operator.workloads.recipe import Owner, recipe_for
    from infinitecontext.trainer.recipe import SFTRecipe, dump, from_dict

    spec = TrainingRunSpec.model_validate(
        {"model": {"preset": "tiny"}, "tracking": ["mlflow", "wandb"]}
    )
    recipe = recipe_for(Owner("TrainingRun", "run", "ns", "u-1"), spec)
    assert isinstance(recipe, SFTRecipe) and recipe.tracking == ("mlflow", "wandb")
    assert from_dict(SFTRecipe, yaml.safe_load(dump(recipe))).tracking == ("mlflow", "wandb")


@pytest.mark.slow  # a real SFT run: a minute on 2 cores
def test_sft_logs_to_wandb_offline_and_serves_metrics(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[1]
    recipe = yaml.safe_load((repo / "recipes" / "tiny-cpu.yaml").read_text())
    recipe["train"] |= {"steps": 4, "curriculum": []}
    recipe["tracking"] = ["wandb"]
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    icx = str(Path(sys.executable).with_name("icx"))
    result = subprocess.run(
        [icx, "train", "sft", "--config", str(config), "--output-dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = list((tmp_path / "out" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, result.stdout[-2000:]
    assert list(runs[0].glob("run-*.wandb"))
