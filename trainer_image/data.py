"""Synthetic long-context tasks: varied filler text with needles at chosen depths.

Three tasks, all answered by numbers so they can be scored by exact match:

- ``passkey`` (Mohtashami & Jaggi, arXiv 2305.16300): one 5-digit pass key hidden in
  filler; "What is the pass key? The pass key is" → " 12345".
- ``multikey`` (RULER ``niah_multikey``, arXiv 2404.06654): several needles "One of the
  special magic numbers for {key} is: {value}." with different keys; one key is asked.
- ``multivalue`` (RULER ``niah_multivalue``): several values for the same key; the
  answer lists them all, scored by RULER's ``string_match_all``.
- ``multiquery`` (RULER ``niah_multiquery``): several keys, two of them asked at once.

The phrasing comes from a `Family`: `FIXED`, this module's one template per task (and
its filler), or a generated family of many phrasings (phrasing.py for training,
heldout.py for evaluation only).

Every sample is a pure function of (seed, index), so the stream needs no files, can
be replayed from any index (the trainer's data state is one integer) and gives the
same samples on any number of ranks. Lengths are in tokens of the given tokenizer:
the byte-level pre-tokenizer never merges across a leading space, so a sentence's
token count is the same alone and inside the haystack, and we add counts up.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tokenizers import Tokenizer

from infinitecontext.model import tokenizer as model_tokenizer
from infinitecontext.trainer.recipe import TASKS, TaskName

INTRO = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and "
    "memorize it. I will quiz you about the important information there."
)

# Filler vocabulary: enough combinations that no sentence repeats often, and numbers
# of the answer's shape so that a wrong answer can be a number from the haystack.
_SUBJECTS = (
    "The grass", "The sky", "A river", "The old map", "Our ship", "The library",
    "A quiet town", "The market", "Every garden", "The mountain road", "The baker",
    "A tired traveller", "The north wind", "The lighthouse", "My neighbour", "The orchard",
    "A small boat", "The station clock", "The teacher", "The forest path",
)  # fmt: skip
_VERBS = ("is", "looks", "was", "seems", "stays", "became", "felt", "remained")
_OBJECTS = (
    "green", "blue", "calm", "busy", "far away", "full of light", "covered in snow",
    "older than anyone remembers", "quiet at night", "open until noon", "painted red",
    "smaller than expected", "warm in the morning", "hard to find", "crowded on Sundays",
)  # fmt: skip
_PLACES = (
    "near the harbour", "behind the hill", "in the valley", "by the old bridge",
    "along the coast", "under the tall trees", "beside the station", "across the square",
)  # fmt: skip
_CLAUSES = (
    "Here we go.", "There and back again.", "Nobody said a word.", "Keep reading.",
    "The day went on.", "It rained a little.", "Everyone agreed.", "Time passed slowly.",
)  # fmt: skip
_KEY_WORDS = (
    "amber", "basil", "cedar", "delta", "ember", "falcon", "garnet", "harbor", "iris",
    "juniper", "kestrel", "lotus", "maple", "nectar", "onyx", "pepper", "quartz", "raven",
    "saffron", "tundra", "umber", "violet", "willow", "xenon", "yarrow", "zephyr",
)  # fmt: skip


class TokenCounter(Protocol):
    """Anything that turns text into token ids (tokenizers.Tokenizer fits via `ids`)."""

    def __call__(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class TaskSpec:
    """What to generate: task, total length in tokens and where the needle sits."""

    task: TaskName = "passkey"
    length: int = 1024
    """Target prompt length in tokens (the answer comes after it)."""
    depth: float | None = None
    """Needle depth in [0, 1] (0: right after the intro); None: uniform per sample."""
    digits: int = 5
    """Digits of the pass key (RULER uses 7 for its magic numbers)."""
    num_needles: int = 4
    """Needles for multikey / values for multivalue."""


@dataclass(frozen=True)
class Needles:
    """What a family puts into one sample."""

    sentences: list[str]
    question: str
    """The question and its lead-in, the prompt's last words."""
    answer: str
    values: tuple[str, ...]
    templates: tuple[str, ...] = ()
    """The shapes the needles and the question were filled from."""


class Family(Protocol):
    """Where needles, questions and haystack sentences come from."""

    def needles(self, spec: TaskSpec, rng: random.Random) -> Needles: ...

    def haystack(self, rng: random.Random, digits: int) -> Iterator[str]: ...


