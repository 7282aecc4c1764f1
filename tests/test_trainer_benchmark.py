"""The GPU benchmark's planning and reporting (the GPU parts themselves run on a device)."""

import json
from pathlib import Path

from infinitecontext.trainer.benchmark_results import merge, report
from infinitecontext.trainer.passkey_study import (
    SAFETY_S,
    TRAIN_FIXED_S,
    after_stage1_seconds,
    eval_tokens,
    fit_steps,
    hardest_length,
    make_plan,
    seeded,
    study_grids,
)
from infinitecontext.trainer.recipe import SFTRecipe, load

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_steps_and_curriculum_shrink_to_the_time_budget():
    recipe = load(RECIPES / "small-passkey.yaml", SFTRecipe)
    tokens_per_s = 10 * recipe.train.tokens_per_step  # 10 steps a second
    fitted = fit_steps(recipe, seconds=30, tokens_per_s=tokens_per_s)
    assert fitted.train.steps == 300
    ends = [s.until_step for s in fitted.train.curriculum]
    assert ends == sorted(ends) and ends[-1] < 300
    assert fitted.optim.warmup_steps <= 30
    assert fit_steps(recipe, 1e9, tokens_per_s).train.steps == recipe.train.steps


def test_dpo_targets_the_first_length_below_ninety_percent():
    grid = {"by_length": {"1024": 1.0, "32768": 0.6, "65536": 0.2}}
    assert hardest_length(grid, default=1) == 32768
    assert hardest_length({"by_length": {"1024": 1.0, "2048": 0.95}}, default=1) == 2048
    assert hardest_length({}, default=4096) == 4096


def test_report_draws_heatmaps_and_tables(tmp_path):
    results = {
        "device": "NVIDIA H100",
        "torch": "2.11",
        "phases": {
            "throughput/small@4096/ours_compiled": {
                "tokens_per_s": 1000, "mfu": 0.1, "step_s": 0.5, "peak_gib": 3.0},
            "passkey/stage1_eval": {
                "task": "passkey", "target": "m", "yarn_factor": 1.0, "lengths": [1024, 2048],
                "depths": [0.0, 1.0], "accuracy": [[1.0, 1.0], [0.5, float("nan")]],
                "trials": 4, "errors": {"2048": "OutOfMemoryError"}},
        },
    }  # fmt: skip
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    text = report(path, tmp_path / "figures")
    assert "| small@4096 | ours_compiled | 1 step | 1,000 | 10.0% |" in text
    assert "| 100% | — |" in text  # the failed length is shown, not averaged in
    assert (tmp_path / "figures" / "stage1_eval.png").exists()


def test_each_seed_has_its_own_data_and_init_and_seed_zero_is_the_recipe():
    for name in ("small-passkey.yaml", "small-yarn.yaml"):
        recipe = load(RECIPES / name, SFTRecipe)
        assert seeded(recipe, 0) == recipe
        one = seeded(recipe, 1)
        assert one.data.seed != recipe.data.seed and one.train.seed != recipe.train.seed
    stage1 = seeded(load(RECIPES / "small-passkey.yaml", SFTRecipe), 1)
    stage2 = seeded(load(RECIPES / "small-yarn.yaml", SFTRecipe), 1)
    assert stage1.data.seed != stage2.data.seed  # stage 2 sees new samples


def test_two_processes_fit_the_study_in_the_budget():
    """Two seeds sharing one GPU, 470 s each: stage 1 keeps most of its 1,200 steps and
    the planned whole (stage 1, evaluations, 240 stage-2 steps) stays in the budget."""
    stage1 = load(RECIPES / "small-passkey.yaml", SFTRecipe)
    stage2 = load(RECIPES / "small-yarn.yaml", SFTRecipe)
    assert stage2.train.steps == 240 and stage2.train.seq_len == 32768
    grids = study_grids(stage1.train.seq_len, stage2.train.seq_len, smoke=False)
    assert [n for n in grids["stage2_eval"].lengths] == [1024 * 2**i for i in range(6)]
    assert grids["stage2_eval"].trials * 5 == 40  # samples a length up to 32k
    assert grids["stage2_eval_long"].lengths == (65536, 131072)
    assert eval_tokens(grids["stage2_eval_long"]) == 10 * (65536 + 131072)
    plan = make_plan(0.0, concurrent=2)
    after = after_stage1_seconds(plan, stage2, list(grids.values()))
    seconds = 470 - after - TRAIN_FIXED_S - SAFETY_S
    fitted = fit_steps(stage1, seconds, plan.rate)
    assert fitted.train.steps >= 1000
    planned = TRAIN_FIXED_S + fitted.train.steps * stage1.train.tokens_per_step / plan.rate
    assert planned + after <= 470 - SAFETY_S


