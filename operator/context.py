"""What both controllers reach the world through, built once from the operator's options
(`main.build_context`): the Kubernetes clients, MLflow's default URI, the SLURM client,
and the per-object state the operator keeps between passes."""

from __future__ import annotations

import getpass
import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infinitecontext.operator.backoff import Backoff

if TYPE_CHECKING:  # `icx --help` imports this module for a default: keep it light
    from infinitecontext.operator.kube import DynamicKube, Kube
    from infinitecontext.operator.tenancy import TenancyPolicy
    from infinitecontext.slurm_bridge.client import SlurmClient

DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"


@dataclass
class OperatorContext:
    kube: Kube
    dynamic: DynamicKube
    tracking_uri: str
    """MLflow's URI where a spec names none."""
    slurm_url: str
    slurm_user: str
    """The user SLURM jobs run as (empty: the operator's own user)."""
    prometheus_url: str
    """Where KEDA queries an InferenceService's load."""
    slurm_token_file: str = ""
    """A file holding slurmrestd's JWT (a mounted Secret); empty: `scontrol token`."""
    slurm_job_path: str = ""
    """PATH of jobs on SLURM nodes (where `icx` is installed there)."""
    policy: TenancyPolicy = field(default_factory=lambda: _default_policy())
    """What specs may choose (the admin's `--policy` file; docs/security.md)."""
    workload_poll_seconds: float = 10.0
    inference_poll_seconds: float = 5.0
    remote_cancel_attempts: int = 12
    """Tries of a finalizer's SLURM cancel (about 40 minutes) before it gives up."""
    locks: dict[str, threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    """uid -> the lock that serialises the object's passes."""
    written: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    """uid -> (resourceVersion of our last status write, the status it wrote)."""
    backoff: Backoff = field(default_factory=Backoff)
    """When each object whose backend is unreachable is tried next."""
    _slurm: SlurmClient | None = field(default=None, repr=False)

    def slurm(self) -> SlurmClient:
        """The SLURM client, connected on first use (one per operator)."""
        if self._slurm is None:
            from infinitecontext.slurm_bridge.auth import ScontrolToken, TokenFile, TokenProvider
            from infinitecontext.slurm_bridge.client import connect

            user = self.slurm_user or current_user()
            token: TokenProvider = (
                TokenFile(user, Path(self.slurm_token_file))
                if self.slurm_token_file
                else ScontrolToken(user)
            )
            self._slurm = connect(self.slurm_url, token)
        return self._slurm

    def forget(self, uid: str) -> None:
        """Drop what was kept about a deleted object."""
        self.written.pop(uid, None)
        self.backoff.recovered(uid)


def _default_policy() -> TenancyPolicy:
    from infinitecontext.operator.tenancy import TenancyPolicy

    return TenancyPolicy()


def current_user() -> str:
    """The operator's user name, or its uid where it has none: the image runs as
    uid 65532 without a passwd entry, where `getpass.getuser()` raises KeyError."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
