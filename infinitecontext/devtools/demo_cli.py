"""`icx demo up|down|status`: the quickstart of ``demo.py`` (docs/quickstart.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

if TYPE_CHECKING:
    from infinitecontext.devtools.demo import DemoConfig

app = typer.Typer(
    help="The quickstart: the whole model lifecycle on this machine, through the operator.",
    no_args_is_help=True,
)

PresetOption = Annotated[
    str, typer.Option("--preset", help="tiny (CI, about 5 min) or small (a few minutes more).")
]
NamespaceOption = Annotated[str, typer.Option(help="Namespace of the lifecycle's resources.")]
StateOption = Annotated[
    Path | None, typer.Option(help="State folder (default: .cache/demo/ of the repository).")
]


def _config(preset: str, namespace: str, state_dir: Path | None, **extra: Any) -> DemoConfig:
    from infinitecontext.devtools.demo import DEFAULT_STATE_DIR, DemoConfig, DemoPreset

    if preset not in ("tiny", "small"):
        raise typer.BadParameter("--preset must be tiny or small")
    state = state_dir.resolve() if state_dir else DEFAULT_STATE_DIR
    chosen = cast(DemoPreset, preset)
    return DemoConfig(preset=chosen, namespace=namespace, state_dir=state, **extra)


@app.command("up")
def demo_up(
    preset: PresetOption = "small",
    namespace: NamespaceOption = "icx-demo",
    state_dir: StateOption = None,
    mlflow_port: Annotated[int, typer.Option(help="Preferred MLflow port.")] = 5000,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the lifecycle.")] = 1800,
) -> None:
    """Start (or reuse) everything, run the lifecycle and print the summary."""
    from infinitecontext.devtools import demo

    config = _config(preset, namespace, state_dir, mlflow_port=mlflow_port, timeout_s=timeout)
    try:
        demo.up(config)
    except demo.DemoError as error:
        typer.echo(f"demo failed: {error}", err=True)
        raise typer.Exit(1) from error


@app.command("down")
def demo_down(namespace: NamespaceOption = "icx-demo", state_dir: StateOption = None) -> None:
    """Delete the demo's resources and stop every process the demo started."""
    from infinitecontext.devtools import demo

    report = demo.down(_config("small", namespace, state_dir))
    typer.echo("stopped: " + (", ".join(report.stopped) or "nothing was running"))
    for what in report.left_running:
        typer.echo(f"left running: {what}")


@app.command("status")
def demo_status(namespace: NamespaceOption = "icx-demo", state_dir: StateOption = None) -> None:
    """Each lifecycle resource's phase, Ready reason and progress."""
    from infinitecontext.devtools import demo

    rows = demo.status(_config("small", namespace, state_dir))
    if not rows:
        typer.echo("the demo is not running: icx demo up")
    for row in rows:
        typer.echo(f"{row.kind:<17} {row.name:<16} {row.phase:<12} {row.reason:<20} {row.progress}")


if __name__ == "__main__":
    app()
