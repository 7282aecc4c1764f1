"""Job logs: SLURM's filename patterns expanded, and the tail of each file.

The files are read where the bridge runs, so it must share the jobs' filesystem
(as login and controller nodes normally do).
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

_PATTERN = re.compile(r"%(%|j|x|u|A|a|N|n|t|s)")


def expand_output_path(pattern: str, job_id: int, name: str, user: str, node: str) -> str:
    """Expand the sbatch filename patterns a log path can hold (`man sbatch`)."""
    values = {"%": "%", "j": str(job_id), "x": name, "u": user, "A": str(job_id)}
    values |= {"a": "4294967294", "N": node, "n": "0", "t": "0", "s": "batch"}
    return _PATTERN.sub(lambda match: values[match.group(1)], pattern)


def tail_lines(path: str, lines: int) -> str:
    """The last `lines` lines of a file, or "" when it does not exist (yet)."""
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except FileNotFoundError:
        return ""
