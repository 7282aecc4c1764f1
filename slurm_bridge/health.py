"""Is the local one-node cluster ready? `python -m infinitecontext.slurm_bridge.health`
exits 0 when slurmctld, this host's slurmd and slurmrestd (with a JWT) all answer;
`make slurm-cluster` runs the Ansible roles only when it does not."""

from __future__ import annotations

import socket
import subprocess
import sys

from infinitecontext.slurm_bridge.client import DEFAULT_REST_URL
from infinitecontext.slurm_bridge.errors import SlurmError
from infinitecontext.slurm_bridge.rest import RestClient

_READY_NODE_STATES = {"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing"}


def _command_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def cluster_problems(url: str = DEFAULT_REST_URL) -> list[str]:
    """What keeps the local cluster from taking jobs; empty when it is healthy."""
    ping = _command_output(["scontrol", "ping"])
    if ping is None or "UP" not in ping:
        return ["slurmctld does not answer `scontrol ping`"]
    node = socket.gethostname().split(".")[0]
    state = (_command_output(["sinfo", "-h", "-n", node, "-o", "%t"]) or "").strip()
    problems = [] if state in _READY_NODE_STATES else [f"node {node} is {state or 'missing'}"]
    client = RestClient(url)
    try:
        if not client.ping():
            problems.append("slurmrestd answers but slurmctld is not UP")
    except SlurmError as err:
        problems.append(f"slurmrestd: {err}")
    finally:
        client.close()
    return problems


def main() -> int:
    problems = cluster_problems()
    for problem in problems:
        print(f"slurm health: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
