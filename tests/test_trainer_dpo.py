"""DPO with TRL on the exported tiny model: pairs, training, MLflow, export."""

import json
import os

import mlflow
import pytest
import torch
import yaml
from plugins.trainer import icx
from tokenizers import Tokenizer

from infinitecontext.model import hf
from infinitecontext.trainer.dpo import haystack_rejection, pair_samples, preference_pairs
from infinitecontext.trainer.recipe import DPORecipe, EvalSpec


def test_pairs_prefer_the_needle_over_a_haystack_number(tiny_sft_run):
    tokenizer = Tokenizer.from_file(str(tiny_sft_run.model_dir / "tokenizer.json"))
    recipe = DPORecipe(model_dir="m", output_dir="o", pairs=6, length=300)
    samples = pair_samples(recipe, tokenizer)
    pairs = preference_pairs(samples, None, seed=0)
    for sample, pair in zip(samples, pairs, strict=True):
        assert pair["chosen"] == sample.answer
        assert pair["rejected"] != pair["chosen"]
        assert pair["rejected"].strip() in sample.prompt  # a hallucination from the haystack
        assert pair["prompt"].startswith("<bos>")
    own = preference_pairs(samples, [" 31337", samples[1].answer] + [""] * 4, seed=0)
    assert own[0]["rejected"] == " 31337"  # the model's own wrong answer
    assert own[1]["rejected"] == haystack_rejection(samples[1], 1, 0)  # it was right


@pytest.mark.slow
def test_dpo_trains_logs_margins_and_exports(tiny_sft_run, tmp_path):
    recipe = DPORecipe(
        model_dir=str(tiny_sft_run.model_dir), output_dir=str(tmp_path / "dpo"), pairs=16,
        length=192, rejected="model", steps=6, batch_size=4, lr=5e-4,
        evaluation=EvalSpec(lengths=(192,), depths=(0.5,), trials=4),
    )  # fmt: skip
    path = tmp_path / "dpo.yaml"
    data = json.loads(json.dumps(recipe.__dict__, default=lambda o: o.__dict__))
    data = {k: v for k, v in data.items() if v is not None}
    path.write_text(yaml.safe_dump(data))
    env = os.environ | {"MLFLOW_TRACKING_URI": tiny_sft_run.tracking_uri}
    log = icx("train", "dpo", "--config", str(path), env=env)
    result = json.loads((tmp_path / "dpo" / "result.json").read_text())
    assert f"run id: {result['run_id']}" in log
    history = result["history"]
    assert len(history) == 6 and all("rewards/margins" in h for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert result["before"]["lengths"] == [192] and result["after"]["lengths"] == [192]
    client = mlflow.MlflowClient(tiny_sft_run.tracking_uri)
    run = client.get_run(result["run_id"])
    assert {"rewards_margins", "rewards_accuracies", "before_passkey_acc_192"} <= set(
        run.data.metrics
    )
    assert "model/model.safetensors" in {
        a.path for a in client.list_artifacts(result["run_id"], "model")
    }
    aligned = hf.load(tmp_path / "dpo" / "model")
    original = hf.load(tiny_sft_run.model_dir)
    assert not torch.equal(aligned.lm_head.weight, original.lm_head.weight)
