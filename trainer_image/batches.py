"""Training batches: which samples each rank sees at each step, as padded tensors.

The plan for a step depends only on the step, the curriculum and the world size;
sample `position` of step `s` is `make_sample(seed, s, position)`. A resumed run
therefore replays exactly the data an uninterrupted run would have seen, and the
global batch is the same set of samples for any world size.

With `data.uri` (a JSONL dataset, dataset.py) step `s` reads the next
`tokens_per_step // seq_len` records of a stream of shuffled epochs: position `p` gets
stream place `records_before(s) + p % records_per_step(s)`, again a pure function of
the step (positions past the nominal batch, from rounding up to ranks × micro-batches,
repeat records of the same step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch.utils.data import Dataset

from infinitecontext.trainer import dataset
from infinitecontext.trainer.data import (
    FIXED,
    Family,
    Sample,
    TaskSpec,
    answer_room,
    make_sample,
    sample_rng,
    token_counter,
)
from infinitecontext.trainer.recipe import DataSpec, TrainSpec


@dataclass(frozen=True)
class StepPlan:
    seq_len: int
    micro_batch: int
    """Samples per forward pass on each rank."""
    accumulation: int
    """Forward/backward passes per optimizer step."""

    @property
    def global_samples(self) -> int:
        return self.micro_batch * self.accumulation

    def positions(self, micro_step: int, rank: int, world: int) -> range:
        """Indices (within the step's global batch) that `rank` handles in `micro_step`."""
        first = (micro_step * world + rank) * self.micro_batch
        return range(first, first + self.micro_batch)


def seq_len_at(train: TrainSpec, step: int) -> int:
    """The curriculum's sequence length at `step` (the target length after the last stage)."""
    for stage in train.curriculum:
        if step < stage.until_step:
            return stage.seq_len
    return train.seq_len


def plan_step(train: TrainSpec, step: int, world: int) -> StepPlan:
    """Keep tokens per step constant as the sequence grows: fewer, longer samples."""
    seq_len = seq_len_at(train, step)
    micro = max(1, train.micro_batch_tokens // seq_len)
    wanted = max(world, train.tokens_per_step // seq_len)
    return StepPlan(seq_len, micro, math.ceil(wanted / (micro * world)))


def records_per_step(train: TrainSpec, step: int) -> int:
    """Records a step reads from a JSONL dataset: the nominal global batch."""
    return max(1, train.tokens_per_step // seq_len_at(train, step))


def records_before(train: TrainSpec, step: int) -> int:
    """Records the steps before `step` read (sum of records_per_step, stage by stage)."""
    total, start = 0, 0
    for stage in train.curriculum:
        end = min(stage.until_step, step)
        if end > start:
            total += (end - start) * max(1, train.tokens_per_step // stage.seq_len)
        start = max(start, stage.until_step)
    if step > start:
        total += (step - start) * max(1, train.tokens_per_step // train.seq_len)
    return total


def record_index(spec: DataSpec, train: TrainSpec, size: int, step: int, position: int) -> int:
    """Which of `size` records position `position` of step `step` trains on."""
    place = records_before(train, step) + position % records_per_step(train, step)
    return dataset.record_at(spec.seed, size, place)


def answer_budget(spec: DataSpec) -> int:
    """Tokens to leave after the prompt: the answer (values, separators) and <eos>."""
    return answer_room(spec.tasks, spec.num_needles, spec.digits, spec.templates == "fixed")


def training_family(spec: DataSpec) -> Family:
    """The phrasing the recipe trains on (never heldout.py's)."""
    if spec.templates == "fixed":
        return FIXED
    from infinitecontext.trainer.phrasing import training_family

    return training_family(Path(spec.haystack) if spec.haystack else None)


def step_sample(
    spec: DataSpec,
    tokenizer: Any,
    seq_len: int,
    step: int,
    position: int,
    family: Family | None = None,
) -> Sample:
    rng = sample_rng(spec.seed, step, position, -1)
    task = spec.tasks[rng.randrange(len(spec.tasks))]
    low = max(16, int(spec.min_length_fraction * seq_len))
    length = rng.randint(min(low, seq_len), seq_len) - answer_budget(spec)
    task_spec = TaskSpec(task, length, None, spec.digits, spec.num_needles)
    return make_sample(task_spec, tokenizer, spec.seed, step, position, family=family)


def encode_batch(
    samples: list[Sample], answer_ids: list[list[int]], seq_len: int, spec: DataSpec, pad: int
) -> dict[str, torch.Tensor]:
    """input_ids, targets, per-token loss weights and the answer mask (B, seq_len), right-padded.

    Each row is <bos> prompt answer <eos>; targets are the next tokens. The answer and
    <eos> weigh `answer_loss_weight`, the haystack `lm_loss_weight`, padding 0.
    """
    rows = [(list(s.prompt_ids), [*a, EOS]) for s, a in zip(samples, answer_ids, strict=True)]
    return encode_rows(rows, seq_len, spec, pad)


def encode_rows(
    rows: list[tuple[list[int], list[int]]], seq_len: int, spec: DataSpec, pad: int
) -> dict[str, torch.Tensor]:
    """encode_batch for (prompt ids, answer ids) rows: <bos> prompt answer, cut to
    seq_len + 1 tokens (the answer carries its own <eos>, if any)."""
    batch = len(rows)
    inputs = torch.full((batch, seq_len), pad, dtype=torch.long)
    targets = torch.full((batch, seq_len), pad, dtype=torch.long)
    weights = torch.zeros((batch, seq_len), dtype=torch.float32)
    answer_mask = torch.zeros((batch, seq_len), dtype=torch.bool)
    for row, (prompt, answer) in enumerate(rows):
        tokens = [BOS, *prompt, *answer][: seq_len + 1]
        n = len(tokens) - 1
        inputs[row, :n] = torch.tensor(tokens[:-1])
        targets[row, :n] = torch.tensor(tokens[1:])
        weights[row, :n] = spec.lm_loss_weight
        first_answer = len(prompt)  # target index of the answer's first token
        weights[row, first_answer:n] = spec.answer_loss_weight
        answer_mask[row, first_answer:n] = True
    return {"input_ids": inputs, "targets": targets, "weights": weights, "answer": answer_mask}


BOS, EOS, PAD = 0, 1, 2  # model/tokenizer.py's special tokens


class StepBatches(Dataset[list[dict[str, torch.Tensor]]]):
    """Item i: this rank's micro-batches for step `first_step + i` (a DataLoader can
    build them in worker processes while the GPU trains)."""

    def __init__(
        self,
        train: TrainSpec,
        spec: DataSpec,
        tokenizer_json: str,
        rank: int,
        world: int,
        first_step: int,
    ) -> None:
        self.train, self.spec, self.rank, self.world = train, spec, rank, world
        self.tokenizer_json, self.first_step = tokenizer_json, first_step
        self._count: Any = None
        self._tokenizer: Tokenizer | None = None
        self._family: Family | None = None
        # A JSONL dataset is fetched and indexed here, once per rank, before any worker.
        self.records = dataset.JsonlDataset(dataset.resolve(spec.uri)) if spec.uri else None

    def __len__(self) -> int:
        return max(0, self.train.steps - self.first_step)

    def __getitem__(self, index: int) -> list[dict[str, torch.Tensor]]:
        if self._count is None:  # built lazily: once per worker process
            self._tokenizer = Tokenizer.from_str(self.tokenizer_json)
            self._count = token_counter(self._tokenizer)
            self._family = training_family(self.spec)
        step = self.first_step + index
        plan = plan_step(self.train, step, self.world)
        micro_batches = []
        for micro_step in range(plan.accumulation):
            positions = plan.positions(micro_step, self.rank, self.world)
            if self.records is not None:
                micro_batches.append(self._record_batch(plan.seq_len, step, positions))
                continue
            samples = [
                step_sample(self.spec, self._count, plan.seq_len, step, p, self._family)
                for p in positions
            ]
            answers = [self._count(s.answer) for s in samples]
            micro_batches.append(encode_batch(samples, answers, plan.seq_len, self.spec, PAD))
        return micro_batches

    def _record_batch(self, seq_len: int, step: int, positions: range) -> dict[str, torch.Tensor]:
        assert self.records is not None and self._tokenizer is not None
        tokenizer = self._tokenizer

        def encode(text: str) -> list[int]:
            return list(tokenizer.encode(text).ids)

        size = len(self.records)
        rows = []
        for p in positions:
            record = self.records[record_index(self.spec, self.train, size, step, p)]
            rows.append(dataset.record_row(record, encode, EOS, seq_len))
        return encode_rows(rows, seq_len, self.spec, PAD)
