"""Helm for the tests: `helm` (session), the binary built from tests/helm/go.mod.

`make helm-build` builds it before the tests; when it is missing the fixture builds it
(incrementally) with the machine's Go, and without a new enough Go the tests that use it
are skipped with one line (failed under CI=true, tests/plugins/prerequisites.py).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from plugins.kube import GO_MIN, go_is_new_enough
from plugins.prerequisites import missing

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "helm" / "build.sh"
HELM_BIN = REPO / ".cache" / "helm" / "bin"


class HelmError(RuntimeError):
    """A helm command failed; the message holds its stderr."""


@dataclass(frozen=True)
class Helm:
    """The built helm, with its cache and configuration in a test-owned folder."""

    path: Path
    home: Path

    def __call__(self, *args: str, kubeconfig: Path | None = None) -> str:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        done = subprocess.run(
            [str(self.path), *args], capture_output=True, text=True, env=env, check=False
        )
        if done.returncode != 0:
            raise HelmError(f"helm {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    path = HELM_BIN / "helm"
    if go_is_new_enough():
        subprocess.run([str(BUILD_SCRIPT), str(HELM_BIN)], check=True)  # no-op when current
    if not os.access(path, os.X_OK):
        missing(f"no Go >= {GO_MIN} to build Helm (`make helm-build`)")
    return Helm(path, tmp_path_factory.mktemp("helm-home"))
