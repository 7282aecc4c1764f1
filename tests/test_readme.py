"""The README's counted claims hold, and it names the command for the test count instead
of printing a number that drifts (`./dev.sh test-count` prints it)."""

from __future__ import annotations

import re
from pathlib import Path

from infinitecontext.crds.models import KINDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def claimed(text: str, noun: str) -> list[int]:
    """Every count the text gives for `noun` ("Four custom resources" → [4])."""
    found = re.findall(rf"\b(\d+|{'|'.join(NUMBER_WORDS)})\s+{noun}\b", text, re.IGNORECASE)
    return [int(n) if n.isdigit() else NUMBER_WORDS[n.lower()] for n in found]


def image_targets() -> set[str]:
    """The Dockerfile's final stages: those no other stage copies from or builds on."""
    dockerfile = (REPO / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.MULTILINE))
    copied_from = set(re.findall(r"--from=(\S+)", dockerfile))
    parents = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)  # may use ${ARG}s
    parents = [p for p in parents if not re.fullmatch(r"\$\{\w+\}", p)]  # a base image
    built_on = [re.compile(re.sub(r"\\\$\\\{\w+\\\}", ".+", re.escape(p))) for p in parents]
    return {s for s in stages - copied_from if not any(b.fullmatch(s) for b in built_on)}


def test_no_hard_coded_test_count_but_the_commands_that_give_it() -> None:
    text = README.read_text()
    assert not claimed(text, "tests"), "name `./dev.sh test-count` instead of a number"
    for command in ("./dev.sh test", "./dev.sh test-fast", "./dev.sh test-count"):
        assert command in text
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test-fast:", makefile, re.MULTILINE)
    assert re.search(r"^test-count:", makefile, re.MULTILINE)


def test_counted_claims_match_the_repository() -> None:
    text = README.read_text()
    assert set(claimed(text, "custom resources")) == {len(KINDS)}
    assert set(claimed(text, "kinds")) == {len(KINDS)}
    assert set(claimed(text, "image builds")) == {len(image_targets())}
