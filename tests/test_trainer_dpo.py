"""DPO with TRL on the exported tiny model: pairs, training, MLflow, export."""

import os

import mlflow
import pytest
import torch
from plugins.trainer import icx
from tokenizers import Tokenizer

from infinitecontext.model import hf
from infinitecontext.trainer.dpo import haystack_rejection, pair_samples, preference_pairs
from infinitecontext.trainer.recipe import DPORecipe, EvalSpec, MlflowSpec, dump


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
        mlflow=MlflowSpec(run_name="dpo-test"),
    )  # fmt: skip
    path = tmp_path / "dpo.yaml"
    path.write_text(dump(recipe))
    env = os.environ | {"MLFLOW_TRACKING_URI": tiny_sft_run.tracking_uri}
    log = icx("train", "dpo", "--config", str(path), env=env)
    client = mlflow.MlflowClient(tiny_sft_run.tracking_uri)
    [run] = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "attributes.run_name = 'dpo-test'",
    )
    run_id = run.info.run_id
    assert f"run id: {run_id}" in log
    losses = client.get_metric_history(run_id, "loss")
    assert len(losses) == 6 and len(client.get_metric_history(run_id, "rewards_margins")) == 6
    ordered = sorted(losses, key=lambda m: m.step)
    assert ordered[-1].value < ordered[0].value
    assert {"rewards_accuracies", "before_passkey_acc_192", "after_passkey_acc_192"} <= set(
        run.data.metrics
    )
    assert "model/model.safetensors" in {a.path for a in client.list_artifacts(run_id, "model")}
    aligned = hf.load(tmp_path / "dpo" / "model")
    original = hf.load(tiny_sft_run.model_dir)
    assert not torch.equal(aligned.lm_head.weight, original.lm_head.weight)