@dataclass(frozen=True)
class Sample:
    prompt: str
    prompt_ids: tuple[int, ...]
    """The prompt's token ids: equal to encoding `prompt` in one go."""
    answer: str
    """What the model should continue with, e.g. " 12345" (leading space included)."""
    values: tuple[str, ...]
    """Every value the answer must contain (one for passkey and multikey)."""
    distractors: tuple[str, ...]
    """Numbers of the answer's shape found elsewhere in the haystack."""
    task: TaskName
    depth: float
    needles: tuple[str, ...] = ()
    question: str = ""
    templates: tuple[str, ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)


def sample_rng(seed: int, *index: int) -> random.Random:
    """An RNG that depends only on (seed, index…): stable across runs, ranks and Pythons."""
    key = ",".join(str(i) for i in (seed, *index)).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))


def number(rng: random.Random, digits: int) -> str:
    return str(rng.randrange(10 ** (digits - 1), 10**digits))


def filler_sentence(rng: random.Random, digits: int) -> str:
    """One varied sentence; about one in eight carries a number shaped like the answer."""
    kind = rng.random()
    if kind < 0.55:
        return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
    if kind < 0.75:
        return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_PLACES)}."
    if kind < 0.875:
        return rng.choice(_CLAUSES)
    return f"The ticket for {rng.choice(_KEY_WORDS)} was number {number(rng, digits)}."


def filler_stream(rng: random.Random, digits: int) -> Iterator[str]:
    while True:
        yield filler_sentence(rng, digits)


