"""Integrity of a Hugging Face model directory: a sha256 manifest and structural checks.

The model cache writes `icx-manifest.json` (sha256 and size of every file) once a
download is complete and verifies it before every serve, so a file that changed or
went missing in the cache is caught before vLLM reads it. A producer (the trainer) may
ship the same manifest beside the model; it is then checked right after the download.
`check_hf_dir` catches what a manifest cannot: a directory that was never a complete
model, such as a truncated safetensors file.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "icx-manifest.json"
MANIFEST_TAG = "infinitecontext.manifest_sha256"
"""Model-version tag: the sha256 of the producer's manifest, recorded at registration,
checked by `icx serve` before it trusts a download."""
_CHUNK = 1 << 20


class ModelError(Exception):
    """The model cannot be resolved, downloaded or trusted; the message says why."""


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size: int


def sha256_file(path: Path) -> FileDigest:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return FileDigest(digest.hexdigest(), path.stat().st_size)


def digest_dir(directory: Path) -> dict[str, FileDigest]:
    """Every regular file below `directory` (the manifest itself excluded), by relative path."""
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


def write_manifest(directory: Path) -> Path:
    entries = {
        name: {"sha256": d.sha256, "size": d.size} for name, d in digest_dir(directory).items()
    }
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps({"files": entries}, indent=1, sort_keys=True) + "\n")
    return path


def manifest_sha256(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def verify_registered(directory: Path, expected_sha256: str) -> None:
    """The producer's manifest is the one recorded at registration, and the files match
    it (raise ModelError)."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ModelError(f"{directory}: no {MANIFEST_NAME}, but the registry recorded one")
    if manifest_sha256(path.read_bytes()) != expected_sha256:
        raise ModelError(f"{path}: not the manifest recorded at registration ({MANIFEST_TAG})")
    verify_manifest(directory, required=True)


def read_manifest(directory: Path) -> dict[str, FileDigest] | None:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        return {name: FileDigest(e["sha256"], int(e["size"])) for name, e in files.items()}
    except (ValueError, KeyError, TypeError) as error:
        raise ModelError(f"{path}: unreadable manifest ({error})") from error


def manifest_mismatches(
    expected: dict[str, FileDigest], actual: dict[str, FileDigest]
) -> list[str]:
    """One line per file that is missing, unexpected or different (empty when they agree)."""
    problems = [f"missing: {name}" for name in sorted(expected.keys() - actual.keys())]
    problems += [f"not in manifest: {name}" for name in sorted(actual.keys() - expected.keys())]
    for name in sorted(expected.keys() & actual.keys()):
        want, got = expected[name], actual[name]
        if want.size != got.size:
            problems.append(f"size mismatch: {name} ({got.size} bytes, expected {want.size})")
        elif want.sha256 != got.sha256:
            problems.append(f"sha256 mismatch: {name}")
    return problems


def verify_manifest(directory: Path, required: bool) -> None:
    """Raise ModelError when the manifest disagrees with the files (or is absent but required)."""
    expected = read_manifest(directory)
    if expected is None:
        if required:
            raise ModelError(f"{directory}: no {MANIFEST_NAME}; the cache entry is incomplete")
        return
    problems = manifest_mismatches(expected, digest_dir(directory))
    if problems:
        raise ModelError(f"{directory}: checksum verification failed: " + "; ".join(problems))


def check_hf_dir(directory: Path) -> None:
    """A loadable-looking HF causal LM: config, tokenizer and complete safetensors files."""
    if not directory.is_dir():
        raise ModelError(f"{directory}: not a directory")
    config = directory / "config.json"
    try:
        architectures = json.loads(config.read_text()).get("architectures")
    except (OSError, ValueError, AttributeError) as error:
        raise ModelError(f"{config}: missing or not a JSON object ({error})") from error
    if not architectures:
        raise ModelError(f"{config}: no 'architectures'; not a Hugging Face model directory")
    if not any(
        (directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
    ):
        raise ModelError(f"{directory}: no tokenizer.json or tokenizer_config.json")
    weights = sorted(directory.glob("*.safetensors"))
    if not weights:
        raise ModelError(f"{directory}: no *.safetensors weights")
    for path in weights:
        check_safetensors(path)


def check_safetensors(path: Path) -> None:
    """The header parses and its tensors end exactly at the end of the file (not truncated)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelError(f"{path}: truncated safetensors file ({size} bytes)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > size - 8:
            raise ModelError(f"{path}: truncated safetensors file (header says {header_len} B)")
        try:
            header = json.loads(handle.read(header_len))
        except ValueError as error:
            raise ModelError(f"{path}: corrupt safetensors header ({error})") from error
    data_end = max(
        (int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0
    )
    if 8 + header_len + data_end != size:
        raise ModelError(
            f"{path}: truncated or corrupt safetensors file "
            f"({size} bytes, header describes {8 + header_len + data_end})"
        )
