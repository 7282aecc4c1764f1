"""Passkey grid evaluation of a model directory and of a served endpoint."""

import json

import mlflow
import pytest
from plugins.trainer import icx
from tokenizers import Tokenizer

from infinitecontext.trainer.evaluate import (
    GridResult,
    endpoint_generator,
    evaluate_grid,
    model_dir_generator,
    plot_heatmap,
    yarn_config,
)
from infinitecontext.trainer.recipe import EvalSpec

SPEC = EvalSpec(lengths=(128, 256), depths=(0.0, 0.5, 1.0), trials=2, batch_tokens=1024)


def test_yarn_factor_is_set_over_the_trained_length():
    config = {"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default"}}
    extended = yarn_config(config, 8.0)
    assert extended["max_position_embeddings"] == 32768
    assert extended["rope_parameters"]["original_max_position_embeddings"] == 4096
    # A model extended already keeps its original length and takes the new factor.
    again = yarn_config(extended, 16.0)
    assert again["max_position_embeddings"] == 65536
    assert again["rope_parameters"]["factor"] == 16.0


def test_heatmap_is_written(tmp_path):
    result = GridResult("passkey", "x", 1.0, [1024, 2048], [0.0, 1.0], [[1.0, 0.5], [0.0, 0.25]], 4)
    assert result.by_length == {1024: 0.75, 2048: 0.125}
    path = plot_heatmap(result, tmp_path / "heat.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_eval_cli_writes_json_heatmap_and_mlflow_metrics(tiny_sft_run, tmp_path):
    out = tmp_path / "eval"
    env_log = icx(
        "eval", "passkey", "--model-dir", str(tiny_sft_run.model_dir), "--output-dir", str(out),
        "--lengths", "128,256", "--depths", "0,0.5,1", "--trials", "2", "--yarn-factor", "2",
        "--mlflow-run-id", tiny_sft_run.result["run_id"],
        env={**__import__("os").environ, "MLFLOW_TRACKING_URI": tiny_sft_run.tracking_uri},
    )  # fmt: skip
    assert "passkey     128 tokens" in env_log
    result = json.loads((out / "passkey_yarn2.json").read_text())
    assert result["lengths"] == [128, 256] and len(result["accuracy"][0]) == 3
    assert (out / "passkey_yarn2.png").stat().st_size > 1000
    client = mlflow.MlflowClient(tiny_sft_run.tracking_uri)
    metrics = client.get_run(tiny_sft_run.result["run_id"]).data.metrics
    assert {"passkey_acc_128_yarn2", "passkey_acc_mean_yarn2"} <= set(metrics)


@pytest.mark.slow
def test_endpoint_and_model_directory_give_the_same_answers(tiny_vllm):
    """The same greedy model behind vLLM and loaded here: the grids agree."""
    tokenizer = Tokenizer.from_file(str(tiny_vllm.model_dir / "tokenizer.json"))
    local = evaluate_grid(SPEC, tokenizer, model_dir_generator(tiny_vllm.model_dir, 1.0), "dir")
    served = evaluate_grid(SPEC, tokenizer, endpoint_generator(tiny_vllm.base_url, "tiny"), "url")
    # bf16 serving vs fp32 here may flip a near-tie; the grids must still mostly agree.
    cells = [(a, b) for ra, rb in zip(local.accuracy, served.accuracy, strict=True)
             for a, b in zip(ra, rb, strict=True)]  # fmt: skip
    assert sum(abs(a - b) for a, b in cells) / len(cells) <= 0.25
