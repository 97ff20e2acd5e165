"""SSHManager: workers on other machines, started over SSH."""

from __future__ import annotations

import queue
from typing import Any

from .base import ClusterManager, WorkerConfig


class SSHManager(ClusterManager):
    """Starts workers on the machines of ``machines`` over SSH."""

    def __init__(self, machines: list[Any]) -> None:
        self.machines = list(machines)

    def __repr__(self) -> str:
        return f"SSHManager(machines={self.machines!r})"

    def default_params(self) -> dict[str, Any]:
        """Return SSHManager's own keywords with their defaults."""
        return {
            "tunnel": False, "multiplex": False, "ssh": "ssh", "sshflags": (), "max_parallel": 10,
            "shell": "posix", "cmdline_cookie": False,
        }

    def launch(self, params: dict[str, Any], launched: "queue.Queue[WorkerConfig]") -> None:
        """Start the workers over SSH."""
        # TODO: SSH launch (machine specs, shells, max_parallel, tunnels) is not built yet.
        raise NotImplementedError("SSH launch is not implemented yet; use addprocs(n) for local workers")

    def manage(self, pid: int, config: WorkerConfig, op: str) -> None:
        """Nothing to do yet for SSH workers."""
