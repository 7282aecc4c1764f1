"""One namespace, no shadowing, and an operator that installs and imports without torch."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAPPED = ("operator", "crds", "model", "kernels", "trainer_image", "server_image", "slurm_bridge")


def run_python(code: str, cwd: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_mapped_folders_are_namespace_portions_without_init():
    # An operator/__init__.py would shadow the standard library whenever the repository
    # root is on sys.path (python -c, python -m pytest from the root).
    for folder in (*MAPPED, "infinitecontext"):
        assert not (REPO / folder / "__init__.py").exists(), folder


def test_stdlib_operator_wins_from_the_repository_root():
    result = run_python("import operator; print(operator.__file__)", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert str(REPO) not in result.stdout


@pytest.mark.parametrize("name", ["model", "kernels", "trainer_image", "slurm_bridge"])
def test_no_bare_top_level_packages(name, tmp_path):
    result = run_python(f"import {name}", cwd=tmp_path)
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr


def test_namespace_subpackages_resolve_to_their_folders(tmp_path):
    code = "import infinitecontext.model.config as c; print(c.__file__)"
    result = run_python(code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(REPO / "model" / "config.py")


@pytest.mark.slow
def test_operator_extra_installs_and_imports_without_torch(tmp_path):
    """A real environment with only `.[operator]`: the operator image's install."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-c",
            str(REPO / "requirements" / "constraints.txt"),
            f"{REPO}[operator]",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    code = (
        "import importlib, pkgutil, sys\n"
        "import infinitecontext.cli\n"
        "for pkg in ('operator', 'crds', 'slurm_bridge'):\n"
        "    mod = importlib.import_module('infinitecontext.' + pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, mod.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "try:\n"
        "    import torch\n"
        "except ImportError:\n"
        "    print('no torch here')\n"
    )
    result = run_python(code, cwd=tmp_path, python=python)
    assert result.returncode == 0, result.stderr
    assert "no torch here" in result.stdout
    icx = subprocess.run([str(env_dir / "bin" / "icx"), "--help"], capture_output=True, text=True)
    assert icx.returncode == 0, icx.stderr
