"""JWT tokens for slurmrestd: minted locally by `scontrol token`, or handed over by a
Kubernetes Secret as a mounted file that may be rotated."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from infinitecontext.slurm_bridge.errors import SlurmRejected, SlurmUnavailable


class TokenProvider(Protocol):
    username: str

    def token(self, refresh: bool = False) -> str:
        """A token for `username`; `refresh` asks for a new one after a 401."""
        ...


@dataclass
class TokenFile:
    """A token in a file (a mounted Secret): read again on every refresh."""

    username: str
    path: Path
    _cached: str | None = field(default=None, repr=False)

    def token(self, refresh: bool = False) -> str:
        if refresh or self._cached is None:
            self._cached = self.path.read_text().strip()
        return self._cached


@dataclass
class ScontrolToken:
    """Tokens from `scontrol token` (needs root or SlurmUser on a cluster host)."""

    username: str
    lifespan_s: int = 3600
    _value: str | None = field(default=None, repr=False)
    _expires_at: float = field(default=0.0, repr=False)

    def token(self, refresh: bool = False) -> str:
        # Renew well before expiry so that a token never dies in flight.
        if refresh or self._value is None or time.monotonic() > self._expires_at:
            self._value = mint_token(self.username, self.lifespan_s)
            self._expires_at = time.monotonic() + self.lifespan_s * 0.8
        return self._value


def mint_token(username: str, lifespan_s: int) -> str:
    argv = ["scontrol", "token", f"username={username}", f"lifespan={lifespan_s}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmUnavailable(f"scontrol token failed: {err}") from err
    if done.returncode != 0 or "SLURM_JWT=" not in done.stdout:
        message = (done.stderr or done.stdout).strip()
        if "Unable to contact" in message or "Socket timed out" in message:
            raise SlurmUnavailable(f"scontrol token: {message}")
        raise SlurmRejected(f"scontrol token for {username!r} failed: {message}")
    return done.stdout.strip().split("SLURM_JWT=", 1)[1].split()[0]
