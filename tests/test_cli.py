import json
import re
from typing import Any

import typer
from typer.testing import CliRunner

from infinitecontext.cli import app

runner = CliRunner()


def test_help_lists_the_model_group():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "model" in result.output
    result = runner.invoke(app, ["model", "--help"])
    assert result.exit_code == 0
    for command in ("memory", "generate", "export", "import"):
        assert command in result.output


def _commands(command: Any, path: tuple[str, ...] = ()):
    """Every command of the tree (typer's own click: not `click.Group` instances)."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_is_never_cut_at_80_columns():
    """Every option name and every subcommand's summary is whole in an 80-column
    terminal (rich's panels cut them with "…", click's list with "...")."""
    tree = list(_commands(typer.main.get_command(app)))
    assert (("dev", "cluster", "status") in dict(tree)) and len(tree) > 30
    for path, command in tree:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        text = " ".join(result.output.split())
        assert max(map(len, result.output.splitlines())) <= 80, path
        for param in command.params:
            for name in param.opts + param.secondary_opts:
                assert name in text, (path, name)
        # A word cut short ends in "…" (rich) or a line in "..." (click), not the usage line.
        lines = [line.rstrip(" │") for line in result.output.splitlines()[1:]]
        cut = [line for line in lines if re.search(r"\w…", line) or line.endswith("...")]
        assert not cut, (path, result.output)


def test_memory_table_for_the_1b_preset():
    result = runner.invoke(app, ["model", "memory", "--preset", "1b", "--context", "131072"])
    assert result.exit_code == 0, result.output
    assert "1,181,857,792 parameters" in result.output
    assert "27.00 KiB" in result.output and "3.38 GiB" in result.output
    assert "85.9%" in result.output  # against MHA with 16 KV heads


def test_unknown_preset_is_a_clear_usage_error():
    result = runner.invoke(app, ["model", "memory", "--preset", "7b"])
    assert result.exit_code == 2
    assert "unknown preset" in result.output


def test_export_generate_import_round_trip(tmp_path):
    out = tmp_path / "hf"
    result = runner.invoke(app, ["model", "export", str(out), "--preset", "tiny"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["model_type"] == "deepseek_v3"
    result = runner.invoke(
        app,
        [
            "model",
            "generate",
            "--model",
            str(out),
            "--prompt",
            "The pass key is",
            "--max-new-tokens",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "latent cache 4608 B/token" in result.output
    result = runner.invoke(app, ["model", "import", str(out), str(tmp_path / "tiny.pt")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["model", "export", str(tmp_path / "again"), "--checkpoint", str(tmp_path / "tiny.pt")]
    )
    assert result.exit_code == 0, result.output
    first = (out / "model.safetensors").read_bytes()
    assert first == (tmp_path / "again" / "model.safetensors").read_bytes()


def test_icx_runs_without_kopf():
    """The trainer and server images have no kopf: `icx` must not import it at start."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['kopf'] = None\n"
        "from typer.testing import CliRunner\n"
        "from infinitecontext.cli import app\n"
        "for args in (['--help'], ['train', '--help'], ['serve', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output, result.exception)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
