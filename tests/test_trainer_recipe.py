"""Recipes load from YAML into typed dataclasses and refuse bad input by name."""

import itertools
from pathlib import Path

import pytest

from infinitecontext.trainer.recipe import (
    DPORecipe,
    EvalSpec,
    ModelSpec,
    RecipeError,
    SFTRecipe,
    dump,
    from_dict,
    load,
)
from infinitecontext.trainer.sft import lr_factor

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.mark.parametrize("name", ["tiny-cpu.yaml", "small-passkey.yaml", "1b-8k.yaml"])
def test_shipped_sft_recipes_load(name):
    recipe = load(RECIPES / name, SFTRecipe)
    assert recipe.train.steps > 0


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("small-yarn.yaml", SFTRecipe),
        ("small-dpo.yaml", DPORecipe),
        ("passkey-eval.yaml", EvalSpec),
    ],
)
def test_dump_writes_what_load_reads_back(name, cls, tmp_path):
    recipe = load(RECIPES / name, cls)
    path = tmp_path / "recipe.yaml"
    path.write_text(dump(recipe))
    assert load(path, cls) == recipe


def test_a_full_model_config_is_a_typed_mla_config(tmp_path):
    from infinitecontext.model.config import MLAConfig
    from infinitecontext.trainer.sft import model_config

    config = MLAConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2).with_yarn(2.0, 1024)
    recipe = SFTRecipe(output_dir="x", model=ModelSpec(config=config))
    path = tmp_path / "recipe.yaml"
    path.write_text(dump(recipe))
    loaded = load(path, SFTRecipe)
    assert loaded.model.config == config and model_config(loaded) == config


def test_shipped_dpo_and_eval_recipes_load():
    assert load(RECIPES / "small-dpo.yaml", DPORecipe).steps > 0
    assert load(RECIPES / "passkey-eval.yaml", EvalSpec).lengths


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"output_dir": "x", "trian": {}}, "unknown field(s) ['trian']"),
        ({"output_dir": "x", "train": {"steps": "many"}}, "train.steps: expected int"),
        ({"output_dir": "x", "train": {"steps": True}}, "train.steps: expected int"),
        ({"output_dir": "x", "parallel": {"mixed_precision": "fp8"}}, "expected one of"),
        ({"output_dir": "x", "data": {"tasks": ["sudoku"]}}, "data.tasks[0]"),
        ({"output_dir": "x", "train": {"curriculum": [{"seq_len": 64}]}}, "until_step"),
        (
            {"output_dir": "x", "train": {"curriculum": [
                {"seq_len": 64, "until_step": 5}, {"seq_len": 128, "until_step": 5}]}},
            "until_step must grow",
        ),
        ({"train": {}}, "output_dir"),
        ({"output_dir": "x", "optim": {"betas": [0.9]}}, "optim.betas: expected 2 items"),
    ],
)  # fmt: skip
def test_bad_recipes_name_the_field(data, message):
    with pytest.raises(RecipeError) as err:
        from_dict(SFTRecipe, data)
    assert message in str(err.value)


def test_ints_are_accepted_for_floats_and_lists_become_tuples():
    recipe = from_dict(SFTRecipe, {"output_dir": "x", "optim": {"lr": 1, "betas": [0.9, 0.99]}})
    assert recipe.optim.lr == 1.0 and isinstance(recipe.optim.lr, float)
    assert recipe.optim.betas == (0.9, 0.99)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    recipe = from_dict(
        SFTRecipe,
        {"output_dir": "x", "train": {"steps": 100},
         "optim": {"warmup_steps": 10, "min_lr_ratio": 0.1}},
    )  # fmt: skip
    factors = [lr_factor(recipe, s) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
