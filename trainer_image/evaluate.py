"""Passkey / NIAH accuracy over a grid of context lengths × needle depths.

The model under test is a HF model directory (run here with our MLA model and its
latent cache, YaRN factor selectable at load time) or an OpenAI-compatible endpoint
(`/v1/completions`, greedy). Each cell holds `trials` samples from an evaluation
stream apart from the training one; a sample scores 1 for an exact match of the
pass key (RULER's string_match_all for multivalue). Results: a JSON file, a
heatmap PNG (length × depth) and MLflow metrics `<task>_acc_<length>`. With
`spec.judge`, an LLM judge then grades a spread of the answers (judge.py:
`judge.json`, metrics `judge_*`, `judge_score` in 0–1).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from infinitecontext.trainer.data import (
    FIXED,
    Family,
    Sample,
    TaskSpec,
    answer_room,
    make_sample,
    score,
    token_counter,
)
from infinitecontext.trainer.recipe import EvalSpec, MlflowSpec
from infinitecontext.trainer.tracking import Tracker

log = logging.getLogger(__name__)

# prompts (as text and as token ids) → completions (text)
Generate = Callable[[Sequence[Sample], int], list[str]]


@dataclass(frozen=True)
class GridResult:
    task: str
    target: str
    yarn_factor: float
    lengths: list[int]
    depths: list[float]
    accuracy: list[list[float]]
    """accuracy[i][j]: mean score at lengths[i], depths[j]."""
    trials: int
    errors: dict[int, str] = field(default_factory=dict)
    """Lengths that could not be evaluated (out of memory, server error …), with why."""
    templates: str = "fixed"
    """The phrasing evaluated: fixed, varied (training family) or heldout."""

    @property
    def by_length(self) -> dict[int, float]:
        """Mean accuracy per evaluated length (lengths in `errors` are left out)."""
        rows = zip(self.lengths, self.accuracy, strict=True)
        return {n: sum(row) / len(row) for n, row in rows if n not in self.errors}

    @property
    def mean(self) -> float:
        values = list(self.by_length.values())
        return sum(values) / len(values) if values else float("nan")

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"by_length": self.by_length, "mean": self.mean}


def grid_samples(spec: EvalSpec, tokenizer: Tokenizer) -> dict[tuple[int, int], list[Sample]]:
    """The samples of every (length index, depth index) cell, a pure function of spec."""
    count = token_counter(tokenizer)
    family = eval_family(spec)
    room = answer_room((spec.task,), spec.num_needles, spec.digits, spec.templates == "fixed")
    cells = {}
    for i, length in enumerate(spec.lengths):
        for j, depth in enumerate(spec.depths):
            task = TaskSpec(spec.task, length - room, depth, spec.digits, spec.num_needles)
            cells[i, j] = [
                make_sample(task, count, spec.seed, i, j, t, family=family)
                for t in range(spec.trials)
            ]
    return cells


def eval_family(spec: EvalSpec) -> Family:
    """The phrasing under test: the fixed templates, the training family or held-out."""
    haystack = Path(spec.haystack) if spec.haystack else None
    if spec.templates == "heldout":
        from infinitecontext.trainer.heldout import heldout_family

        return heldout_family(haystack)
    if spec.templates == "varied":
        from infinitecontext.trainer.phrasing import training_family

        return training_family(haystack)
    return FIXED


def evaluate_grid(
    spec: EvalSpec, tokenizer: Tokenizer, generate: Generate, target: str
) -> GridResult:
    cells = grid_samples(spec, tokenizer)
    answer_tokens = max(len(tokenizer.encode(s.answer).ids) for c in cells.values() for s in c)
    accuracy = [[0.0] * len(spec.depths) for _ in spec.lengths]
    errors: dict[int, str] = {}
    for i, length in enumerate(spec.lengths):
        samples = [s for j in range(len(spec.depths)) for s in cells[i, j]]
        batch = max(1, spec.batch_tokens // length)
        outputs: list[str] = []
        try:
            for start in range(0, len(samples), batch):
                outputs += generate(samples[start : start + batch], answer_tokens + 2)
        except Exception as err:  # one length failing (memory, a server error) is reported
            log.error("%s %d tokens: not evaluated: %s", spec.task, length, err)
            errors[length] = f"{type(err).__name__}: {str(err)[:300]}"
            accuracy[i] = [float("nan")] * len(spec.depths)
            continue
        scores = [score(o, s) for o, s in zip(outputs, samples, strict=True)]
        for j in range(len(spec.depths)):
            cell = scores[j * spec.trials : (j + 1) * spec.trials]
            accuracy[i][j] = sum(cell) / len(cell)
        log.info("%s %d tokens: %.3f", spec.task, length, sum(scores) / len(scores))
    return GridResult(
        spec.task, target, spec.yarn_factor, list(spec.lengths), list(spec.depths), accuracy,
        spec.trials, errors, spec.templates,
    )  # fmt: skip


def perplexity(
    model_dir: Path, text_jsonl: Path, seq_len: int = 1024, max_records: int = 256
) -> dict[str, float]:
    """Next-token perplexity of a model directory on `{"text": …}` records (corpus.py's
    heldout.jsonl): each record's first seq_len + 1 tokens, every token counted once."""
    import torch

    from infinitecontext.model import hf

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = hf.load(model_dir, device=device, dtype=torch.float32).eval()
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    bos = model.config.bos_token_id
    total, tokens = 0.0, 0
    with text_jsonl.open() as f:
        records = [json.loads(line)["text"] for line, _ in zip(f, range(max_records), strict=False)]
    for text in records:
        ids = [bos, *tokenizer.encode(text).ids][: seq_len + 1]
        if len(ids) < 2:
            continue
        row = torch.tensor([ids], device=device)
        with torch.no_grad():
            loss, _ = model(row[:, :-1], row[:, 1:])
        total += float(loss) * (len(ids) - 1)
        tokens += len(ids) - 1
    mean = total / max(1, tokens)
    return {"perplexity": math.exp(mean), "nll": mean, "tokens": float(tokens)}


