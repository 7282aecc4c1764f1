"""What a missing prerequisite does, decided here and nowhere else.

On a developer's machine a test whose prerequisite is missing (Go for the local control
plane, SLURM, promtool, vLLM, …) is skipped with one line that says what to install. Under
`CI=true` the same test fails instead, so CI can never pass without the end-to-end tests.

The one exception is the GPU: GPU-only tests skip everywhere (`gpu_only`), because CI
runs on a machine without one.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> NoReturn:
    """Stop the test (or, called at import, the module) for lack of `what`: a skip, or a
    failure under CI=true."""
    if in_ci():
        pytest.fail(f"missing prerequisite (CI=true fails instead of skipping): {what}")
    pytest.skip(what, allow_module_level=True)


def require_command(name: str, install_hint: str) -> str:
    """The path of the command `name`, or `missing(...)`."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed ({install_hint})")
    return path


def require_module(name: str, install_hint: str) -> ModuleType:
    """The imported module `name`, or `missing(...)`."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        missing(f"{name} is not importable ({install_hint}): {error}")


def gpu_only(reason: str) -> pytest.MarkDecorator:
    """Skip without a CUDA GPU, under CI too: the documented exception (CI has no GPU)."""
    import torch

    return pytest.mark.skipif(not torch.cuda.is_available(), reason=reason)
