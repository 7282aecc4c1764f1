"""Waiting for something that happens elsewhere (a server starting, a controller acting):
poll until it holds, or fail saying what was awaited, for how long, and what was last seen.

The one polling loop of the dev tooling and the tests; a fixed sleep where an event can
be awaited is a flaky test on a loaded machine, so everything waits through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout_s: float = 120.0,
    every_s: float = 0.5,
    retry_on: tuple[type[Exception], ...] = (),
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call `check` every `every_s` s until it returns something truthy; return that.

    An exception of a `retry_on` type counts as "not yet" (a daemon restarting, an object
    not created yet); any other exception ends the wait at once. After `timeout_s` s it
    raises TimeoutError naming `what`, the last value or error, and `on_timeout()`'s text
    (for instance the objects' state) when given.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = check()
        except retry_on as error:
            last = error
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            break
        time.sleep(every_s)
    message = f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}"
    if on_timeout is not None:
        message += f"\n{on_timeout()}"
    raise TimeoutError(message)
