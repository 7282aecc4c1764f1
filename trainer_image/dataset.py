"""JSONL datasets for SFT (`data.uri`): fetch, index, read records, fit them to a row.

A dataset is one JSONL file, one record a line, either

- ``{"text": "..."}``: plain language modelling, every token weighted as an answer; or
- ``{"prompt": "...", "completion": "..."}``: the completion (and ``<eos>``) weighted as
  the answer, the prompt as context (``lm_loss_weight``), like the synthetic tasks.

It is named by a local path, a ``file://`` URI, or an MLflow artifact URI (``runs:/<run
id>/<path>``, ``mlflow-artifacts:/…``), which is downloaded once into a cache directory
(``$ICX_DATA_CACHE``, else ``<tmp>/icx-data``) keyed by the URI, with an atomic rename so
that ranks downloading at the same time do not see half a file.

The file is streamed once to record each line's byte offset (and to check every record,
so a bad line fails the run before training, naming the line); records are then read by
seeking, never all held in memory. Which record a step's position gets is a pure function
of (step, position, the plan, the seed) (batches.py), so a resumed run reads exactly
what an uninterrupted one would have.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

from infinitecontext.trainer.data import sample_rng
from infinitecontext.trainer.recipe import check_data_uri

MLFLOW_SCHEMES = ("runs:/", "mlflow-artifacts:/")


@dataclass(frozen=True)
class Record:
    prompt: str
    """Context, weighted `lm_loss_weight` ("" for a `text` record)."""
    completion: str
    """What the model learns to continue with, weighted `answer_loss_weight`."""


def default_cache() -> Path:
    return Path(os.environ.get("ICX_DATA_CACHE") or Path(tempfile.gettempdir()) / "icx-data")


def resolve(uri: str, cache_dir: Path | None = None) -> Path:
    """A local file holding the dataset `uri` (downloaded first for MLflow URIs)."""
    check_data_uri(uri)
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        path = Path(unquote(parsed.path))
    elif uri.startswith(MLFLOW_SCHEMES):
        path = _download(uri, cache_dir or default_cache())
    else:
        path = Path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"data.uri {uri}: {path} is not a file")
    return path


def _download(uri: str, cache: Path) -> Path:
    target = cache / hashlib.sha256(uri.encode()).hexdigest()[:16]
    done = target / (uri.rstrip("/").rsplit("/", 1)[-1] or "data.jsonl")
    if done.is_file():
        return done  # an artifact URI names immutable content: the cached copy is it
    import mlflow.artifacts

    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=cache))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging)))
        if local.is_dir():
            raise ValueError(f"data.uri {uri} is a directory of artifacts; name one JSONL file")
        target.mkdir(parents=True, exist_ok=True)
        os.replace(local, done)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


def parse_record(line: bytes | str, where: str) -> Record:
    """One JSONL line as a Record; ValueError naming `where` if it is not one."""
    try:
        data: Any = json.loads(line)
    except ValueError as err:
        raise ValueError(f"{where}: not JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("text"), str) and data["text"]:
        return Record("", data["text"])
    if (
        isinstance(data, dict)
        and isinstance(data.get("prompt"), str)
        and isinstance(data.get("completion"), str)
        and data["completion"]
    ):
        return Record(data["prompt"], data["completion"])
    raise ValueError(
        f'{where}: expected {{"text": …}} or {{"prompt": …, "completion": …}} with '
        f"non-empty strings, got {str(line)[:200]!r}"
    )


class JsonlDataset:
    """The records of one JSONL file by index: offsets in memory, text read on demand.

    Picklable (a DataLoader's worker processes get the offsets, not an open file).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offsets = array("q")
        position = 0
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    parse_record(line, f"{path}:{number}")
                    self.offsets.append(position)
                position += len(line)
        if not self.offsets:
            raise ValueError(f"{path}: no records")
        self._file: IO[bytes] | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> Record:
        if self._file is None:
            self._file = self.path.open("rb")
        self._file.seek(self.offsets[index])
        return parse_record(self._file.readline(), f"{self.path} record {index}")

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_file": None}


@functools.lru_cache(maxsize=2)
def permutation(seed: int, epoch: int, size: int) -> array[int]:
    """The order of the records in `epoch`: a seeded shuffle, the same on every rank."""
    order = list(range(size))
    sample_rng(seed, epoch, -2).shuffle(order)
    return array("q", order)


def record_at(seed: int, size: int, index: int) -> int:
    """The record read at the `index`-th place of the stream (epochs of shuffled records)."""
    epoch, at = divmod(index, size)
    return permutation(seed, epoch, size)[at]


def fit(prompt: list[int], answer: list[int], seq_len: int) -> tuple[list[int], list[int]]:
    """(prompt, answer) so that <bos> prompt answer fits seq_len + 1 tokens: the prompt
    loses its beginning first (the end is nearest the answer), then the answer its end."""
    room = seq_len  # <bos> takes one of the seq_len + 1 tokens
    keep = max(0, room - len(answer))
    return prompt[len(prompt) - min(len(prompt), keep) :], answer[:room]


def record_row(
    record: Record, encode: Callable[[str], list[int]], eos: int, seq_len: int
) -> tuple[list[int], list[int]]:
    """A record as (prompt ids, answer ids + <eos>), fitted to the row."""
    prompt = encode(record.prompt) if record.prompt else []
    return fit(prompt, [*encode(record.completion), eos], seq_len)
