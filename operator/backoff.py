"""Retries of an unreachable backend (SLURM, MLflow), per object: the first retry 5 s
after the failure, each next one twice as late, at most 300 s apart.

The controllers' poll timers carry the schedule (`kopf.TemporaryError(delay=…)` sets
when a timer runs next); a pass started by an event (a spec edit) runs at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 300.0


def doubling_delay(attempt: int, first: float) -> float:
    """`first`, then twice as long each attempt (counted from 0), at most
    MAX_DELAY_SECONDS: the one schedule of the operator's retries."""
    return min(first * 2 ** min(attempt, 16), MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class Outage:
    attempts: int
    """Passes in a row that found the backend unreachable."""
    retry_at: float
    """When the next attempt is due (time.monotonic())."""

    @property
    def delay(self) -> float:
        return doubling_delay(self.attempts - 1, FIRST_DELAY_SECONDS)

    def describe(self, error: str) -> str:
        """`error`, with the attempt count and the next retry (a condition's message)."""
        return f"{error} (attempt {self.attempts}; next attempt in {self.delay:g} s)"


@dataclass
class Backoff:
    outages: dict[str, Outage] = field(default_factory=dict)
    """uid → the object's current outage (none: the last pass reached its backends)."""

    def failed(self, uid: str, now: float) -> Outage:
        """Record one more failed attempt of object `uid`; its outage."""
        attempts = self.outages[uid].attempts + 1 if uid in self.outages else 1
        delay = Outage(attempts, now).delay
        outage = self.outages[uid] = Outage(attempts, now + delay)
        return outage

    def recovered(self, uid: str) -> None:
        self.outages.pop(uid, None)

    def wait_left(self, uid: str, now: float) -> float:
        """Seconds until the next attempt of object `uid` is due (0: now)."""
        outage = self.outages.get(uid)
        return max(0.0, outage.retry_at - now) if outage else 0.0

    def poll(self, uid: str, run_pass: Callable[[], None]) -> None:
        """A poll timer's pass over object `uid`: run only when no retry is pending; while
        one is, `kopf.TemporaryError` makes the timer sleep until it is due instead of
        its interval."""
        import kopf  # here: context.py, which `icx --help` imports, builds a Backoff

        if not self.wait_left(uid, time.monotonic()):
            run_pass()
        retry_in = self.wait_left(uid, time.monotonic())
        if retry_in:
            message = f"a backend is unreachable, next attempt in {retry_in:.0f} s"
            raise kopf.TemporaryError(message, delay=retry_in)
