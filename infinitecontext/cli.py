"""`icx`: the command line of InfiniteContext.

Each subcommand group lives beside the code it drives (``model/cli.py``,
``slurm_bridge/cli.py`` …) and is registered here. Commands only parse arguments
and call one library function; heavy imports (torch, vLLM) happen inside the
commands, so ``icx --help`` and the operator image stay light.
"""

from __future__ import annotations

import typer

from infinitecontext.devcluster_cli import app as dev_app
from infinitecontext.model.cli import app as model_app

app = typer.Typer(
    name="icx",
    help="InfiniteContext: train, align, evaluate and serve long-context MLA models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Subcommand groups, one line each (keep this block sorted by name).
app.add_typer(dev_app, name="dev")
app.add_typer(model_app, name="model")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
