"""The synthetic long-context tasks: deterministic, sized in tokens, needles where asked."""

import pytest

from infinitecontext.trainer import data
from infinitecontext.trainer.batches import answer_budget, encode_batch, plan_step, seq_len_at
from infinitecontext.trainer.recipe import CurriculumStage, DataSpec, TrainSpec


@pytest.fixture(scope="module")
def tokenizer():
    return data.train_tokenizer(1024, seed=0, sentences=5000)


@pytest.fixture(scope="module")
def count(tokenizer):
    return data.token_counter(tokenizer)


@pytest.mark.parametrize("task", data.TASKS)
def test_same_seed_and_index_give_the_same_sample(task, count):
    spec = data.TaskSpec(task=task, length=600)
    assert data.make_sample(spec, count, 3, 7) == data.make_sample(spec, count, 3, 7)
    assert data.make_sample(spec, count, 3, 7) != data.make_sample(spec, count, 3, 8)


@pytest.mark.parametrize("task", data.TASKS)
@pytest.mark.parametrize("length", [200, 1000, 8192])
def test_prompt_length_hits_the_target_in_tokens(task, length, count, tokenizer):
    sample = data.make_sample(data.TaskSpec(task=task, length=length), count, 0, 1)
    assert length - 40 <= sample.prompt_tokens <= length
    # Ids add up sentence by sentence, and equal encoding the whole prompt at once.
    assert list(sample.prompt_ids) == tokenizer.encode(sample.prompt).ids


@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_passkey_sits_at_the_requested_depth(depth, count):
    sample = data.make_sample(data.TaskSpec(length=2000, depth=depth), count, 0, 2)
    key = sample.values[0]
    body_start = len(data.INTRO)
    body_end = sample.prompt.rindex("What is the pass key?")
    where = (sample.prompt.index(f"The pass key is {key}") - body_start) / (body_end - body_start)
    assert abs(where - depth) < 0.1
    assert sample.answer == f" {key}"


def test_multikey_and_multivalue_hide_every_value(count):
    multikey = data.make_sample(data.TaskSpec("multikey", 1500, num_needles=4), count, 0, 3)
    assert multikey.prompt.count("special magic numbers for") == 4
    assert multikey.values[0] in multikey.prompt
    assert len(multikey.distractors) >= 3  # the other keys' values at least
    multivalue = data.make_sample(data.TaskSpec("multivalue", 1500, num_needles=3), count, 0, 4)
    assert all(v in multivalue.prompt for v in multivalue.values) and len(multivalue.values) == 3


def test_filler_is_varied_not_one_repeated_sentence(count):
    sample = data.make_sample(data.TaskSpec(length=4000), count, 0, 5)
    sentences = [s for s in sample.prompt.split(". ") if s]
    assert len(set(sentences)) > 0.3 * len(sentences)


def test_scoring_is_exact_match_of_the_first_number():
    sample = data.Sample("p", (1,), " 12345", ("12345",), ("54321",), "passkey", 0.5)
    assert data.score(" 12345. Remember it.", sample) == 1.0
    assert data.score(" 54321 12345", sample) == 0.0
    assert data.score(" 123456", sample) == 0.0
    assert data.score("", sample) == 0.0
    multi = data.Sample("p", (1,), " 1, 2", ("11111", "22222"), (), "multivalue", 0.5)
    assert data.score(" 11111, 33333", multi) == 0.5


def test_tokenizer_splits_digits_and_keeps_special_tokens(tokenizer):
    assert tokenizer.encode(" 90210").tokens[-5:] == ["9", "0", "2", "1", "0"]
    assert [tokenizer.token_to_id(t) for t in ("<bos>", "<eos>", "<pad>")] == [0, 1, 2]


def test_curriculum_keeps_tokens_per_step_and_grows_the_length():
    train = TrainSpec(
        steps=10, tokens_per_step=4096, micro_batch_tokens=1024, seq_len=512,
        curriculum=(CurriculumStage(128, 3), CurriculumStage(256, 6)),
    )  # fmt: skip
    assert [seq_len_at(train, s) for s in (0, 2, 3, 5, 6, 9)] == [128, 128, 256, 256, 512, 512]
    for step in (0, 4, 8):
        plan = plan_step(train, step, world=2)
        assert plan.global_samples * 2 * plan.seq_len == 4096
    plan = plan_step(train, 0, world=2)
    seen = [p for m in range(plan.accumulation) for r in range(2) for p in plan.positions(m, r, 2)]
    assert sorted(seen) == list(range(plan.global_samples * 2))  # every sample exactly once


def test_batch_weights_put_the_answer_first(count):
    spec = DataSpec(answer_loss_weight=1.0, lm_loss_weight=0.1)
    sample = data.make_sample(data.TaskSpec(length=100), count, 0, 0)
    answer = count(sample.answer)
    batch = encode_batch([sample], [answer], 128, spec, pad=2)
    n = sample.prompt_tokens + len(answer) + 1  # predicted tokens: prompt[1:], answer, <eos>
    assert batch["weights"][0, :n].tolist().count(1.0) == len(answer) + 1
    assert batch["targets"][0, n - 1] == 1  # <eos>
    assert float(batch["weights"][0, n:].sum()) == 0.0
    assert answer_budget(spec) >= len(answer) + 1
