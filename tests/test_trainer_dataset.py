"""JSONL datasets (`data.uri`): resolution, records, which record each step reads, rows,
and one real training from JSONL through the operator's own job command (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from infinitecontext.trainer import dataset
from infinitecontext.trainer.batches import (
    BOS,
    EOS,
    StepBatches,
    plan_step,
    records_before,
    records_per_step,
)
from infinitecontext.trainer.data import train_tokenizer
from infinitecontext.trainer.recipe import (
    CurriculumStage,
    DataSpec,
    RecipeError,
    SFTRecipe,
    TrainSpec,
    from_dict,
)

RECORDS = [
    {"text": "The grass is green. The sky is blue."},
    {"prompt": "What is the pass key? The pass key is", "completion": " 12345"},
    {"text": "A river is calm near the harbour."},
    {"prompt": "Name the colour of the sky:", "completion": " blue"},
    {"text": "Our ship was far away. Here we go."},
]


def write_jsonl(path: Path, records: list[dict[str, str]] = RECORDS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    return path


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    return str(train_tokenizer(1024, sentences=500).to_str())


def test_records_parse_and_a_bad_line_is_named(tmp_path: Path) -> None:
    data = dataset.JsonlDataset(write_jsonl(tmp_path / "d.jsonl"))
    assert len(data) == 5  # the trailing blank line is no record
    assert data[0] == dataset.Record("", RECORDS[0]["text"])
    assert data[1] == dataset.Record(RECORDS[1]["prompt"], RECORDS[1]["completion"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"question": "no"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected"):
        dataset.JsonlDataset(bad)
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not JSON"):
        dataset.JsonlDataset(bad)
    bad.write_text("\n")
    with pytest.raises(ValueError, match="no records"):
        dataset.JsonlDataset(bad)


def test_paths_and_file_uris_resolve_and_other_schemes_are_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "my data.jsonl")
    assert dataset.resolve(str(path)) == path
    assert dataset.resolve(f"file://{str(path).replace(' ', '%20')}") == path
    with pytest.raises(FileNotFoundError, match="is not a file"):
        dataset.resolve(str(tmp_path / "missing.jsonl"))
    with pytest.raises(RecipeError, match="unsupported scheme"):
        dataset.resolve("s3://bucket/train.jsonl")
    with pytest.raises(RecipeError, match="unsupported scheme"):
        from_dict(SFTRecipe, {"output_dir": "x", "data": {"uri": "hf://org/name"}})


def test_mlflow_artifact_uris_are_downloaded_once(tmp_path: Path, mlflow_server) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("datasets") or None
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("datasets")
    run = client.create_run(experiment_id).info
    client.log_artifact(run.run_id, str(write_jsonl(tmp_path / "train.jsonl")), "data")
    cache = tmp_path / "cache"
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_server.url
    try:
        for uri in (f"runs:/{run.run_id}/data/train.jsonl", f"{run.artifact_uri}/data/train.jsonl"):
            local = dataset.resolve(uri, cache)
            assert local.read_text() == (tmp_path / "train.jsonl").read_text()
            assert local.is_relative_to(cache)
            local.write_text('{"text": "cached"}\n')  # a second resolve reads the cache
            assert dataset.resolve(uri, cache).read_text() == '{"text": "cached"}\n'
        assert run.artifact_uri.startswith("mlflow-artifacts:/")
        with pytest.raises(ValueError, match="directory"):
            dataset.resolve(f"runs:/{run.run_id}/data", cache)
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)


TRAIN = TrainSpec(
    steps=12,
    tokens_per_step=512,
    micro_batch_tokens=256,
    seq_len=128,
    curriculum=(CurriculumStage(32, 3), CurriculumStage(64, 7)),
)


def test_records_before_sums_the_steps_before() -> None:
    for step in range(TRAIN.steps + 1):
        assert records_before(TRAIN, step) == sum(records_per_step(TRAIN, s) for s in range(step))
    assert records_per_step(TRAIN, 0) == 16 and records_per_step(TRAIN, 11) == 4


def test_each_epoch_reads_every_record_once_in_a_seeded_order() -> None:
    first = [dataset.record_at(3, 7, i) for i in range(7)]
    second = [dataset.record_at(3, 7, i) for i in range(7, 14)]
    assert sorted(first) == sorted(second) == list(range(7))
    assert first != second  # each epoch has its own order
    assert first == [dataset.record_at(3, 7, i) for i in range(7)]
    assert first != [dataset.record_at(4, 7, i) for i in range(7)]


def test_fit_cuts_the_prompt_first_then_the_answer() -> None:
    assert dataset.fit([1, 2, 3], [7, 8, EOS], 10) == ([1, 2, 3], [7, 8, EOS])
    assert dataset.fit([1, 2, 3, 4, 5], [7, 8, EOS], 5) == ([4, 5], [7, 8, EOS])
    assert dataset.fit([1, 2], [7, 8, 9, EOS], 3) == ([], [7, 8, 9])


def test_step_batches_from_jsonl_weight_completions_and_replay_on_resume(
    tmp_path: Path, tokenizer_json: str
) -> None:
    spec = DataSpec(uri=str(write_jsonl(tmp_path / "d.jsonl")), seed=5)
    full = StepBatches(TRAIN, spec, tokenizer_json, rank=0, world=1, first_step=0)
    resumed = StepBatches(TRAIN, spec, tokenizer_json, rank=0, world=1, first_step=5)
    for step in range(5, TRAIN.steps):
        for a, b in zip(full[step], resumed[step - 5], strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)
    [batch] = full[8][:1]
    assert batch["input_ids"].shape[1] == plan_step(TRAIN, 8, 1).seq_len
    assert (batch["input_ids"][:, 0] == BOS).all()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    for row in range(batch["input_ids"].shape[0]):
        n = int((batch["weights"][row] > 0).sum())
        ids = [*batch["input_ids"][row, 1:n].tolist(), int(batch["targets"][row, n - 1])]
        text = tokenizer.decode(ids[:-1])
        assert ids[-1] == EOS
        weights = batch["weights"][row, :n]
        if "?" in text or ":" in text:  # a prompt/completion record: the prompt weighs 0.1
            assert weights[0] == pytest.approx(0.1) and weights[-1] == 1.0
            answer = tokenizer.decode(batch["targets"][row, :n][batch["answer"][row, :n]].tolist())
            assert answer.strip() in ("12345", "blue")
        else:  # a text record: every token is learned
            assert (weights == 1.0).all() and batch["answer"][row, :n].all()


def test_the_synthetic_path_is_unchanged(tokenizer_json: str) -> None:
    """No uri: the generator as before (the same samples, no dataset touched)."""
    data = StepBatches(TRAIN, DataSpec(), tokenizer_json, rank=0, world=1, first_step=0)
    assert data.records is None
    [micro, *_] = data[0]
    assert micro["input_ids"].shape == (8, 32)


# ---------------------------------------------------------------- real training (CPU)


def job_command(spec: dict, workdir: Path, tracking_uri: str) -> tuple[list[str], dict[str, str]]:
    """The TrainingRun's job command and environment, exactly as the operator renders them
    for SLURM, with the recipe file written where the batch script's here-doc puts it."""
    from infinitecontext.crds.models import TrainingRunSpec
    from infinitecontext.operator.workloads.recipe import Owner, command, recipe_for

    owner = Owner("TrainingRun", "jsonl", "ns", "uid-jsonl")
    parsed = TrainingRunSpec.model_validate({**spec, "backend": "slurm"})
    work = command(owner, parsed, recipe_for(owner, parsed), tracking_uri)
    Path(work.recipe_path).parent.mkdir(parents=True, exist_ok=True)
    Path(work.recipe_path).write_text(work.recipe)
    env = dict(work.environment) | {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(workdir),
        "OMP_NUM_THREADS": "1",
        "ICX_DATA_CACHE": str(workdir / "cache"),
    }
    return work.argv, env


