"""From a model reference to a verified local Hugging Face directory.

References: `models:/name/version`, `models:/name@alias` (MLflow registry, through
`MLFLOW_TRACKING_URI`), any other MLflow artifact URI (`runs:/run_id/model`,
`mlflow-artifacts:/…`, `s3://…`), or a local directory.

Remote models go to `cache_root/user-<uid>/<key>/` (a directory only this user can
write to, `private_cache`): downloaded into a temporary sibling, checked
(the producer's manifest if it shipped one, then the HF structure), given our manifest,
and only then renamed into place, so an interrupted download is never taken for a model.
Every serve re-verifies the cache entry against its manifest. An alias is resolved to
its version first, so the cache key names an immutable version.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infinitecontext.server.manifest import (
    MANIFEST_TAG,
    ModelError,
    check_hf_dir,
    verify_manifest,
    verify_registered,
    write_manifest,
)

log = logging.getLogger(__name__)

_REGISTRY = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


@dataclass(frozen=True)
class RegistryRef:
    name: str
    version: str | None
    alias: str | None


def parse_registry_uri(uri: str) -> RegistryRef | None:
    """`models:/name/3` or `models:/name@champion`; None for any other reference."""
    match = _REGISTRY.match(uri)
    if match is None:
        if uri.startswith("models:/"):
            raise ModelError(f"{uri}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
        return None
    version = match["version"]
    if version is not None and not version.isdigit():
        # Stages (Production, latest) are deprecated and mutable: ask for an alias instead.
        raise ModelError(f"{uri}: version must be a number; use models:/NAME@ALIAS for aliases")
    return RegistryRef(match["name"], version, match["alias"])


def is_remote(reference: str) -> bool:
    return bool(_SCHEME.match(reference)) and not reference.startswith("file:")


def cache_key(uri: str) -> str:
    """A readable, filesystem-safe directory name that is unique per URI."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", uri).strip("_")[:80]
    return f"{readable}-{hashlib.sha256(uri.encode()).hexdigest()[:12]}"


def resolve_model(reference: str, cache_root: Path) -> Path:
    """A verified local HF directory for `reference` (downloading it when not cached)."""
    if not is_remote(reference):
        return _local_model(Path(reference.removeprefix("file://")))
    uri = _pin_version(reference)
    target = private_cache(cache_root) / cache_key(uri)
    if target.exists():
        try:
            verify_manifest(target, required=True)
            check_hf_dir(target)
            log.info("using cached %s at %s", uri, target)
            return target
        except ModelError as error:
            log.warning("discarding the cache entry: %s", error)
            shutil.rmtree(target)
    return _download(uri, target)


def private_cache(cache_root: Path) -> Path:
    """This user's own directory under `cache_root` (which may be shared, such as a SLURM
    working directory): created 0700, and refused when another user owns it or may
    write to it, since a model placed there would be served."""
    mine = cache_root / f"user-{os.getuid()}"
    mine.mkdir(mode=0o700, parents=True, exist_ok=True)
    found = mine.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
        raise ModelError(f"{mine}: not a directory of this user; refusing to cache models there")
    if found.st_mode & 0o022:
        raise ModelError(f"{mine}: writable by other users; refusing to cache models there")
    return mine


def _local_model(directory: Path) -> Path:
    if not directory.exists():
        raise ModelError(f"{directory}: no such directory (and not an MLflow URI)")
    directory = _hf_root(directory)
    verify_manifest(directory, required=False)
    check_hf_dir(directory)
    return directory


def _pin_version(uri: str) -> str:
    """Replace an alias by the version it points at now (one registry call)."""
    ref = parse_registry_uri(uri)
    if ref is None or ref.alias is None:
        return uri
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient().get_model_version_by_alias(ref.name, ref.alias).version
    except MlflowException as error:
        raise ModelError(f"{uri}: cannot resolve the alias: {error.message}") from error
    log.info("%s is version %s", uri, version)
    return f"models:/{ref.name}/{version}"


def _download(uri: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        recorded = _recorded_manifest(uri)
        _fetch(uri, staging)
        model_dir = _hf_root(staging)
        if recorded:
            verify_registered(model_dir, recorded)
        verify_manifest(model_dir, required=False)
        check_hf_dir(model_dir)
        write_manifest(model_dir)
        try:
            os.rename(model_dir, target)
        except OSError:
            # Another server filled the same entry first; use it if it verifies.
            verify_manifest(target, required=True)
        log.info("downloaded %s to %s", uri, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _recorded_manifest(uri: str) -> str | None:
    """The manifest digest the registry recorded for a `models:/name/version` (None: a
    version registered without one, or not a registry URI)."""
    ref = parse_registry_uri(uri)
    if ref is None or ref.version is None:
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        version = MlflowClient().get_model_version(ref.name, ref.version)
    except MlflowException as error:
        raise ModelError(f"{uri}: cannot download from MLflow: {error.message}") from error
    return (version.tags or {}).get(MANIFEST_TAG)


def _fetch(uri: str, destination: Path) -> None:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination))
    except MlflowException as error:
        raise ModelError(f"{uri}: cannot download from MLflow: {error.message}") from error
    except OSError as error:
        raise ModelError(f"{uri}: download failed: {error}") from error


def _hf_root(directory: Path) -> Path:
    """The directory itself when it holds config.json, else its only subdirectory that does."""
    if (directory / "config.json").is_file():
        return directory
    candidates = [child for child in directory.iterdir() if (child / "config.json").is_file()]
    if len(candidates) == 1:
        return candidates[0]
    raise ModelError(f"{directory}: no config.json; not a Hugging Face model directory")
