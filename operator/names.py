"""Names and label values of children, derived from any name the CRDs accept.

A custom resource's name is a DNS subdomain (up to 253 characters, dots allowed); a
Service's name must be a DNS-1035 label (up to 63, no dots, starting with a letter) and
a label value at most 63 characters that start and end alphanumeric. A name that
already fits is used as it is; any other is cut, its dots made dashes, and ended with
a hash of the whole name, so that two names never share a child.
"""

from __future__ import annotations

import hashlib
import re

MAX_LABEL = 63
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_NOT_IN_DNS_1035 = re.compile(r"[^-a-z0-9]")
_HASH_LENGTH = 8


def child_name(name: str, suffix: str = "", limit: int = MAX_LABEL) -> str:
    """A DNS-1035 label of at most `limit` characters for the child `suffix` (`-canary`,
    empty for the main child) of the resource `name`."""
    whole = f"{name}{suffix}"
    if len(whole) <= limit and _DNS_1035.match(whole):
        return whole
    stem = _NOT_IN_DNS_1035.sub("-", name.lower())
    if not stem[:1].isalpha():
        stem = f"x{stem}"
    room = limit - len(suffix) - _HASH_LENGTH - 1
    return f"{stem[:room].rstrip('-')}-{_digest(name)}{suffix}"


def label_value(name: str) -> str:
    """A label value that stands for the resource `name` (the name itself where it fits)."""
    if len(name) <= MAX_LABEL and _LABEL_VALUE.match(name):
        return name
    stem = name[: MAX_LABEL - _HASH_LENGTH - 1].rstrip("-_.")
    return f"{stem}-{_digest(name)}"


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:_HASH_LENGTH]
