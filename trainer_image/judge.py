"""LLM-as-a-judge in the Prometheus-Eval style: absolute grading, score 1–5 with feedback.

The prompt is Prometheus 2's absolute-grading template (`prometheus_eval/prompts.py`):
a task description, the instruction, the response, an optional reference answer
(score 5) and a rubric, asking for "(feedback) [RESULT] (an integer between 1 and
5)". The parser accepts what Prometheus' parser accepts (`[RESULT] n`, `Score: n`,
`n/5`) and anything else is *unparsable*: counted and reported, never an exception.
Any OpenAI-compatible endpoint can judge (the served model, a stronger judge);
`guided=True` asks a vLLM server to constrain the output to the format by regex,
which makes even a tiny model's verdicts parsable.

`grade_answers` is what an evaluation with a judge runs after the passkey grid
(evaluate.py, the operator's Evaluation `spec.judge`): a spread of the grid's own
questions, the evaluated model's answers and the true needles as reference answers.
The mean verdict (1–5) is also reported normalised to 0–1 as `score` ((mean − 1) / 4),
the scale of an Evaluation's `thresholds.judgeScore`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from infinitecontext.trainer.recipe import JudgeSpec

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You are a fair judge assistant tasked with providing clear, objective feedback "
    "based on specific criteria, ensuring each assessment reflects the absolute "
    "standards set for performance."
)

ABSOLUTE_PROMPT = """###Task Description:
An instruction (might include an Input inside it), a response to evaluate, a reference answer that gets a score of 5, and a score rubric representing a evaluation criteria are given.
1. Write a detailed feedback that assess the quality of the response strictly based on the given score rubric, not evaluating in general.
2. After writing a feedback, write a score that is an integer between 1 and 5. You should refer to the score rubric.
3. The output format should look as follows: "(write a feedback for criteria) [RESULT] (an integer number between 1 and 5)"
4. Please do not generate any other opening, closing, and explanations.

###The instruction to evaluate:
{instruction}

###Response to evaluate:
{response}

###Reference Answer (Score 5):
{reference_answer}

###Score Rubrics:
{rubric}

###Feedback: """  # noqa: E501 - the template's wording is Prometheus', kept verbatim

# A rubric in Prometheus' SCORE_RUBRIC_TEMPLATE shape, for retrieval answers.
RETRIEVAL_RUBRIC = """[Does the response state exactly the information hidden in the context, without inventing any?]
Score 1: The response gives no number or an invented one.
Score 2: The response gives a number from the context that is not the one asked for.
Score 3: The response contains the right number among wrong or extra ones.
Score 4: The response gives the right number with minor extra text.
Score 5: The response gives exactly the right number."""  # noqa: E501


def guided_regex(feedback_chars: int) -> str:
    """What a guided (structured-output) judge must produce: feedback, then the verdict."""
    return r"[A-Za-z0-9 ,.'()-]{1," + str(feedback_chars) + r"} \[RESULT\] [1-5]"


_PATTERNS = (
    re.compile(r"\[RESULT\]\s*\(?\s*([1-5])\s*\)?\s*$", re.IGNORECASE),
    re.compile(r"\[RESULT\]\s*\(?\s*([1-5])\b", re.IGNORECASE),
    re.compile(r"\bScore\s*[:=]\s*([1-5])\b", re.IGNORECASE),
    re.compile(r"\b([1-5])\s*/\s*5\b"),
)


@dataclass(frozen=True)
class Verdict:
    score: int | None
    """1–5, or None when the judge's output could not be parsed."""
    feedback: str
    raw: str


@dataclass(frozen=True)
class Item:
    instruction: str
    response: str
    reference_answer: str = ""
    rubric: str = RETRIEVAL_RUBRIC


@dataclass
class JudgeReport:
    verdicts: list[Verdict] = field(default_factory=list)
    errors: int = 0
    """Requests that failed (HTTP errors, timeouts): counted like unparsable output."""

    @property
    def parsed(self) -> list[int]:
        return [v.score for v in self.verdicts if v.score is not None]

    @property
    def unparsable(self) -> int:
        return sum(v.score is None for v in self.verdicts)

    @property
    def mean_score(self) -> float | None:
        return sum(self.parsed) / len(self.parsed) if self.parsed else None

    @property
    def score(self) -> float | None:
        """The mean verdict on a 0–1 scale: (mean − 1) / 4."""
        mean = self.mean_score
        return None if mean is None else (mean - 1) / 4

    def summary(self) -> dict[str, Any]:
        return {
            "items": len(self.verdicts),
            "parsed": len(self.parsed),
            "unparsable": self.unparsable,
            "request_errors": self.errors,
            "mean_score": self.mean_score,
            "score": self.score,
            "histogram": {s: self.parsed.count(s) for s in range(1, 6)},
        }


def absolute_prompt(item: Item) -> str:
    return ABSOLUTE_PROMPT.format(
        instruction=item.instruction.strip(),
        response=item.response.strip(),
        reference_answer=item.reference_answer.strip() or "(none given)",
        rubric=item.rubric.strip(),
    )


