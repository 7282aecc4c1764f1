"""`icx train sft|dpo` and `icx eval passkey|judge`: parse arguments, call one function.

Everything heavy (torch, TRL, vLLM clients, even the recipe's YAML loader) is
imported inside the commands, so `icx --help` stays light in the operator image.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(help="Train: SFT (FSDP2, torchrun) and DPO (TRL).", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate: passkey/NIAH grid and LLM-as-a-judge.", no_args_is_help=True)

ConfigOption = Annotated[
    Path, typer.Option("--recipe", "--config", help="A YAML recipe (recipes/*.yaml).")
]
OutputOption = Annotated[
    Path | None, typer.Option(help="Overrides the recipe's output_dir (also: $ICX_OUTPUT_DIR).")
]


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


@train_app.command()
def sft(
    config: ConfigOption,
    output_dir: OutputOption = None,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint.")] = True,
    nproc_per_node: Annotated[
        int, typer.Option(help="Processes to start through torchrun (GPUs, or CPU ranks).")
    ] = 1,
    stop_at_step: Annotated[
        int | None, typer.Option(help="Stop after this step's checkpoint (pre-emption test).")
    ] = None,
    run_id_file: Annotated[Path | None, typer.Option(help="Also write the run id here.")] = None,
) -> None:
    """Supervised training; the same command on CPU (gloo) and on one or many GPUs (NCCL)."""
    from infinitecontext.trainer.launch import relaunch_under_torchrun

    relaunch_under_torchrun(nproc_per_node)  # returns only inside a torchrun worker
    _logging()
    from infinitecontext.trainer.launch import load_sft_recipe
    from infinitecontext.trainer.sft import run_sft

    result = run_sft(load_sft_recipe(config, output_dir), resume, stop_at_step)
    if run_id_file and result.run_id:
        run_id_file.write_text(result.run_id + "\n")


@train_app.command()
def dpo(config: ConfigOption, output_dir: OutputOption = None) -> None:
    """DPO with TRL on an exported model; pairs built from the synthetic tasks."""
    _logging()
    from infinitecontext.trainer.dpo import run_dpo
    from infinitecontext.trainer.launch import load_dpo_recipe

    run_dpo(load_dpo_recipe(config, output_dir))


@eval_app.command()
def passkey(
    out: Annotated[
        Path, typer.Option("--out", "--output-dir", help="Directory for the JSON and heatmap.")
    ],
    model: Annotated[
        Path | None, typer.Option("--model", "--model-dir", help="A HF model directory.")
    ] = None,
    endpoint: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL (…/v1).")] = None,
    served_model: Annotated[str | None, typer.Option(help="The endpoint's model name.")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Tokenizer dir (endpoint)")] = None,
    config: Annotated[
        Path | None, typer.Option("--recipe", "--config", help="An EvalSpec YAML (grid, trials …).")
    ] = None,
    lengths: Annotated[str | None, typer.Option(help="Comma list, e.g. 1024,4096.")] = None,
    depths: Annotated[str | None, typer.Option(help="Comma list in [0,1].")] = None,
    trials: Annotated[int | None, typer.Option(help="Samples per cell.")] = None,
    task: Annotated[
        str | None, typer.Option(help="passkey, multikey, multivalue or multiquery.")
    ] = None,
    templates: Annotated[
        str | None,
        typer.Option(help="fixed, varied (the training family) or heldout (never trained on)."),
    ] = None,
    haystack: Annotated[
        str | None, typer.Option(help="Natural-text JSONL for the haystacks (corpus.py).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="The evaluation stream's seed.")] = None,
    yarn_factor: Annotated[float | None, typer.Option(help="YaRN factor at load time.")] = None,
    mlflow_run_id: Annotated[str | None, typer.Option(help="Log into this run.")] = None,
    run_name: Annotated[str | None, typer.Option(help="Name of a new MLflow run.")] = None,
) -> None:
    """Passkey / NIAH accuracy over lengths × depths: JSON, heatmap PNG, MLflow metrics."""
    _logging()
    from infinitecontext.trainer.evaluate import run_eval
    from infinitecontext.trainer.launch import eval_spec
    from infinitecontext.trainer.recipe import MlflowSpec

    spec = eval_spec(config, lengths, depths, trials, task, yarn_factor, templates, haystack, seed)
    mlflow = MlflowSpec(run_name=run_name)
    result = run_eval(spec, out, model, endpoint, served_model, tokenizer, mlflow, mlflow_run_id)
    for length, accuracy in result.by_length.items():
        typer.echo(f"{result.task} {length:>7} tokens: {100 * accuracy:5.1f}%")


@eval_app.command()
def perplexity(
    model: Annotated[Path, typer.Option("--model", help="A HF model directory.")],
    text: Annotated[Path, typer.Option(help='JSONL of {"text": …} (corpus.py heldout.jsonl).')],
    seq_len: Annotated[int, typer.Option(help="Tokens scored per record.")] = 1024,
    max_records: Annotated[int, typer.Option(help="Records read from the file's start.")] = 256,
) -> None:
    """Next-token perplexity on held-out natural text."""
    import json

    from infinitecontext.trainer.evaluate import perplexity as measure

    typer.echo(json.dumps(measure(model, text, seq_len, max_records)))


@eval_app.command()
def judge(
    endpoint: Annotated[str, typer.Option(help="The judge: OpenAI-compatible base URL (…/v1).")],
    served_model: Annotated[str, typer.Option(help="The judge's model name.")],
    items: Annotated[
        Path, typer.Option(help="JSONL: instruction, response[, reference_answer, rubric].")
    ],
    out: Annotated[Path, typer.Option(help="JSON report to write.")],
    api: Annotated[str, typer.Option(help="completions or chat.")] = "completions",
    guided: Annotated[bool, typer.Option(help="Constrain output by regex (vLLM).")] = False,
    mlflow_run_id: Annotated[str | None, typer.Option(help="Log into this run.")] = None,
) -> None:
    """Prometheus-style absolute grading (1–5 with feedback); unparsable outputs counted."""
    _logging()
    from infinitecontext.trainer.launch import run_judge_file

    summary = run_judge_file(endpoint, served_model, items, out, api, guided, mlflow_run_id)
    typer.echo(summary)
