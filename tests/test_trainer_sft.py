"""SFT end to end on CPUs: FSDP2 over 2 gloo ranks, MLflow, export, exact resume."""

import json
import os
import shutil
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from plugins.trainer import TINY_RECIPE, icx
from transformers import AutoModelForCausalLM

from infinitecontext.model import hf

pytestmark = pytest.mark.slow


def losses(output_dir: Path) -> dict[int, float]:
    """Loss per step from metrics.jsonl (a resumed run appends; the last entry wins)."""
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return {row["step"]: row["loss"] for row in map(json.loads, lines)}


def sft(output_dir: Path, *extra: str, recipe: Path = TINY_RECIPE) -> str:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return icx("train", "sft", "--config", str(recipe), "--output-dir", str(output_dir), *extra,
               env=env)  # fmt: skip


def test_fsdp_run_logs_to_mlflow_and_exports_a_transformers_model(tiny_sft_run):
    result = tiny_sft_run.result
    assert result["run_id"]
    assert f"mlflow run id: {result['run_id']}" in tiny_sft_run.log
    assert "tok/s" in tiny_sft_run.log and "ETA" in tiny_sft_run.log
    client = mlflow.MlflowClient(tiny_sft_run.tracking_uri)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == "8"
    assert run.data.tags["system.world_size"] == "2"
    history = client.get_metric_history(result["run_id"], "loss")
    assert sorted(m.step for m in history) == list(range(1, 9))
    assert history[-1].value < history[0].value
    artifacts = {a.path for a in client.list_artifacts(result["run_id"], "model")}
    assert {"model/config.json", "model/model.safetensors", "model/tokenizer.json"} <= artifacts
    model = AutoModelForCausalLM.from_pretrained(tiny_sft_run.model_dir, dtype=torch.float32)
    assert type(model).__name__ == "DeepseekV3ForCausalLM"
    ours = hf.load(tiny_sft_run.model_dir).eval()
    ids = torch.randint(3, 700, (1, 40))
    with torch.no_grad():
        assert (ours(ids) - model(ids).logits).abs().max() < 1e-3


def test_resume_continues_exactly_and_a_corrupt_checkpoint_falls_back(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    sft(straight)
    sft(split, "--stop-at-step", "4")
    assert sorted(losses(split)) == [1, 2, 3, 4]
    sft(split)  # resumes from step 4
    assert losses(split) == losses(straight)  # same data order, bit-identical losses

    # Corrupt the last checkpoint (step 8): the run falls back to step 4 and redoes 5..8.
    last = split / "checkpoints" / "step_00000008"
    for shard in last.glob("*.distcp"):
        shard.write_bytes(shard.read_bytes()[:100])
    log = sft(split)
    assert "does not load" in log and "resumed from" in log and "step_00000004" in log
    assert losses(split) == losses(straight)


def test_bf16_mixed_precision_and_activation_checkpointing_train(tmp_path):
    recipe = yaml.safe_load(TINY_RECIPE.read_text())
    recipe["parallel"] = {"mixed_precision": "bf16", "activation_checkpointing": True}
    recipe["train"] |= {"steps": 3, "curriculum": []}
    recipe["optim"]["warmup_steps"] = 1
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    sft(tmp_path / "out", recipe=path)
    assert sorted(losses(tmp_path / "out")) == [1, 2, 3]
    assert all(v == v for v in losses(tmp_path / "out").values())  # no NaN
    shutil.rmtree(tmp_path / "out" / "checkpoints")
