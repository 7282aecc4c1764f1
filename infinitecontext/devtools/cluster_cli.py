"""`icx dev cluster up|down|status`: the local control plane of ``devcluster.py``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from infinitecontext.clihelp import WholeSummaries

if TYPE_CHECKING:
    from infinitecontext.devtools.cluster import ClusterLayout

app = typer.Typer(help="Developer tools.", no_args_is_help=True)
cluster_app = typer.Typer(
    help="A local Kubernetes control plane (etcd, kube-apiserver, controllers, kwok) on loopback.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster", cls=WholeSummaries)


@cluster_app.command("up")
def cluster_up(
    cpu_nodes: Annotated[int, typer.Option(help="Simulated nodes without GPUs.")] = 2,
    gpu_nodes: Annotated[
        int, typer.Option(help="Simulated nodes with nvidia.com/gpu capacity.")
    ] = 2,
    gpus_per_node: Annotated[
        int, typer.Option(help="nvidia.com/gpu capacity of each GPU node.")
    ] = 8,
    build: Annotated[bool, typer.Option(help="Run the (incremental) build first.")] = True,
    real_node: Annotated[
        bool,
        typer.Option(
            help="Add one real node (containerd, kubelet, kube-proxy on this machine) "
            "that runs the local images; see docs/cluster.md."
        ),
    ] = False,
    node_image: Annotated[
        list[str] | None,
        typer.Option(
            help="A docker image to load into the real node (repeatable; default: the "
            "operator's image)."
        ),
    ] = None,
) -> None:
    """Build if needed, start the plane and print how to use it (state: $ICX_CLUSTER_DIR)."""
    from infinitecontext.devtools import cluster as devcluster
    from infinitecontext.devtools import realnode

    layout = devcluster.ClusterLayout.from_env()
    if build:
        devcluster.build(layout)
        if real_node:
            realnode.build(layout)
    spec = devcluster.ClusterSpec(
        cpu_nodes=cpu_nodes, gpu_nodes=gpu_nodes, gpus_per_node=gpus_per_node, serve_pods=real_node
    )
    state = devcluster.up(layout, spec)
    typer.echo(f"cluster ready at {state.server} after {state.ready_after_s:.1f} s")
    if real_node:
        images = tuple(node_image) if node_image else realnode.DEFAULT_IMAGES
        node = realnode.up(layout, state, realnode.NodeSpec(images=images))
        typer.echo(
            f"real node {node.name} ({node.node_ip}) Ready after {node.ready_after_s:.1f} s "
            f"(images loaded in {node.images_import_s:.1f} s)"
        )
    typer.echo(f"export KUBECONFIG={layout.admin_kubeconfig}")
    typer.echo(f"export PATH={layout.bin_dir}:$PATH   # kubectl")


@cluster_app.command("down")
def cluster_down() -> None:
    """Stop the plane's processes."""
    from infinitecontext.devtools import cluster as devcluster

    stopped = devcluster.down(devcluster.ClusterLayout.from_env())
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def _known_layouts() -> list[tuple[str, ClusterLayout]]:
    """Where planes live: $ICX_CLUSTER_DIR alone when set, else this command's default
    folder and the quickstart's (`icx demo up` runs its own plane there)."""
    from infinitecontext.devtools import cluster as devcluster
    from infinitecontext.devtools import demo

    layout = devcluster.ClusterLayout.from_env()
    if os.environ.get("ICX_CLUSTER_DIR"):
        return [("", layout)]
    demo_layout = demo.DemoConfig(state_dir=demo.DEFAULT_STATE_DIR).cluster_layout
    return [("", layout), ("the demo's plane, ", demo_layout)]


@cluster_app.command("status")
def cluster_status() -> None:
    """Show each component's process and memory (and a real node's processes), and
    whether the API server is ready (the demo's plane too, unless $ICX_CLUSTER_DIR
    names one)."""
    from infinitecontext.devtools import cluster as devcluster
    from infinitecontext.devtools import realnode

    found = [(label, layout, devcluster.status(layout)) for label, layout in _known_layouts()]
    running = [entry for entry in found if entry[2].server is not None]
    if not running:
        typer.echo("no cluster: run `icx dev cluster up` (or `icx demo up`)")
        raise typer.Exit(1)
    for label, layout, report in running:
        typer.echo(f"{label}server {report.server}  ready={report.ready}")
        typer.echo(f"  export KUBECONFIG={report.admin_kubeconfig}")
        for c in report.components:
            state = "running" if c.running else "STOPPED"
            typer.echo(f"  {c.name:<24} pid {c.pid:<8} {state:<8} {c.rss_mib:7.0f} MiB")
        typer.echo(f"  {'total':<24} {'':<12} {'':<8} {report.rss_mib:7.0f} MiB")
        for name, up in realnode.node_processes(layout).items():
            typer.echo(f"  real node: {name:<13} {'running' if up else 'STOPPED'}")
    if not all(report.ready for _, _, report in running):
        raise typer.Exit(1)


@cluster_app.command("sa-kubeconfig")
def cluster_sa_kubeconfig(
    namespace: Annotated[str, typer.Argument(help="Namespace of the ServiceAccount.")],
    name: Annotated[str, typer.Argument(help="ServiceAccount (created if missing).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the kubeconfig.")],
    duration: Annotated[str, typer.Option(help="Lifetime of the bound token.")] = "24h",
) -> None:
    """Write a kubeconfig that acts as a ServiceAccount (to run the operator locally with
    exactly the RBAC bound to it, for one)."""
    from infinitecontext.devtools import cluster as devcluster

    layout = devcluster.ClusterLayout.from_env()
    devcluster.service_account_kubeconfig(
        layout.kubectl, layout.admin_kubeconfig, namespace, name, out, duration
    )
    typer.echo(f"export KUBECONFIG={out}")
