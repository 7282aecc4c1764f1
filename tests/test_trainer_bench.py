"""The GPU benchmark's planning and reporting (the GPU parts themselves run on a device)."""

import json
from pathlib import Path

from infinitecontext.trainer.bench import fit_steps, hardest_length, report
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
    assert "| small@4096 | ours_compiled | 1,000 | 10.0% |" in text
    assert "| 100% | nan% |" in text  # the failed length is shown, not averaged in
    assert (tmp_path / "figures" / "stage1_eval.png").exists()