def model_dir_generator(model_dir: Path, yarn_factor: float, device: str | None = None) -> Generate:
    """Greedy completions from our MLA model loaded from a HF directory."""
    import torch

    from infinitecontext.model import hf
    from infinitecontext.model.generate import Sampling, generate

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with with_yarn(model_dir, yarn_factor) as directory:
        model = hf.load(directory, device=device, dtype=dtype).eval()
    # RoPE frequencies stay fp32: in bf16 the angle at position 100k would be off by
    # hundreds of radians (hf.load casts every floating tensor to `dtype`).
    from infinitecontext.model.rope import inv_frequencies

    model.inv_freq = inv_frequencies(model.config)[0].to(device)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    eos = model.config.eos_token_id

    def run(samples: Sequence[Sample], max_new_tokens: int) -> list[str]:
        prompts = [[model.config.bos_token_id, *s.prompt_ids] for s in samples]
        outputs = generate(model, prompts, Sampling(max_new_tokens, stop_tokens=(eos,)))
        return [tokenizer.decode(ids) for ids in outputs]

    return run


class with_yarn:
    """A model directory with YaRN factor `factor` over the model's trained length.

    factor 1 gives the directory itself. Otherwise a temporary directory with links to
    the weights and a config.json whose rope_parameters carry the factor; a model that
    was already extended keeps its original length and gets the new factor.
    """

    def __init__(self, model_dir: Path, factor: float) -> None:
        self.model_dir, self.factor = model_dir, factor
        self._tmp: Path | None = None

    def __enter__(self) -> Path:
        if self.factor == 1.0:
            return self.model_dir
        self._tmp = Path(tempfile.mkdtemp(prefix="icx-yarn-"))
        for item in self.model_dir.iterdir():
            if item.name != "config.json":
                (self._tmp / item.name).symlink_to(item.resolve())
        config = json.loads((self.model_dir / "config.json").read_text())
        (self._tmp / "config.json").write_text(json.dumps(yarn_config(config, self.factor)))
        return self._tmp

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def yarn_config(config: dict[str, Any], factor: float) -> dict[str, Any]:
    """config.json with YaRN `factor` over the trained (original) context length."""
    rope = dict(config.get("rope_parameters") or {})
    original = rope.get("original_max_position_embeddings") or config["max_position_embeddings"]
    if rope.get("rope_type") != "yarn":
        rope = {"rope_theta": rope.get("rope_theta", 10000.0)}
    rope |= {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": original}
    rope.setdefault("mscale", 1.0)
    rope.setdefault("mscale_all_dim", 1.0)
    return config | {"rope_parameters": rope, "max_position_embeddings": int(original * factor)}


def endpoint_generator(base_url: str, model: str, bos: int = 0, timeout: float = 600) -> Generate:
    """Greedy completions from an OpenAI-compatible server (`/v1/completions`).

    Prompts go as token ids (the API accepts lists of ids), so the server sees exactly
    the tokens a model directory sees, <bos> included, whatever its tokenizer config.
    """
    import httpx

    url = base_url.rstrip("/") + "/completions"

    def run(samples: Sequence[Sample], max_new_tokens: int) -> list[str]:
        body = {
            "model": model,
            "prompt": [[bos, *s.prompt_ids] for s in samples],
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
        }
        response = httpx.post(url, json=body, timeout=timeout)
        response.raise_for_status()
        choices = sorted(response.json()["choices"], key=lambda c: c["index"])
        return [c["text"] for c in choices]

    return run


def plot_heatmap(result: GridResult, path: Path) -> Path:
    """Accuracy (%) per depth (rows) × length (columns), annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = [[100 * result.accuracy[i][j] for i in range(len(result.lengths))]
            for j in range(len(result.depths))]  # fmt: skip
    fig, ax = plt.subplots(figsize=(1.2 * len(result.lengths) + 2, 0.6 * len(result.depths) + 2))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(result.lengths)), [_k(n) for n in result.lengths])
    ax.set_yticks(range(len(result.depths)), [f"{d:.0%}" for d in result.depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    yarn = f", YaRN ×{result.yarn_factor:g}" if result.yarn_factor > 1 else ""
    ax.set_title(f"{result.task} accuracy (%), {result.trials} trials/cell{yarn}")
    for j, row in enumerate(grid):
        for i, value in enumerate(row):
            ax.text(i, j, f"{value:.0f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _k(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def run_eval(
    spec: EvalSpec,
    out_dir: Path,
    model_dir: Path | None = None,
    endpoint: str | None = None,
    served_model: str | None = None,
    tokenizer_dir: Path | None = None,
    mlflow: MlflowSpec | None = None,
    mlflow_run_id: str | None = None,
) -> GridResult:
    """Evaluate a model directory or an endpoint; write JSON + PNG; log to MLflow."""
    if (model_dir is None) == (endpoint is None):
        raise ValueError("give exactly one of a model directory and an endpoint")
    tokenizer_dir = tokenizer_dir or model_dir
    if tokenizer_dir is None:
        raise ValueError("an endpoint needs --tokenizer (the served model's directory)")
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    if model_dir is not None:
        generate, target = model_dir_generator(model_dir, spec.yarn_factor), str(model_dir)
    else:
        assert endpoint is not None
        if spec.yarn_factor != 1.0:
            log.warning("yarn_factor applies to model directories; set it where it is served")
        name = served_model or str(tokenizer_dir)
        generate, target = endpoint_generator(endpoint, name), f"{endpoint} ({name})"
    answers: list[tuple[Sample, str]] = []
    if spec.judge is not None:
        generate = recording(generate, answers)
    result = evaluate_grid(spec, tokenizer, generate, target)
    stem = f"{spec.task}_yarn{spec.yarn_factor:g}"
    if spec.templates != "fixed":
        stem = f"{spec.task}_{spec.templates}_yarn{spec.yarn_factor:g}"
    json_path, png_path = out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    plot_heatmap(result, png_path)
    files, extra = [json_path, png_path], {}
    if spec.judge is not None:
        from infinitecontext.trainer.judge import grade_answers, judge_metrics

        graded = grade_answers(spec.judge, [a[0] for a in answers], [a[1] for a in answers])
        judge_path = out_dir / "judge.json"
        judge_path.write_text(json.dumps(graded, indent=2) + "\n")
        files.append(judge_path)
        extra = judge_metrics(graded["summary"])
        log.info("judge: %s", {k: v for k, v in graded["summary"].items() if k != "histogram"})
    log_to_mlflow(result, mlflow or MlflowSpec(), mlflow_run_id, files, extra)
    return result


def recording(generate: Generate, answers: list[tuple[Sample, str]]) -> Generate:
    """`generate` that also keeps every (sample, completion) it returned."""

    def run(samples: Sequence[Sample], max_new_tokens: int) -> list[str]:
        outputs = generate(samples, max_new_tokens)
        answers.extend(zip(samples, outputs, strict=True))
        return outputs

    return run


def log_to_mlflow(
    result: GridResult,
    spec: MlflowSpec,
    run_id: str | None,
    files: list[Path],
    extra: dict[str, float] | None = None,
) -> None:
    tracker = Tracker.start(spec, f"eval-{result.task}", resume_run_id=run_id)
    suffix = f"_yarn{result.yarn_factor:g}" if result.yarn_factor != 1.0 else ""
    metrics = {f"{result.task}_acc_{n}{suffix}": a for n, a in result.by_length.items()}
    metrics[f"{result.task}_acc_mean{suffix}"] = result.mean
    metrics |= extra or {}
    tracker.log_metrics(metrics, step=0)
    for file in files:
        tracker.log_artifact(file, "eval")
    tracker.end()
