"""Generated phrasings: the training family varies, the held-out family stays unseen."""

import json
import subprocess
import sys

import pytest

from infinitecontext.trainer import data, heldout, phrasing
from infinitecontext.trainer.batches import step_sample, training_family
from infinitecontext.trainer.evaluate import eval_family
from infinitecontext.trainer.recipe import TASKS, DataSpec, EvalSpec


@pytest.fixture(scope="module")
def tokenizer():
    extra = phrasing.tokenizer_text(None, seed=0, samples=500)
    return data.train_tokenizer(1024, seed=0, sentences=3000, extra=extra)


@pytest.fixture(scope="module")
def count(tokenizer):
    return data.token_counter(tokenizer)


@pytest.fixture(scope="module")
def natural(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "train.jsonl"
    texts = [
        "The module reads a file. It returns a list of lines. Each line keeps its ending.",
        "Use the option to print more. The default is quiet. Errors go to standard error.",
    ]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def training_samples(count, natural, n):
    spec = DataSpec(tasks=TASKS, templates="varied", haystack=str(natural), seed=5)
    family = training_family(spec)
    return [step_sample(spec, count, 400, step, 0, family) for step in range(n)]


def test_no_heldout_shape_or_key_word_reaches_the_training_stream(count, natural):
    heldout_shapes = heldout.HELDOUT.templates()
    assert not heldout_shapes & phrasing.TRAINING.templates()
    for sample in training_samples(count, natural, 1500):
        assert sample.templates and not set(sample.templates) & heldout_shapes
        words = {w.strip(".,:;?()=").lower() for w in " ".join(sample.needles).split()}
        words |= {w.strip(".,:;?()=").lower() for w in sample.question.split()}
        assert not words & heldout.KEY_WORDS, (sample.needles, sample.question)


def test_training_family_varies_tasks_shapes_keys_and_haystacks(count, natural):
    samples = training_samples(count, natural, 300)
    assert {s.task for s in samples} == set(TASKS)
    assert len({t for s in samples for t in s.templates}) > 25
    kinds = {("digits" if v.isdigit() else "uuid" if "-" in v and v[0] in "0123456789abcdef"
              else "words") for s in samples for v in s.values}  # fmt: skip
    assert kinds >= {"digits", "words"}
    assert any("standard error" in s.prompt for s in samples)  # natural text
    assert any("Shipment" in s.prompt for s in samples)  # record-like lines


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("templates", ["varied", "heldout"])
def test_generated_samples_fit_and_their_ids_add_up(task, templates, count, tokenizer):
    spec = EvalSpec(task=task, templates=templates)
    family = eval_family(spec)
    for index in range(5):
        sample = data.make_sample(data.TaskSpec(task, 700), count, 1, index, family=family)
        assert 700 - 60 <= sample.prompt_tokens <= 700
        assert list(sample.prompt_ids) == tokenizer.encode(sample.prompt).ids
        for value in sample.values:
            assert value in sample.prompt
        assert data.score(sample.answer, sample) == 1.0


def test_word_and_uuid_keys_are_scored_by_their_first_word():
    sample = data.Sample("p", (1,), " maple-ocean", ("maple-ocean",), (), "passkey", 0.5)
    assert data.score(" maple-ocean.\nmore", sample) == 1.0
    assert data.score(" the maple-ocean", sample) == 0.0


def test_training_code_never_imports_the_heldout_module():
    code = (
        "import sys, infinitecontext.trainer.sft, infinitecontext.trainer.batches, "
        "infinitecontext.trainer.phrasing; "
        "print('infinitecontext.trainer.heldout' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
