"""Needles and questions from a large generated family of phrasings, and haystacks from
several sources: what `data.templates: varied` trains on.

A fixed template teaches a model to match one sentence, not to retrieve (issue 25: a
model trained on "The pass key is N. Remember it. N is the pass key." scored 0% once
the needle said "password"). Here every sample draws

- a key phrase: a modifier and a noun ("locker number", "zorvak tag"), sometimes a
  made-up word, so that what must be matched is the question's phrase, not a word list;
- a sentence shape with the value at the start, middle or end, repeated or not;
- a question shape and a lead-in ("Answer:", "The {k} is", or none);
- a value kind: digits, a word pair or a UUID-like hex string;
- a haystack: varied filler, record-like lines with numbers, or natural text
  (corpus.py's JSONL, `data.haystack`).

The same engine (`TemplateFamily`) serves the held-out family in heldout.py, which has
its own word lists, shapes and haystack; training code never imports that module, and
tests/test_trainer_heldout.py checks that no held-out shape or key word reaches the
training stream.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from infinitecontext.trainer.data import Needles, TaskSpec, filler_stream, number

# Words that form training key phrases. heldout.py's key words are none of these.
_MODIFIERS = (
    "pass", "magic", "special", "hidden", "lucky", "private", "master", "backup",
    "launch", "entry", "door", "account", "license", "serial", "reference", "tracking",
    "order", "room", "locker", "safe", "gate", "alarm", "bank", "member", "ticket",
    "voucher", "archive", "project", "parcel", "server", "wallet", "garage", "office",
    "station", "museum", "club", "harbor", "river", "mountain", "orchard", "library",
)  # fmt: skip
_NOUNS = (
    "key", "number", "value", "id", "tag", "label", "digits", "cipher", "string",
    "word", "mark", "figure", "entry", "marker", "reading",
)  # fmt: skip
_SYLLABLES = ("zor", "vak", "mel", "tri", "quon", "bel", "dra", "fen", "lux", "pim", "ost")

_NEEDLES = (
    "The {k} is {v}.",
    "The {k} is: {v}.",
    "{v} is the {k}.",
    "Note that the {k} is {v}.",
    "Remember this: the {k} is {v}.",
    "The {k}, which you will need later, is {v}.",
    "Write down the {k}: {v}.",
    "{v} - that is the {k}.",
    "For the record, {v} is the {k} to keep.",
    "The {k} has been set to {v}.",
    "Your {k} is {v}.",
    "Keep the {k} in mind, it is {v}.",
    "Here is the {k}: {v}.",
    "We agreed that the {k} would be {v}.",
)
_REPEATS = (
    "Remember it. {v} is the {k}.",
    "Once more: {v}.",
    "Again, the {k} is {v}.",
    "I repeat, {v}.",
)
_QUESTIONS = (
    "What is the {k}?",
    "What was the {k} mentioned above?",
    "Tell me the {k}.",
    "Which value is the {k}?",
    "Recall the {k}.",
    "",
)
_LEADS = ("The {k} is", "Answer:", "The {k} was", "It is", "")
_MULTI_NEEDLES = ("One of the {k}s is {v}.", "Another {k}: {v}.", "A {k} to remember is {v}.")
_MULTI_QUESTIONS = ("What are all the {k}s?", "List every {k}.", "Name all the {k}s.")
_MULTI_LEADS = ("The {k}s are", "They are", "Answer:")
_QUERY_QUESTIONS = ("What are the {k} and the {k2}?", "Tell me the {k} and the {k2}.")
_QUERY_LEADS = ("They are", "Answer:", "In order:")

_WORDS = (
    "apple", "breeze", "canyon", "dolphin", "ember", "forest", "glacier", "horizon",
    "island", "jungle", "kettle", "lantern", "meadow", "nectar", "ocean", "pebble",
    "quiver", "rocket", "saddle", "thistle", "umbrella", "velvet", "walnut", "yonder",
    "zenith", "anchor", "bramble", "cobalt", "drizzle", "falcon", "goblet", "hammock",
)  # fmt: skip
_CITIES = ("Oslo", "Lima", "Cairo", "Quito", "Perth", "Riga", "Hanoi", "Dakar", "Bern", "Accra")
_GOODS = ("crates", "barrels", "boxes", "sacks", "pallets", "parcels", "bundles", "cases")


@dataclass(frozen=True)
class Vocabulary:
    """One family's word lists and sentence shapes ({k}: key phrase, {v}: value, {k2}: a
    second key phrase)."""

    key_phrase: Callable[[random.Random], str]
    needles: tuple[str, ...]
    repeats: tuple[str, ...]
    questions: tuple[str, ...]
    leads: tuple[str, ...]
    multi_needles: tuple[str, ...]
    multi_questions: tuple[str, ...]
    multi_leads: tuple[str, ...]
    query_questions: tuple[str, ...]
    query_leads: tuple[str, ...]

    def templates(self) -> set[str]:
        """Every shape, for the disjointness test."""
        return {
            *self.needles, *self.repeats, *self.questions, *self.leads, *self.multi_needles,
            *self.multi_questions, *self.multi_leads, *self.query_questions, *self.query_leads,
        } - {""}  # fmt: skip


def training_key_phrase(rng: random.Random) -> str:
    if rng.random() < 0.2:
        made_up = "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3)))
        return f"{made_up} {rng.choice(_NOUNS)}"
    return f"{rng.choice(_MODIFIERS)} {rng.choice(_NOUNS)}"


TRAINING = Vocabulary(
    training_key_phrase, _NEEDLES, _REPEATS, _QUESTIONS, _LEADS, _MULTI_NEEDLES,
    _MULTI_QUESTIONS, _MULTI_LEADS, _QUERY_QUESTIONS, _QUERY_LEADS,
)  # fmt: skip


def value(rng: random.Random, digits: int, kinds: Sequence[tuple[str, float]]) -> str:
    """A key's value of a kind drawn by weight: `digits` (the spec's length), `digits_any`
    (4–8 digits), `words` (two words, hyphenated) or `uuid` (8 + 4 hex digits)."""
    kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
    if kind == "digits":
        return number(rng, digits)
    if kind == "digits_any":
        return number(rng, rng.randint(4, 8))
    if kind == "words":
        first, second = rng.sample(_WORDS, 2)
        return f"{first}-{second}"
    return f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}"


TRAINING_VALUES = (("digits", 0.5), ("digits_any", 0.15), ("words", 0.15), ("uuid", 0.2))


def fill(template: str, key: str, val: str, key2: str = "") -> str:
    """A shape filled in; a sentence starting with a word is capitalised, never a value."""
    text = template.replace("{k2}", key2).replace("{k}", key).replace("{v}", val)
    return text if template.startswith("{v}") else text[:1].upper() + text[1:]


class NaturalText:
    """Sentences of a corpus.py JSONL file, read from a random record onwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = _records(str(path))

    def sentences(self, rng: random.Random) -> Iterator[str]:
        index = rng.randrange(len(self.records))
        first = True
        while True:
            pieces = _sentences(self.records[index])
            start = rng.randrange(len(pieces)) if first else 0
            yield from pieces[start:]
            index, first = (index + 1) % len(self.records), False


