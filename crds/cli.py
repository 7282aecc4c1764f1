"""`icx crds …`: write or check the CRD YAML generated from the pydantic models."""

# typer declares options as argument defaults.
# ruff: noqa: B008

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Custom resource definitions.", no_args_is_help=True)


@app.command("generate")
def generate(
    out: Path | None = typer.Option(None, help="Output directory (default: crds/)."),
    check: bool = typer.Option(False, "--check", help="Fail if the committed YAML is stale."),
) -> None:
    """Write crds/<plural>.infinitecontext.dev.yaml for every kind."""
    from infinitecontext.crds.generate import main

    args = (["--out", str(out)] if out else []) + (["--check"] if check else [])
    raise typer.Exit(main(args))
