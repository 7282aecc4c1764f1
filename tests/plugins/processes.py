"""Helpers for the tests' real service processes: free ports, readiness polling, logs."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from infinitecontext.devtools.cluster import free_ports
from infinitecontext.devtools.waiting import wait_for


def free_port() -> int:
    return free_ports(1)[0]


def http_status(url: str, timeout: float = 30) -> int:
    """The HTTP status `url` answers with; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_http_ok(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float, every: float = 0.5
) -> None:
    """Return once `url` answers 200; fail at once if `process` exits, or after `timeout` s.

    Both errors end with the last lines of the process's `log`.
    """

    def answers_ok() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{tail(log)}")
        return http_status(url, timeout=5) == 200

    wait_for(f"{url} to answer 200", answers_ok, timeout, every, on_timeout=lambda: tail(log))