def run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def losses(output_dir: Path) -> dict[int, float]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return {row["step"]: row["loss"] for row in map(json.loads, lines)}


@pytest.mark.slow
def test_training_from_a_jsonl_artifact_through_the_job_command_and_exact_resume(
    tmp_path: Path, mlflow_server
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("datasets")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("datasets")
    holder = client.create_run(experiment_id).info.run_id
    records = [
        {"prompt": f"Question {i}: what is {i} plus {i}? Answer:", "completion": f" {2 * i}"}
        if i % 2
        else {"text": f"Item {i} is on the list. The list has {i + 3} items."}
        for i in range(40)
    ]
    client.log_artifact(holder, str(write_jsonl(tmp_path / "train.jsonl", records)), "data")
    spec = {
        "model": {"preset": "tiny"},
        "data": {"uri": f"runs:/{holder}/data/train.jsonl"},
        "hyperparameters": {
            "steps": 6,
            "tokensPerStep": 512,
            "microBatchTokens": 256,
            "seqLen": 64,
            "warmupSteps": 1,
            "precision": "fp32",
            "logEvery": 1,
            "seed": 3,
        },
        "checkpoint": {"path": str(tmp_path / "job"), "everySteps": 2},
    }
    argv, env = job_command(spec, tmp_path, mlflow_server.url)
    log = run(argv, env)
    [training] = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "attributes.run_name = 'icx-uid-jsonl'",
    )
    assert f"run id: {training.info.run_id}" in log
    assert training.data.params["data.uri"] == spec["data"]["uri"]
    assert sorted(m.step for m in client.get_metric_history(training.info.run_id, "loss")) == list(
        range(1, 7)
    )
    assert (tmp_path / "job" / "model" / "model.safetensors").exists()

    # The job's recipe, stopped after step 2 and resumed: the same losses.
    recipe = yaml.safe_load((tmp_path / "job" / "recipe.yaml").read_text())
    recipe["mlflow"] = {}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    split = tmp_path / "split"
    plain = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
    icx = [sys.executable, "-m", "infinitecontext.cli", "train", "sft", "--config", str(path)]
    run([*icx, "--output-dir", str(split), "--stop-at-step", "2"], plain)
    assert sorted(losses(split)) == [1, 2]
    run([*icx, "--output-dir", str(split)], plain)
    assert losses(split) == losses(tmp_path / "job")
