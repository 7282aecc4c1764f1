"""The held-out family: phrasings, key words and haystacks that training never sees.

Evaluation only (`templates: heldout`, `icx eval passkey --templates heldout`): the
training code (sft.py, batches.py, phrasing.py) never imports this module, and
tests/test_trainer_heldout.py generates training samples and checks that none of
these shapes or key words appears in their needles or questions. The key words include
those a template-matching model failed on in issue 25 ("password", "secret code"), and
some questions have no question at all, only a lead-in ("Password:").

Without a natural-text file the haystack is this module's own generated prose, on
other subjects and in other sentence shapes than data.py's filler; with one (corpus.py's
heldout.jsonl: documents training never read) it is that text.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from infinitecontext.trainer.data import number
from infinitecontext.trainer.phrasing import (
    Haystack,
    NaturalText,
    TemplateFamily,
    Vocabulary,
)

KEY_PHRASES = (
    "password", "secret code", "PIN", "vault combination", "unlock sequence",
    "verification code", "security token", "login credential",
)  # fmt: skip
KEY_WORDS = frozenset(word.lower() for phrase in KEY_PHRASES for word in phrase.split())

_NEEDLES = (
    "The {k} for today is {v}.",
    "Use {v} as the {k}.",
    "I set the {k} to {v} this morning.",
    "Do not forget: {k} = {v}.",
    "My {k} happens to be {v}.",
    "{v} is what the {k} reads.",
    "Someone wrote the {k} on a note, and it said {v}.",
)
_REPEATS = ("That was {v}.", "({k}: {v})", "So: {v}.")
_QUESTIONS = (
    "Do you remember the {k}?",
    "Which {k} did I give you?",
    "Please state the {k}.",
    "",
)
_LEADS = ("{k}:", "Sure, the {k} is", "My reply:", "")
_MULTI_NEEDLES = ("One possible {k} is {v}.", "A valid {k} would be {v}.")
_MULTI_QUESTIONS = ("Which {k}s are valid?", "Give every {k} you saw.")
_MULTI_LEADS = ("Valid ones:", "The list:")
_QUERY_QUESTIONS = ("Give me the {k}, then the {k2}.",)
_QUERY_LEADS = ("Both:", "Here they are:")


def heldout_key_phrase(rng: random.Random) -> str:
    return rng.choice(KEY_PHRASES)


HELDOUT = Vocabulary(
    heldout_key_phrase, _NEEDLES, _REPEATS, _QUESTIONS, _LEADS, _MULTI_NEEDLES,
    _MULTI_QUESTIONS, _MULTI_LEADS, _QUERY_QUESTIONS, _QUERY_LEADS,
)  # fmt: skip
HELDOUT_VALUES = (("digits", 0.6), ("words", 0.2), ("uuid", 0.2))

_SCIENTISTS = ("The chemist", "A botanist", "The surveyor", "Our pilot", "The archivist")
_ACTIONS = (
    "measured the tide", "counted the seeds", "mapped the ridge", "logged the weather",
    "sorted the letters", "tuned the engine", "sketched the comet", "weighed the grain",
)  # fmt: skip
_TIMES = ("before dawn", "after lunch", "at midnight", "during the storm", "on Tuesday")
_FACTS = (
    "Copper conducts heat well.", "Owls hunt at night.", "Glass is made from sand.",
    "Bees dance to share directions.", "Salt water freezes below zero.",
)  # fmt: skip


def prose(rng: random.Random, digits: int) -> Iterator[str]:
    """Held-out haystack sentences: notebook-like prose, one in ten with a number."""
    while True:
        kind = rng.random()
        if kind < 0.6:
            yield f"{rng.choice(_SCIENTISTS)} {rng.choice(_ACTIONS)} {rng.choice(_TIMES)}."
        elif kind < 0.9:
            yield rng.choice(_FACTS)
        else:
            yield f"Sample {number(rng, digits)} went back to the shelf."


def heldout_family(natural_text: Path | None) -> TemplateFamily:
    haystack: Haystack = prose
    if natural_text is not None:
        text = NaturalText(natural_text)
        haystack = lambda rng, _digits: text.sentences(rng)  # noqa: E731
    return TemplateFamily(HELDOUT, [haystack], HELDOUT_VALUES, repeat_rate=0.3)