def parse_verdict(text: str) -> Verdict:
    """(score, feedback) from a judge's output; score None if no pattern matches."""
    cleaned = text.strip()
    for pattern in _PATTERNS:
        match = pattern.search(cleaned)
        if match:
            feedback = cleaned[: match.start()].strip() or cleaned
            return Verdict(int(match.group(1)), feedback, text)
    return Verdict(None, cleaned, text)


@dataclass(frozen=True)
class JudgeEndpoint:
    base_url: str
    """e.g. http://127.0.0.1:8000/v1"""
    model: str
    api: str = "completions"
    """completions: the system and user text in one prompt (models without a chat
    template, like ours); chat: /chat/completions with a system message."""
    max_tokens: int = 512
    guided: bool = False
    guided_feedback_chars: int = 200
    """With guided: the feedback's length limit (keep it under max_tokens)."""
    timeout: float = 120.0
    concurrency: int = 4


def judge(endpoint: JudgeEndpoint, items: Sequence[Item]) -> JudgeReport:
    """Grade every item; failures and unparsable outputs are counted, never raised."""
    report = JudgeReport()
    with ThreadPoolExecutor(max_workers=endpoint.concurrency) as pool:
        outputs = list(pool.map(lambda item: _ask(endpoint, item), items))
    for output in outputs:
        if output is None:
            report.errors += 1
            report.verdicts.append(Verdict(None, "", ""))
        else:
            report.verdicts.append(parse_verdict(output))
    if report.unparsable:
        log.warning("judge: %d of %d outputs unparsable", report.unparsable, len(items))
    return report


def _ask(endpoint: JudgeEndpoint, item: Item) -> str | None:
    import httpx

    prompt = absolute_prompt(item)
    body: dict[str, Any] = {"model": endpoint.model, "max_tokens": endpoint.max_tokens}
    body["temperature"] = 0.0
    if endpoint.guided:  # vLLM's structured outputs; other servers ignore unknown fields
        body["structured_outputs"] = {"regex": guided_regex(endpoint.guided_feedback_chars)}
    if endpoint.api == "chat":
        path = "/chat/completions"
        body["messages"] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt},
        ]
    else:
        path = "/completions"
        body["prompt"] = f"{SYSTEM_PROMPT}\n\n{prompt}"
    try:
        response = httpx.post(
            endpoint.base_url.rstrip("/") + path, json=body, timeout=endpoint.timeout
        )
        response.raise_for_status()
        choice = response.json()["choices"][0]
        return str(choice["message"]["content"] if endpoint.api == "chat" else choice["text"])
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
        log.warning("judge request failed: %s", err)
        return None


def passkey_items(
    samples: Sequence[Any], responses: Sequence[str], rubric: str = RETRIEVAL_RUBRIC
) -> list[Item]:
    """Judge items for passkey answers: the haystack's question, the model's answer."""
    items = []
    for sample, response in zip(samples, responses, strict=True):
        question = sample.prompt.rsplit(". ", 1)[-1]
        instruction = f"Answer from the context (not shown here). {question}"
        items.append(Item(instruction, response, sample.answer.strip(), rubric))
    return items


def spread(n: int, k: int) -> list[int]:
    """`k` indices spread evenly over range(n) (all of them when n <= k)."""
    return list(range(n)) if n <= k else [i * n // k for i in range(k)]


def served_model(base_url: str, timeout: float) -> str:
    """The first model an OpenAI-compatible server lists (`GET …/models`)."""
    import httpx

    response = httpx.get(base_url.rstrip("/") + "/models", timeout=timeout)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


def grade_answers(
    spec: JudgeSpec, samples: Sequence[Any], responses: Sequence[str]
) -> dict[str, Any]:
    """Grade up to `spec.max_items` of the grid's answers; never raises for the judge.

    An endpoint that cannot be reached (or lists no model) counts every item as a
    request error, and `summary.error` says why; the caller sees no `score` then.
    """
    import httpx

    chosen = spread(len(samples), spec.max_items)
    items = passkey_items(
        [samples[i] for i in chosen],
        [responses[i] for i in chosen],
        spec.rubric.strip() or RETRIEVAL_RUBRIC,
    )
    model, error = spec.model, None
    if model is None:
        try:
            model = served_model(spec.url, min(spec.timeout, 30.0))
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as err:
            error = f"GET {spec.url.rstrip('/')}/models failed: {type(err).__name__}: {err}"
            log.warning("judge: %s", error)
    if model is None:
        report = JudgeReport([Verdict(None, "", "") for _ in items], errors=len(items))
    else:
        endpoint = JudgeEndpoint(
            spec.url, model, spec.api, spec.max_tokens, spec.guided, timeout=spec.timeout
        )
        report = judge(endpoint, items)
        if report.errors == len(items) and items:
            error = f"all {len(items)} requests to {spec.url} failed"
    summary = report.summary() | {"endpoint": spec.url, "model": model, "error": error}
    graded = [
        asdict(i) | {"verdict": asdict(v)} for i, v in zip(items, report.verdicts, strict=True)
    ]
    return {"summary": summary, "items": graded}


def judge_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics of a judge summary: `judge_items`, `judge_parsed`, …, `judge_score`
    (0–1, only when some verdict parsed) and `judge_mean_score` (1–5)."""
    return {
        f"judge_{k}": float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