@functools.lru_cache(maxsize=4)
def _records(path: str) -> tuple[str, ...]:
    with open(path) as f:
        return tuple(json.loads(line)["text"] for line in f if line.strip())


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str, max_words: int = 40) -> list[str]:
    """Sentences without surrounding space, long ones cut to `max_words` words."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        out.extend(" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words))
    return out or ["."]


def record_lines(rng: random.Random, digits: int) -> Iterator[str]:
    """A log-like haystack full of numbers: the answer must be told from look-alikes."""
    while True:
        yield (
            f"Shipment {number(rng, digits)} of {rng.randint(2, 90)} {rng.choice(_GOODS)} "
            f"left {rng.choice(_CITIES)} on day {rng.randint(1, 365)}."
        )


Haystack = Callable[[random.Random, int], Iterator[str]]


class TemplateFamily:
    """Needles, questions and haystacks of one vocabulary (data.Family)."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        haystacks: Sequence[Haystack],
        values: Sequence[tuple[str, float]],
        repeat_rate: float = 0.4,
    ) -> None:
        self.vocabulary, self.haystacks, self.values = vocabulary, haystacks, values
        self.repeat_rate = repeat_rate

    def haystack(self, rng: random.Random, digits: int) -> Iterator[str]:
        return rng.choice(self.haystacks)(rng, digits)

    def needles(self, spec: TaskSpec, rng: random.Random) -> Needles:
        voc = self.vocabulary
        if spec.task == "passkey":
            key, val = voc.key_phrase(rng), value(rng, spec.digits, self.values)
            shape = rng.choice(voc.needles)
            needles, used = [fill(shape, key, val)], [shape]
            if rng.random() < self.repeat_rate:
                repeat = rng.choice(voc.repeats)
                needles[0] += " " + fill(repeat, key, val)
                used.append(repeat)
            question, asked = self._question(rng, voc.questions, voc.leads, key)
            return Needles(needles, question, f" {val}", (val,), (*used, *asked))
        count = max(2, spec.num_needles)
        keys = _distinct(rng, voc.key_phrase, count)
        values = [value(rng, spec.digits, self.values) for _ in keys]
        if spec.task == "multivalue":
            shapes = [rng.choice(voc.multi_needles) for _ in values]
            needles = [fill(s, keys[0], v) for s, v in zip(shapes, values, strict=True)]
            question, asked = self._question(rng, voc.multi_questions, voc.multi_leads, keys[0])
            answer = " " + ", ".join(values)
            return Needles(needles, question, answer, tuple(values), (*shapes, *asked))
        shapes = [rng.choice(voc.needles) for _ in keys]
        needles = [fill(s, k, v) for s, k, v in zip(shapes, keys, values, strict=True)]
        if spec.task == "multikey":
            i = rng.randrange(count)
            question, asked = self._question(rng, voc.questions, voc.leads, keys[i])
            return Needles(needles, question, f" {values[i]}", (values[i],), (*shapes, *asked))
        i, j = sorted(rng.sample(range(count), 2))  # multiquery: two keys, in needle order
        q, lead = rng.choice(voc.query_questions), rng.choice(voc.query_leads)
        question = f"{fill(q, keys[i], '', keys[j])} {fill(lead, keys[i], '')}".strip()
        answer = f" {values[i]}, {values[j]}"
        return Needles(needles, question, answer, (values[i], values[j]), (*shapes, q, lead))

    def _question(
        self, rng: random.Random, questions: Sequence[str], leads: Sequence[str], key: str
    ) -> tuple[str, tuple[str, ...]]:
        question = rng.choice(questions)
        lead = rng.choice([lead for lead in leads if lead or question])
        text = " ".join(fill(t, key, "") for t in (question, lead) if t)
        return text, tuple(t for t in (question, lead) if t)


