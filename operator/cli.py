"""`icx operator …`: run the operator."""

# typer declares options as argument defaults.
# ruff: noqa: B008

from __future__ import annotations

import os

import typer

from infinitecontext.operator.context import DEFAULT_PROMETHEUS
from infinitecontext.operator.logs import LogFormat

app = typer.Typer(help="The InfiniteContext Kubernetes operator.", no_args_is_help=True)


@app.command("run")
def run(
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n", help="Watch only this namespace (repeatable)."
    ),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", help="Watch the whole cluster."),
    metrics_port: int = typer.Option(8080, help="Prometheus /metrics port."),
    health_port: int = typer.Option(8081, help="Liveness/readiness /healthz port."),
    peering: str | None = typer.Option(
        None, help="kopf peering object (KopfPeering/ClusterKopfPeering); unset: standalone."
    ),
    priority: int | None = typer.Option(None, help="Peering priority (default: random)."),
    tracking_uri: str = typer.Option(
        os.environ.get("MLFLOW_TRACKING_URI", ""), help="Default MLflow tracking URI."
    ),
    slurm_url: str = typer.Option(
        os.environ.get("ICX_SLURM_URL", "http://127.0.0.1:6820"), help="slurmrestd URL."
    ),
    slurm_job_path: str = typer.Option(
        os.environ.get("ICX_SLURM_JOB_PATH", ""), help="PATH of jobs on SLURM nodes."
    ),
    slurm_user: str = typer.Option(
        os.environ.get("ICX_SLURM_USER", ""),
        help="User SLURM jobs run as (default: the operator's own, else its uid).",
    ),
    slurm_token_file: str = typer.Option(
        os.environ.get("ICX_SLURM_TOKEN_FILE", ""),
        help="File with slurmrestd's JWT, re-read after a 401 (default: `scontrol token`).",
    ),
    policy: str = typer.Option(
        os.environ.get("ICX_POLICY_FILE", ""),
        help="The admin's tenancy policy, a YAML file (docs/security.md): what specs may "
        "choose. Default: the namespace's default ServiceAccount, no priority class, "
        "no tracking URI but --tracking-uri.",
    ),
    prometheus_url: str = typer.Option(
        os.environ.get("ICX_PROMETHEUS_URL", DEFAULT_PROMETHEUS),
        help="Prometheus that KEDA queries for an InferenceService's load.",
    ),
    poll_seconds: float = typer.Option(
        float(os.environ.get("ICX_OPERATOR_POLL_SECONDS", "10")),
        help="Poll interval of TrainingRuns, Alignments and Evaluations in flight.",
    ),
    inference_poll_seconds: float = typer.Option(
        float(os.environ.get("ICX_INFERENCE_POLL_SECONDS", "5")),
        help="Poll interval of InferenceServices.",
    ),
    kubeconfig: str | None = typer.Option(
        None, help="Kubeconfig (default: in-cluster or ~/.kube)."
    ),
    log_format: LogFormat = typer.Option(
        os.environ.get("ICX_LOG_FORMAT", LogFormat.plain.value),
        help="plain text, or json: one JSON object a line (kopf's), with the object "
        "(apiVersion, kind, namespace, name, uid) of every line logged about one.",
    ),
    cluster_scans: bool = typer.Option(
        True,
        help="Let kopf list/watch Namespaces and CRDs (cluster-scoped). --no-cluster-scans "
        "for a namespaced Role (deploy/namespaced/): exact namespaces only, and CRDs "
        "installed later are noticed at the next start.",
    ),
) -> None:
    """Reconcile TrainingRuns, Alignments, Evaluations and InferenceServices until stopped."""
    from infinitecontext.operator.main import OperatorOptions
    from infinitecontext.operator.main import run as run_operator

    if not namespace and not all_namespaces:
        raise typer.BadParameter("give --namespace NAME (repeatable) or --all-namespaces")
    if not cluster_scans and any(set(n) & set("*?[!") for n in namespace):
        raise typer.BadParameter("--no-cluster-scans needs exact namespace names, not patterns")
    run_operator(
        OperatorOptions(
            namespaces=list(namespace),
            clusterwide=all_namespaces,
            metrics_port=metrics_port,
            health_port=health_port,
            peering=peering,
            priority=priority,
            tracking_uri=tracking_uri,
            slurm_url=slurm_url,
            slurm_job_path=slurm_job_path,
            slurm_user=slurm_user,
            slurm_token_file=slurm_token_file,
            policy_file=policy,
            prometheus_url=prometheus_url,
            workload_poll_seconds=poll_seconds,
            inference_poll_seconds=inference_poll_seconds,
            kubeconfig=kubeconfig,
            cluster_scans=cluster_scans,
            log_format=log_format,
        )
    )
