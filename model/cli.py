"""`icx model …`: inspect, run and convert MLA models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from infinitecontext.model.config import PRESETS, ConfigError, MLAConfig, preset
from infinitecontext.model.memory import human_bytes, memory_report, saving

app = typer.Typer(help="Inspect, run and convert MLA models.", no_args_is_help=True)
console = Console()

PRESET_HELP = f"Model preset: {', '.join(PRESETS)}."


@app.command()
def memory(
    preset_name: Annotated[str, typer.Option("--preset", help=PRESET_HELP)] = "1b",
    context: Annotated[int, typer.Option(help="Context length in tokens.")] = 131072,
    bytes_per_value: Annotated[int, typer.Option(help="2 for bf16, 1 for fp8.")] = 2,
) -> None:
    """Parameters, weights and KV-cache size: MLA against MHA and GQA of the same model."""
    report = memory_report(_preset(preset_name), context, bytes_per_value)
    console.print(
        f"[bold]{preset_name}[/]: {report.parameters:,} parameters, "
        f"weights {human_bytes(report.weight_bytes)} at {bytes_per_value} B/value"
    )
    mla = report.lines[0].bytes_per_token
    table = Table(title=f"KV cache at {context:,} tokens")
    for column in ("cache", "per token", f"at {context:,}", "MLA saves"):
        table.add_column(column, justify="left" if column == "cache" else "right")
    for line in report.lines:
        saved = "—" if line.bytes_per_token == mla else f"{saving(mla, line.bytes_per_token):.1f}%"
        table.add_row(
            line.name,
            human_bytes(line.bytes_per_token),
            human_bytes(line.bytes_per_token * context),
            saved,
        )
    console.print(table)


@app.command()
def generate(
    prompt: Annotated[list[str], typer.Option(help="Prompt text; repeat for a batch.")],
    preset_name: Annotated[str, typer.Option("--preset", help=PRESET_HELP)] = "tiny",
    model_dir: Annotated[Path | None, typer.Option("--model", help="A HF model directory.")] = None,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> None:
    """Generate with the latent KV cache from a model directory or a random preset."""
    from infinitecontext.model.workflows import generate_text

    for text, completion, stats in generate_text(
        prompt, model_dir, preset_name, max_new_tokens, temperature, top_p, seed
    ):
        console.print(f"[bold]{text!r}[/] → {completion!r}")
        console.print(f"  [dim]{stats}[/]")


@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Argument(help="Directory to write (HF DeepseekV3 layout).")],
    preset_name: Annotated[str, typer.Option("--preset", help=PRESET_HELP)] = "tiny",
    checkpoint: Annotated[Path | None, typer.Option(help="A native checkpoint (.pt).")] = None,
    seed: int = 0,
) -> None:
    """Write a HF directory (config, safetensors, tokenizer) from a checkpoint or a preset."""
    from infinitecontext.model.workflows import export_model

    path = export_model(out, preset_name, checkpoint, seed)
    console.print(f"exported to {path}")


@app.command("import")
def import_cmd(
    source: Annotated[Path, typer.Argument(help="A HF DeepseekV3 directory.")],
    out: Annotated[Path, typer.Argument(help="Native checkpoint file to write (.pt).")],
) -> None:
    """Convert a HF DeepseekV3 directory into a native checkpoint."""
    from infinitecontext.model.workflows import import_model

    cfg = import_model(source, out)
    console.print(f"imported {source} ({cfg.num_hidden_layers} layers) to {out}")


def _preset(name: str) -> MLAConfig:
    try:
        return preset(name)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--preset") from None