def _distinct(rng: random.Random, draw: Callable[[random.Random], str], count: int) -> list[str]:
    seen: dict[str, None] = {}
    while len(seen) < count:
        seen[draw(rng)] = None
    return list(seen)


def training_family(natural_text: Path | None) -> TemplateFamily:
    """The family `data.templates: varied` draws from; natural text joins the haystacks."""
    haystacks: list[Haystack] = [filler_stream, record_lines]
    if natural_text is not None:
        text = NaturalText(natural_text)
        haystacks += [lambda rng, _digits: text.sentences(rng)] * 2
    return TemplateFamily(TRAINING, haystacks, TRAINING_VALUES)


def tokenizer_text(natural_text: Path | None, seed: int, samples: int) -> Iterator[str]:
    """Text for the tokenizer beyond data.corpus: the family's needles and questions,
    and up to 20 MB of the natural text."""
    family = training_family(None)
    rng = random.Random(seed)
    for i in range(samples):
        spec = TaskSpec(("passkey", "multikey", "multivalue", "multiquery")[i % 4])
        drawn = family.needles(spec, rng)
        yield " ".join([*drawn.sentences, drawn.question + drawn.answer])
    if natural_text is not None:
        size = 0
        for record in _records(str(natural_text)):
            if size > 20_000_000:
                break
            size += len(record)
            yield record