def test_merge_keeps_throughput_and_each_seed_and_report_shows_them(tmp_path):
    grid = {
        "task": "passkey", "target": "m", "yarn_factor": 1.0, "lengths": [4096, 32768],
        "depths": [0.0, 1.0], "trials": 2,
    }  # fmt: skip
    throughput = {"device": "H100", "torch": "2.11", "phases": {
        "throughput/1b@8192/ours_compiled": {
            "tokens_per_s": 46000, "mfu": 0.45, "step_s": 0.7, "peak_gib": 30.0,
            "micro_batches": 4, "batch": 1, "accum1": {"tokens_per_s": 40000, "mfu": 0.39}},
        "throughput/1b@8192/hf_deepseek_v3": {
            "tokens_per_s": 30000, "mfu": 0.29, "step_s": 1.1, "peak_gib": 41.0,
            "micro_batches": 4, "batch": 1},
        "throughput/1b@8192/ours_compiled_mb2": {
            "tokens_per_s": 47000, "mfu": 0.46, "step_s": 0.69, "peak_gib": 48.0,
            "micro_batches": 2, "batch": 2},
        "throughput/1b@8192/hf_deepseek_v3_mb2": {"error": "OutOfMemoryError"}}}  # fmt: skip
    files = [tmp_path / "tp.json"]
    files[0].write_text(json.dumps(throughput))
    for seed, at32k in ((0, 1.0), (1, 0.75)):
        accuracy = [[1.0, 1.0], [at32k, at32k]]
        phases = {
            "passkey/stage1_train": {"steps": 1000, "train_s": 200.0, "final": {"loss": 1.0},
                                     "data_seed": 1000 * seed},
            "passkey/stage2_eval": grid | {"accuracy": accuracy, "by_length": {
                "4096": 1.0, "32768": at32k}},
            "passkey/stage2_eval_long": {"skipped": "time budget"},
        }  # fmt: skip
        files.append(tmp_path / f"seed{seed}.json")
        files[-1].write_text(json.dumps({"device": "H100", "seed": seed, "phases": phases}))
    merged = merge(files)
    assert list(merged["seeds"]) == ["0", "1"]
    assert list(merged["phases"]) == list(throughput["phases"])
    path = tmp_path / "merged.json"
    path.write_text(json.dumps(merged))
    assert merge([path]) == merged  # merging a merged file changes nothing
    text = report(path, tmp_path / "figures")
    assert "1b@8192: ours / transformers = 1.57×" in text  # the best layout of each
    assert "1b@8192 (4 × 1): ours / transformers = 1.53×" in text
    assert "(2 × 2): ours / transformers" not in text  # transformers ran out of memory
    assert "| 1b@8192 | ours_compiled_mb2 | 2 × 2 × 8192 | 47,000 | 46.0% |" in text
    assert "| 1b@8192 | ours_compiled | 4 × 1 × 8192 | 46,000 | 45.0% |" in text
    assert "40,000 (39.0%)" in text
    assert "| seed 1 | 100% | 75% |" in text and "| mean | 100% | 88% |" in text
    assert "≥ 95% up to 4k: met (lowest 100%); ≥ 90% at 32k: NOT met (lowest 75%)" in text
    assert "stage2_eval_long: not run (time budget)" in text
    for seed in (0, 1):
        assert (tmp_path / "figures" / f"stage2_eval_seed{seed}.png").exists()
