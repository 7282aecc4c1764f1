"""FSDP2 strategies and DCP resharding on CPUs (gloo): a checkpoint written by N ranks
under one strategy resumes on M ≠ N ranks under another, and the loss carries on where
it stopped, as if the run had never moved."""

import json
import os
from pathlib import Path

import pytest
import yaml
from plugins.trainer import TINY_RECIPE, icx

pytestmark = pytest.mark.slow
STEPS, STOP = 6, 3


def recipe(tmp_path: Path, name: str, **parallel: object) -> Path:
    """The tiny recipe with a global batch that 1, 2 and 4 ranks split evenly."""
    spec = yaml.safe_load(TINY_RECIPE.read_text())
    spec["train"] |= {"steps": STEPS, "tokens_per_step": 4096, "curriculum": [
        {"seq_len": 128, "until_step": STOP}]}  # fmt: skip
    spec["checkpoint"] = {"every_steps": STOP, "keep": 2}
    spec["parallel"] = {"mixed_precision": "fp32", **parallel}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def train(config: Path, out: Path, ranks: int, *extra: str) -> str:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return icx("train", "sft", "--config", str(config), "--output-dir", str(out),
               "--nproc-per-node", str(ranks), *extra, env=env)  # fmt: skip


def losses(out: Path) -> dict[int, float]:
    rows = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
    return {row["step"]: row["loss"] for row in rows}  # a resumed run appends: last wins


def assert_same_run(got: dict[int, float], want: dict[int, float]) -> None:
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    for step in want:  # reductions run in another order on other ranks: not bit-equal
        assert got[step] == pytest.approx(want[step], rel=1e-4), step


def test_checkpoints_reshard_across_world_sizes_and_strategies(tmp_path):
    full_shard = recipe(tmp_path, "full_shard")
    straight = tmp_path / "straight"
    train(full_shard, straight, 2)

    # ddp on 2 ranks, then full_shard on 1: replicated shards resharded onto one rank
    moved = tmp_path / "ddp-to-one"
    train(recipe(tmp_path, "ddp", strategy="ddp"), moved, 2, "--stop-at-step", str(STOP))
    log = train(full_shard, moved, 1)
    assert "resumed from" in log and f"step_{STOP:08d}" in log
    assert_same_run(losses(moved), losses(straight))

    # hybrid_shard on 4 ranks (2 groups of 2), then full_shard on 2
    hybrid = recipe(tmp_path, "hybrid", strategy="hybrid_shard", shard_group_size=2)
    moved = tmp_path / "hybrid-to-two"
    train(hybrid, moved, 4, "--stop-at-step", str(STOP))
    log = train(full_shard, moved, 2)
    assert "resumed from" in log
    assert_same_run(losses(moved), losses(straight))


def test_a_shard_group_that_does_not_divide_the_world_is_refused(tmp_path):
    bad = recipe(tmp_path, "bad", strategy="hybrid_shard", shard_group_size=3)
    with pytest.raises(AssertionError, match="does not divide the world size 2"):
        train(bad, tmp_path / "out", 2)


def test_the_scaling_benchmark_launches_as_the_operator_does(tmp_path):
    """The GPU scaling benchmark's smoke run on CPUs: 1 and 2 ranks through the
    operator's torchrun line, and a reshard from 2 ranks to 1 (the strategies
    themselves are checked above)."""
    from infinitecontext.devtools import fsdp_scaling

    command, env = fsdp_scaling.job_command(["train"], gpus=2, port=29_999)
    assert "--nproc_per_node=2" in command and "--master_port=29999" in command
    assert not any("$(" in word for word in command) and env["NNODES"] == "1"

    tiny = yaml.safe_load(TINY_RECIPE.read_text())
    tiny["train"]["curriculum"] = []
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny))
    out = tmp_path / "bench"
    assert fsdp_scaling.main([
        "--gpus", "1,2", "--recipe", str(config), "--steps", "3", "--tokens-per-gpu", "1024",
        "--strategies", "full_shard", "--resume-steps", "2", "--out", str(out),
    ]) == 0  # fmt: skip
    result = json.loads((out / "scaling.json").read_text())
    assert [(r["gpus"], r["strategy"]) for r in result["runs"]] == [
        (1, "full_shard"),
        (2, "full_shard"),
    ]
    assert all(r["tokens_per_s"] > 0 and "scaling_efficiency" in r for r in result["runs"])
    shard = result["reshard"]
    assert (shard["from_gpus"], shard["to_gpus"]) == (2, 1) and len(shard["loss_after"]) == 2
