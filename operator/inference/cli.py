"""`icx rollback NAME [--to-revision N]`: roll an InferenceService back, declaratively."""

# typer declares options as argument defaults.

from __future__ import annotations

import typer


def rollback(
    name: str = typer.Argument(..., help="InferenceService name."),
    to_revision: int | None = typer.Option(
        None,
        "--to-revision",
        help="Revision to return to (default: the stable one after a failed rollout, "
        "else the previous stable one).",
    ),
    namespace: str = typer.Option("default", "--namespace", "-n"),
    kubeconfig: str | None = typer.Option(None, help="Kubeconfig (default: ~/.kube/config)."),
) -> None:
    """Set the spec back to a recorded revision; the operator rolls it out like any
    spec change. With GitOps, revert the commit instead."""
    from infinitecontext.operator.inference.kube import rollback_service

    try:
        target = rollback_service(name, namespace, to_revision, kubeconfig)
    except ValueError as error:
        typer.echo(f"icx rollback: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{namespace}/{name}: spec set back to revision {target.revision} ({target.model_version})"
    )
