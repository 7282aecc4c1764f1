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


# ---------------------------------------------------------------- the judge after the grid


class _FakeOpenAI:
    """A stand-in OpenAI-compatible server: token-id prompts (the grid) get the pass
    key of the prompt back, text prompts (the judge) a Prometheus verdict."""

    def __init__(self, verdict: str = "Exact number. [RESULT] 4") -> None:
        import http.server
        import threading

        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"data": [{"id": "fake-judge"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompts = body["prompt"]
                if isinstance(prompts, str):
                    fake.judged.append(body)
                    self._send({"choices": [{"index": 0, "text": fake.verdict}]})
                    return
                choices = [{"index": i, "text": " 12345"} for i in range(len(prompts))]
                self._send({"choices": choices})

        self.verdict, self.judged = verdict, []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self) -> None:
        self.server.shutdown()


def test_spread_and_metrics():
    from infinitecontext.trainer.judge import judge_metrics, spread

    assert spread(3, 5) == [0, 1, 2] and spread(10, 4) == [0, 2, 5, 7]
    summary = {"items": 4, "parsed": 0, "request_errors": 4, "mean_score": None, "score": None}
    assert judge_metrics(summary) == {
        "judge_items": 4.0,
        "judge_parsed": 0.0,
        "judge_request_errors": 4.0,
    }  # no score when nothing parsed: the operator reports why


def test_evaluation_with_a_judge_grades_the_grids_answers(tmp_path, monkeypatch):
    """`icx eval passkey` with `judge:` in its recipe (what the operator's Evaluation
    job runs): the grid, then the judge on a spread of the grid's own questions, the
    answers and the true pass keys; judge.json and `judge_score` in 0–1."""
    from infinitecontext.model.tokenizer import save_tokenizer
    from infinitecontext.trainer.data import train_tokenizer
    from infinitecontext.trainer.evaluate import run_eval
    from infinitecontext.trainer.recipe import EvalSpec, JudgeSpec

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    save_tokenizer(train_tokenizer(1024, sentences=500), tmp_path / "tok", 4096)
    fake = _FakeOpenAI()
    logged = {}
    monkeypatch.setattr(
        "infinitecontext.trainer.evaluate.log_to_mlflow",
        lambda result, spec, run_id, files, extra=None: logged.update(extra or {}),
    )
    try:
        judge_spec = JudgeSpec(url=fake.url, rubric="Score 5: right.\nScore 1: wrong.", max_items=3)
        spec = EvalSpec(lengths=(64, 128), depths=(0.0, 1.0), trials=2, judge=judge_spec)
        run_eval(spec, tmp_path / "out", endpoint=fake.url, served_model="m",
                 tokenizer_dir=tmp_path / "tok")  # fmt: skip
    finally:
        fake.close()
    report = json.loads((tmp_path / "out" / "judge.json").read_text())
    summary = report["summary"]
    assert summary["items"] == 3 and summary["parsed"] == 3 and summary["error"] is None
    assert summary["model"] == "fake-judge" and summary["score"] == 0.75
    assert logged["judge_score"] == 0.75 and logged["judge_mean_score"] == 4.0
    assert len(fake.judged) == 3 and fake.judged[0]["model"] == "fake-judge"
    prompt = fake.judged[0]["prompt"]
    assert "Score 5: right." in prompt and "What is the pass key?" in prompt
    item = report["items"][0]
    assert item["response"] == " 12345" and item["reference_answer"].isdigit()


def test_an_unreachable_judge_is_reported_not_raised(tmp_path):
    from infinitecontext.trainer.judge import grade_answers, judge_metrics
    from infinitecontext.trainer.recipe import JudgeSpec

    class Sample:
        prompt = "Filler. What is the pass key? The pass key is"
        answer = " 12345"

    graded = grade_answers(JudgeSpec(url="http://127.0.0.1:9/v1"), [Sample()] * 2, ["1", "2"])
    summary = graded["summary"]
    assert summary["request_errors"] == 2 and summary["score"] is None
    assert "GET http://127.0.0.1:9/v1/models failed" in summary["error"]
    assert "judge_score" not in judge_metrics(summary)