def make_sample(
    spec: TaskSpec, count: TokenCounter, seed: int, *index: int, family: Family | None = None
) -> Sample:
    """Sample `index` of the stream `seed`: a haystack of ≈spec.length tokens with needles,
    phrased by `family` (default: FIXED)."""
    family = family or FIXED
    rng = sample_rng(seed, *index)
    depth = rng.random() if spec.depth is None else spec.depth
    drawn = family.needles(spec, rng)
    needles, question, answer, values = drawn.sentences, drawn.question, drawn.answer, drawn.values
    fixed = [INTRO, *needles, question]
    budget = spec.length - sum(len(count(" " + text)) for text in fixed)
    filler, distractors = _fill(family.haystack(rng, spec.digits), spec.digits, budget, count)
    # Needles go in at `depth` of the filler; multiple needles spread after that point.
    at = round(depth * len(filler))
    spread = [min(len(filler), at + i * max(1, (len(filler) - at) // (len(needles) + 1)))
              for i in range(len(needles))]  # fmt: skip
    body: list[str] = []
    for i, sentence in enumerate(filler):
        body.extend(needles[j] for j, position in enumerate(spread) if position == i)
        body.append(sentence)
    body.extend(needles[j] for j, position in enumerate(spread) if position >= len(filler))
    pieces = [INTRO, *body, question]
    # Token ids add up sentence by sentence (see the module docstring); no re-encoding.
    ids = [token for i, text in enumerate(pieces) for token in count(" " * (i > 0) + text)]
    extra = tuple(v for v in _needle_values(needles) if v not in values)
    return Sample(
        prompt=" ".join(pieces),
        prompt_ids=tuple(ids),
        answer=answer,
        values=values,
        distractors=tuple(dict.fromkeys(distractors + extra)),
        task=spec.task,
        depth=depth,
        needles=tuple(needles),
        question=question,
        templates=drawn.templates,
    )


class FixedTemplates:
    """One template per task, the Mohtashami & Jaggi / RULER wording, and our filler."""

    def haystack(self, rng: random.Random, digits: int) -> Iterator[str]:
        return filler_stream(rng, digits)

    def needles(self, spec: TaskSpec, rng: random.Random) -> Needles:
        if spec.task == "passkey":
            key = number(rng, spec.digits)
            needle = f"The pass key is {key}. Remember it. {key} is the pass key."
            return Needles([needle], "What is the pass key? The pass key is", f" {key}", (key,))
        needed = max(2, spec.num_needles) if spec.task == "multiquery" else spec.num_needles
        keys = rng.sample(_KEY_WORDS, k=min(needed, len(_KEY_WORDS)))
        values = [number(rng, spec.digits) for _ in keys]
        if spec.task == "multikey":
            asked = rng.randrange(len(keys))
            needles = [_magic(k, v) for k, v in zip(keys, values, strict=True)]
            question = f"What is the special magic number for {keys[asked]}? The number is"
            return Needles(needles, question, f" {values[asked]}", (values[asked],))
        if spec.task == "multiquery":
            i, j = sorted(rng.sample(range(len(keys)), 2))
            needles = [_magic(k, v) for k, v in zip(keys, values, strict=True)]
            question = (
                f"What are the special magic numbers for {keys[i]} and {keys[j]}? The numbers are"
            )
            return Needles(needles, question, f" {values[i]}, {values[j]}", (values[i], values[j]))
        needles = [_magic(keys[0], v) for v in values]
        question = f"What are all the special magic numbers for {keys[0]}? The numbers are"
        return Needles(needles, question, " " + ", ".join(values), tuple(values))


FIXED = FixedTemplates()


def _magic(key: str, value: str) -> str:
    return f"One of the special magic numbers for {key} is: {value}."


def _needle_values(needles: Sequence[str]) -> list[str]:
    return [word.strip(".,:") for n in needles for word in n.split() if word.strip(".,:").isdigit()]


def _fill(
    haystack: Iterator[str], digits: int, budget: int, count: TokenCounter
) -> tuple[list[str], tuple[str, ...]]:
    """Haystack sentences totalling at most `budget` tokens, and the numbers among them
    of the answer's shape."""
    sentences: list[str] = []
    numbers: list[str] = []
    used = 0
    for sentence in haystack:
        cost = len(count(" " + sentence))
        if used + cost > budget:
            break
        sentences.append(sentence)
        used += cost
        words = (w.strip(".,:;()") for w in sentence.split())
        numbers.extend(w for w in words if w.isdigit() and len(w) == digits)
    return sentences, tuple(numbers)


# The tasks whose wording trains the tokenizer (multiquery's words are multikey's).
_TOKENIZER_TASKS: tuple[TaskName, ...] = TASKS[:3]


def corpus(seed: int, sentences: int, digits: int = 5) -> Iterator[str]:
    """Text to train the tokenizer on: filler plus every needle and question shape."""
    rng = sample_rng(seed, -1)
    for i in range(sentences):
        if i % 10 == 0:
            task = _TOKENIZER_TASKS[(i // 10) % len(_TOKENIZER_TASKS)]
            drawn = FIXED.needles(TaskSpec(task=task, digits=digits), rng)
            yield " ".join([INTRO, *drawn.sentences, drawn.question + drawn.answer])
        else:
            yield filler_sentence(rng, digits)


def answer_room(tasks: Sequence[TaskName], num_needles: int, digits: int, fixed: bool) -> int:
    """Tokens to leave after the prompt: the longest answer (values, separators), <eos>.
    Generated families also draw word-pair and UUID-like keys (up to 14 tokens)."""
    values = max(num_needles if "multivalue" in tasks else 1, 2 if "multiquery" in tasks else 1)
    return values * ((digits if fixed else max(digits, 12)) + 2) + 2


def score(prediction: str, sample: Sample) -> float:
    """Exact match of the first number (passkey, multikey), or of the first word where
    the key is not a number (word pairs, UUID-like keys); RULER's string_match_all (the
    fraction of the values found) for several values.

    Only the first line counts, so a model rambling on past the answer is not
    rewarded for numbers it lists later.
    """
    first_line = prediction.strip().split("\n")[0]
    found = [w.strip(".,:;") for w in first_line.replace(",", " ").split()]
    numbers = [w for w in found if w.isdigit()]
    if len(sample.values) == 1:
        if sample.values[0].isdigit():
            return float(bool(numbers) and numbers[0] == sample.values[0])
        return float(bool(found) and found[0] == sample.values[0])
    return sum(v in found for v in sample.values) / len(sample.values)


def train_tokenizer(
    vocab_size: int, seed: int = 0, sentences: int = 30_000, extra: Iterable[str] = ()
) -> Tokenizer:
    """The model's byte-level BPE (digits one per token) trained on this module's text
    and `extra` (a generated family's phrasings, natural text)."""
    texts = itertools.chain(corpus(seed, sentences), extra)
    return model_tokenizer.train_tokenizer(texts, vocab_size)


def token_counter(tokenizer: Tokenizer) -> TokenCounter:
    """tokenizer.encode(text).ids, memoised: filler sentences repeat a lot."""

    @functools.lru_cache(maxsize=65536)
    def encode(text: str) -> tuple[int, ...]:
        return tuple(tokenizer.encode(text).ids)

    return lambda text: list(encode(text))
