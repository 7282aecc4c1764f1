"""`icx`: the command line of InfiniteContext.

Each subcommand group lives beside the code it drives (``model/cli.py``,
``slurm_bridge/cli.py`` …) and is registered here. Commands only parse arguments
and call one library function; heavy imports (torch, vLLM) happen inside the
commands, so ``icx --help`` and the operator image stay light.
"""

from __future__ import annotations

import typer

from infinitecontext.clihelp import WholeSummaries
from infinitecontext.crds.cli import app as crds_app
from infinitecontext.devtools.cluster_cli import app as dev_app
from infinitecontext.devtools.demo_cli import app as demo_app
from infinitecontext.devtools.provision import app as provision_app
from infinitecontext.model.cli import app as model_app
from infinitecontext.operator.cli import app as operator_app
from infinitecontext.operator.inference.cli import rollback as rollback_command
from infinitecontext.server.cli import bench_app
from infinitecontext.server.cli import serve as serve_command
from infinitecontext.slurm_bridge.cli import app as slurm_app
from infinitecontext.trainer.cli import eval_app, train_app

app = typer.Typer(
    name="icx",
    help="InfiniteContext: train, align, evaluate and serve long-context MLA models.",
    no_args_is_help=True,
    cls=WholeSummaries,
    pretty_exceptions_enable=False,
    # Click's plain help wraps long option names and texts, where rich's panels cut them
    # with "…" in an 80-column terminal; wider terminals get up to 120 columns.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)

# Subcommand groups, one line each (keep this block sorted by name).
app.add_typer(bench_app, name="bench", cls=WholeSummaries)
app.add_typer(crds_app, name="crds", cls=WholeSummaries)
app.add_typer(demo_app, name="demo", cls=WholeSummaries)
app.add_typer(dev_app, name="dev", cls=WholeSummaries)
app.add_typer(eval_app, name="eval", cls=WholeSummaries)
app.add_typer(model_app, name="model", cls=WholeSummaries)
app.add_typer(operator_app, name="operator", cls=WholeSummaries)
app.add_typer(provision_app, name="provision", cls=WholeSummaries)
app.add_typer(slurm_app, name="slurm", cls=WholeSummaries)
app.add_typer(train_app, name="train", cls=WholeSummaries)
app.command("rollback")(rollback_command)
app.command("serve")(serve_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
