"""DPO with TRL on the exported model, from preference pairs built from the tasks.

The exported directory loads as transformers' `DeepseekV3ForCausalLM`, so TRL's
DPOTrainer trains it unchanged. Pairs: the prompt is a task's haystack and question,
*chosen* the right needle, *rejected* a hallucination: another number of the same
shape from the haystack, or the model's own wrong greedy answer. The reference
model's log-probs are computed once before training (`precompute_ref_log_probs`),
so no second copy of the model stays in memory. Reward margins and accuracies go to
MLflow every logging step; the aligned model is exported in our HF layout (bf16,
tokenizer included) and logged as artifact `model`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from infinitecontext.server.manifest import write_manifest
from infinitecontext.trainer.data import (
    Sample,
    TaskSpec,
    make_sample,
    sample_rng,
    score,
    token_counter,
)
from infinitecontext.trainer.evaluate import GridResult, evaluate_grid, model_dir_generator
from infinitecontext.trainer.recipe import DPORecipe, flatten, to_dict
from infinitecontext.trainer.tracking import Tracker, system_info

log = logging.getLogger(__name__)
BOS_TEXT = "<bos>"  # model/tokenizer.py's special token 0; TRL's tokenization adds none


def pair_samples(recipe: DPORecipe, tokenizer: Tokenizer) -> list[Sample]:
    count = token_counter(tokenizer)
    tasks = recipe.data.tasks
    samples = []
    for i in range(recipe.pairs):
        task = tasks[i % len(tasks)]
        spec = TaskSpec(task, recipe.length, None, recipe.data.digits, recipe.data.num_needles)
        samples.append(make_sample(spec, count, recipe.data.seed + 7919, i))
    return samples


def haystack_rejection(sample: Sample, index: int, seed: int) -> str:
    """A wrong answer of the right shape: a number from the haystack, else a near miss."""
    rng = sample_rng(seed, index, -2)
    wrong = [d for d in sample.distractors if d not in sample.values]
    if sample.task == "multivalue" and sample.values:
        # Swap one of the values for a distractor: all but one right is still wrong.
        values = list(sample.values)
        values[rng.randrange(len(values))] = rng.choice(wrong) if wrong else "0" * 5
        return " " + ", ".join(values)
    if wrong:
        return " " + rng.choice(wrong)
    digits = list(sample.values[0])
    digits[-1] = str((int(digits[-1]) + 1) % 10)
    return " " + "".join(digits)


def preference_pairs(
    samples: list[Sample], rejected: list[str] | None, seed: int
) -> list[dict[str, str]]:
    """TRL's standard format: {"prompt", "chosen", "rejected"}; model answers where wrong."""
    pairs = []
    for i, sample in enumerate(samples):
        own = rejected[i] if rejected is not None else None
        use_own = own is not None and own.strip() and score(own, sample) < 1.0
        bad = " " + own.strip().split("\n")[0] if use_own and own else None
        pairs.append(
            {
                "prompt": BOS_TEXT + sample.prompt,
                "chosen": sample.answer,
                "rejected": bad or haystack_rejection(sample, i, seed),
            }
        )
    return pairs


def model_answers(model_dir: Path, samples: list[Sample]) -> list[str]:
    generate = model_dir_generator(model_dir, 1.0)
    longest = max(len(s.values) for s in samples) * 8 + 4
    out: list[str] = []
    for start in range(0, len(samples), 8):
        out += generate(samples[start : start + 8], longest)
    return out


class _MlflowLogger:
    """A transformers TrainerCallback (built lazily) that sends TRL's logs to our run."""

    @staticmethod
    def make(tracker: Tracker) -> Any:
        from transformers import TrainerCallback

        class Callback(TrainerCallback):
            def on_log(
                self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any
            ) -> None:
                numbers = {
                    k.replace("/", "_"): float(v)
                    for k, v in (logs or {}).items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
                tracker.log_metrics(numbers, step=state.global_step)

        return Callback()


def run_dpo(recipe: DPORecipe) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    model_dir, out = Path(recipe.model_dir), Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    samples = pair_samples(recipe, tokenizer)
    own = model_answers(model_dir, samples) if recipe.rejected == "model" else None
    pairs = preference_pairs(samples, own, recipe.seed)
    (out / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[:50]))

    tracker = Tracker.start(recipe.mlflow, recipe.name)
    tracker.log_params(flatten(to_dict(recipe)))
    tracker.log_dict(system_info(1, "none"), "system_info.json")
    before = _evaluate(recipe, model_dir, "before", tracker)

    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    log.info("DPO on %s (%s)", model_dir, type(model).__name__)
    config = DPOConfig(
        output_dir=str(out / "trainer"),
        beta=recipe.beta,
        loss_type=[recipe.loss_type],
        learning_rate=recipe.lr,
        max_steps=recipe.steps,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum,
        warmup_steps=recipe.warmup_steps,
        max_length=recipe.length + 64,
        precompute_ref_log_probs=True,
        precompute_ref_batch_size=recipe.batch_size,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=recipe.bf16 and cuda,
        use_cpu=not cuda,
        seed=recipe.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(pairs),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[_MlflowLogger.make(tracker)],
    )
    trainer.train()
    history = [h for h in trainer.state.log_history if "loss" in h]
    export_dir = export_aligned(trainer.model, model_dir, out / "model")
    after = _evaluate(recipe, export_dir, "after", tracker)
    write_manifest(export_dir)  # its sha256 becomes a tag of the registered version
    tracker.log_artifacts(export_dir, "model")
    result = {
        "kind": "dpo",
        "run_id": tracker.run_id,
        "tracking_uri": tracker.tracking_uri,
        "artifact_uri": tracker.artifact_uri("model"),
        "export_dir": str(export_dir.resolve()),
        "history": history,
        "before": before.to_json() if before else None,
        "after": after.to_json() if after else None,
    }
    tracker.end()
    print(f"run id: {tracker.run_id}; model: {export_dir}", flush=True)
    return result


def _evaluate(recipe: DPORecipe, model_dir: Path, when: str, tracker: Tracker) -> GridResult | None:
    if recipe.evaluation is None:
        return None
    spec = recipe.evaluation
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    result = evaluate_grid(spec, tokenizer, model_dir_generator(model_dir, spec.yarn_factor), when)
    metrics = {f"{when}_{spec.task}_acc_{n}": a for n, a in result.by_length.items()}
    tracker.log_metrics(metrics | {f"{when}_{spec.task}_acc_mean": result.mean}, step=0)
    return result


def export_aligned(model: Any, source_dir: Path, directory: Path) -> Path:
    """The trained DeepseekV3ForCausalLM's weights, written by our exporter (bf16)."""
    from infinitecontext.model import hf

    ours = hf.load(source_dir)
    trained = {k: v for k, v in model.state_dict().items() if k in ours.state_dict()}
    ours.load_state_dict(trained, strict=True)
    return hf.export(ours, directory, tokenizer_dir=source_dir)


__all__ = ["replace", "run_dpo"]
