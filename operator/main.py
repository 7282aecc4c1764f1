"""The operator process: kopf with our settings, Prometheus metrics and health probes.

Two replicas run side by side; kopf peering lets only the highest-priority one act
(each pod picks a random priority at start, as kopf's peering docs advise: equal
priorities would pause both). `--namespace` (repeatable) scopes the operator to those
namespaces, `--all-namespaces` makes it cluster-wide. `--no-cluster-scans` keeps kopf
from listing Namespaces and watching CRDs, the only cluster-scoped reads it makes, so
that a Role in the watched namespace is all the operator needs (deploy/namespaced/).

`run` builds one `OperatorContext` from the options and registers both controllers
(workloads/ and inference/) on a registry of its own, explicitly: importing a module
registers nothing.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any

import kopf

from infinitecontext.operator import logs, registry
from infinitecontext.operator.context import DEFAULT_PROMETHEUS, OperatorContext

DEFAULT_SLURM_URL = "http://127.0.0.1:6820"


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: list[str] = field(default_factory=list)
    clusterwide: bool = False
    metrics_port: int = 8080
    health_port: int = 8081
    peering: str | None = None
    """Peering object name; None runs standalone (one replica, tests)."""
    priority: int | None = None
    tracking_uri: str = ""
    slurm_url: str = DEFAULT_SLURM_URL
    slurm_job_path: str = ""
    """PATH for jobs on SLURM nodes (where `icx` is installed there)."""
    slurm_user: str = ""
    """The user SLURM jobs run as; empty: the operator's own (its uid without a name)."""
    slurm_token_file: str = ""
    """slurmrestd's JWT in a file (a mounted Secret); empty: `scontrol token`."""
    policy_file: str = ""
    """The admin's TenancyPolicy as YAML (docs/security.md); empty: the defaults."""
    prometheus_url: str = DEFAULT_PROMETHEUS
    """The Prometheus KEDA queries for an InferenceService's load."""
    workload_poll_seconds: float = 10.0
    """How often work in flight (TrainingRun, Alignment, Evaluation) is polled."""
    inference_poll_seconds: float = 5.0
    """How often every InferenceService is polled."""
    kubeconfig: str | None = None
    cluster_scans: bool = True
    """kopf lists/watches Namespaces and watches CRDs; off under a namespaced Role."""
    log_format: logs.LogFormat = logs.LogFormat.plain
    """plain text, or one JSON object a line; both name the object a line is about."""
    watch_timeout_s: int = 300
    """The API server ends each watch after this long and kopf watches again (see below);
    whole seconds: it becomes the watch's `timeoutSeconds`, which must be an integer."""


def build_context(options: OperatorOptions) -> OperatorContext:
    """The one context both controllers reach the world through."""
    from kubernetes import config

    from infinitecontext.operator.kube import DynamicKube, Kube
    from infinitecontext.operator.tenancy import TenancyPolicy

    policy = TenancyPolicy.load(options.policy_file) if options.policy_file else TenancyPolicy()
    api_client = (
        config.new_client_from_config(config_file=options.kubeconfig)
        if options.kubeconfig
        else _in_cluster_or_default()
    )
    return OperatorContext(
        kube=Kube(api_client),
        dynamic=DynamicKube(api_client),
        tracking_uri=options.tracking_uri,
        slurm_url=options.slurm_url,
        slurm_user=options.slurm_user,
        slurm_token_file=options.slurm_token_file,
        slurm_job_path=options.slurm_job_path,
        prometheus_url=options.prometheus_url,
        policy=policy.with_tracking_uri(options.tracking_uri),
        workload_poll_seconds=options.workload_poll_seconds,
        inference_poll_seconds=options.inference_poll_seconds,
    )


def register_controllers(ctx: OperatorContext, target: kopf.OperatorRegistry) -> None:
    """Both controllers' handlers, into `target`."""
    from infinitecontext.operator.inference import handlers as inference
    from infinitecontext.operator.workloads import handlers as workloads

    workloads.register(ctx, target)
    inference.register(ctx, target)


def _configure(options: OperatorOptions) -> Any:
    """The on.startup handler that applies our kopf settings."""

    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        prefix = "infinitecontext.dev"
        settings.persistence.finalizer = f"{prefix}/operator"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=prefix, key="last-handled-configuration"
        )
        # Our own Events (kopf.event) are always posted; kopf's log lines only from WARNING.
        settings.posting.level = logging.WARNING
        settings.execution.max_workers = 16
        # A handler that raises is retried after this many seconds (docs/operator.md).
        settings.execution.default_backoff = 15
        _set_watch_timeouts(settings, options.watch_timeout_s)
        # A deleted object's poll timer may be mid-pass when the deletion arrives. kopf then
        # checks whether it has exited only every `cancellation_polling` seconds (60 by
        # default) and holds the finalizer, and so the deletion, until it has: `kubectl
        # delete` took over a minute about half the time. Passes are short: wait for the
        # running one, then re-check often.
        settings.background.instant_exit_timeout = 10
        settings.background.cancellation_polling = 2
        settings.peering.stealth = True
        # Off: no cluster-scoped reads (exact namespaces; CRDs as found at start).
        settings.scanning.disabled = not options.cluster_scans

    return configure


def _set_watch_timeouts(settings: kopf.OperatorSettings, seconds: int) -> None:
    """kopf's defaults let a watch stream live for ever: one that the API server drops
    without the client seeing it (a restart, a CRD's storage re-initialising, a proxy
    closing idle connections) would leave the operator deaf to its objects, deletions
    included. Bounded streams end and are re-opened from the last resourceVersion."""
    settings.watching.server_timeout = seconds
    settings.watching.client_timeout = seconds + 30  # the whole request, server's end included
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60  # kopf's own patches (finalizers, progress)


def _in_cluster_or_default() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def run(options: OperatorOptions) -> None:
    from prometheus_client import start_http_server

    logs.configure(options.log_format, verbose=bool(os.environ.get("ICX_OPERATOR_VERBOSE")))

    if options.kubeconfig:
        from kubernetes.config import kube_config

        # kopf logs in through the kubernetes client's default kubeconfig, which that
        # library reads from $KUBECONFIG once, at import: point both at ours.
        os.environ["KUBECONFIG"] = options.kubeconfig
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = options.kubeconfig
    if options.tracking_uri:
        os.environ.setdefault("MLFLOW_TRACKING_URI", options.tracking_uri)
    registry.configure_client_environment()
    kopf_registry = kopf.OperatorRegistry()
    # kopf logs in the way its default registry would: through the kubernetes client.
    kopf.on.login(registry=kopf_registry)(kopf.login_via_client)
    kopf.on.startup(registry=kopf_registry)(_configure(options))
    context = build_context(options)
    register_controllers(context, kopf_registry)
    from infinitecontext.crds.models import KINDS
    from infinitecontext.operator import metrics

    metrics.initialise([k.kind for k in KINDS])
    start_http_server(options.metrics_port)
    standalone = options.peering is None
    if standalone:  # peering pauses all replicas but one; without it, notice another
        from infinitecontext.operator import lease

        lease.start(context.kube.api_client, options.namespaces)
    priority = options.priority if options.priority is not None else random.randint(1, 2**30)
    kopf.run(
        registry=kopf_registry,
        clusterwide=options.clusterwide,
        namespaces=options.namespaces,
        standalone=standalone,
        peering_name=options.peering,  # kopf makes peering mandatory when a name is given
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{options.health_port}/healthz",
    )
