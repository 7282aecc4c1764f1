"""Errors of the SLURM bridge, by what the caller should do about them."""

from __future__ import annotations


class SlurmError(Exception):
    """Base class of every error the bridge raises."""


class SlurmUnavailable(SlurmError):
    """SLURM could not be reached (slurmrestd or slurmctld down, timeout): retry later."""

    retryable = True


class SlurmRejected(SlurmError):
    """SLURM refused the request (bad partition, invalid option …): retrying will not help."""

    retryable = False
    # slurm_errno values behind the refusal, when SLURM named them.
    slurm_errnos: set[int] = set()  # noqa: RUF012 (replaced per instance, never mutated)


class SlurmAuthError(SlurmRejected):
    """The token was refused even after fetching a new one."""


class JobNotFound(SlurmRejected):
    """SLURM does not know the job (never existed, or forgotten after MinJobAge)."""


class InvalidJobRequest(ValueError):
    """A job request that must not reach SLURM (e.g. a control character in a name)."""
