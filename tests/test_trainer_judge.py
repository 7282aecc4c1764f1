"""Prometheus-style judge: the prompt, the parser, and a real served model as judge."""

import json

import pytest

from infinitecontext.trainer.judge import (
    Item,
    JudgeEndpoint,
    absolute_prompt,
    judge,
    parse_verdict,
)
from infinitecontext.trainer.launch import run_judge_file

ITEMS = [
    Item("What is the pass key?", " 12345", "12345"),
    Item("What is the pass key?", " 99999", "12345"),
    Item("What is the special magic number for amber?", "I do not know.", "7654321"),
]


def test_prompt_has_prometheus_sections_in_order():
    prompt = absolute_prompt(ITEMS[0])
    sections = ["###Task Description:", "###The instruction to evaluate:",
                "###Response to evaluate:", "###Reference Answer (Score 5):",
                "###Score Rubrics:", "###Feedback:"]  # fmt: skip
    positions = [prompt.index(s) for s in sections]
    assert positions == sorted(positions)
    assert "[RESULT] (an integer number between 1 and 5)" in prompt
    assert "Score 5:" in prompt and "12345" in prompt


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("The response is exact. [RESULT] 5", 5),
        ("Feedback: wrong number [RESULT] (2)", 2),
        ("Good answer.\n[RESULT] 4\n", 4),
        ("Score: 3 because it hedges", 3),
        ("I would give it 1/5.", 1),
        ("[RESULT] 7", None),
        ("no verdict at all", None),
        ("", None),
    ],
)
def test_parser_accepts_prometheus_formats_and_rejects_the_rest(text, score):
    verdict = parse_verdict(text)
    assert verdict.score == score
    if score is not None and "[RESULT]" in text:
        assert "[RESULT]" not in verdict.feedback


def test_unreachable_judge_is_counted_not_raised():
    report = judge(JudgeEndpoint("http://127.0.0.1:9/v1", "none", timeout=2), ITEMS[:2])
    assert report.errors == 2 and report.unparsable == 2 and report.mean_score is None


@pytest.mark.slow
def test_served_tiny_model_as_judge(tiny_vllm, tmp_path):
    """Unguided, a tiny model writes junk: counted as unparsable. Guided by regex
    (vLLM structured outputs), every verdict parses through the same prompt and parser."""
    free = judge(JudgeEndpoint(tiny_vllm.base_url, "tiny", max_tokens=48), ITEMS)
    assert len(free.verdicts) == 3 and free.errors == 0
    assert free.unparsable + len(free.parsed) == 3
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(i.__dict__) + "\n" for i in ITEMS))
    out = tmp_path / "report.json"
    summary = run_judge_file(tiny_vllm.base_url, "tiny", items, out, guided=True)
    assert summary["parsed"] == 3 and summary["unparsable"] == 0
    assert 1 <= summary["mean_score"] <= 5
    report = json.loads(out.read_text())
    assert all(1 <= v["score"] <= 5 for v in report["verdicts"])
