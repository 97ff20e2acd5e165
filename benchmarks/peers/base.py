"""The interface every peer adapter implements, and helpers that several adapters share."""

from __future__ import annotations

import os
from typing import Any, Callable

from benchmarks.stats import Deadline
from benchmarks.tasks import report_pid

# Map modes of the throughput measurement.
ONE_PER_MESSAGE = "one"      # one task per message
BATCHED = "batched"          # Settings.batch_size tasks per message
DEFAULT = "default"          # the library's own default chunking
MAP_MODES = (ONE_PER_MESSAGE, BATCHED, DEFAULT)

# Seconds a readiness task sleeps before it returns its pid; see tasks.report_pid.
READY_PAUSE = 0.005
# Rounds of readiness tasks before a pool is declared broken.
READY_ROUNDS = 500


class NotSupported(Exception):
    """The peer has no API for this measurement (execnet has no map, for example)."""


class Peer:
    """A set of worker processes of one library, driven through that library's public API.

    Subclasses set the class attributes and implement the methods. A method the
    library has no API for raises NotSupported, and the report shows that cell as n/a.
    """

    # Identifier on the command line (--peers), and the row label in the report.
    key = ""
    label = ""
    # Modules that must be importable, checked without importing them.
    modules: tuple[str, ...] = ()
    # For a pyaddprocs front end: the class the pyaddprocs package must have.
    front_end: str | None = None
    # True for peers that only the throughput measurement runs.
    throughput_only = False
    # The code each measurement times, shown in the report.
    latency_call = ""
    map_calls: dict[str, str] = {}
    transfer_call = ""
    start_call = ""
    # True when the library's default map sends one task per message, so the DEFAULT
    # figure is the ONE_PER_MESSAGE figure and is not measured twice.
    default_is_one_per_message = False

    def __init__(self, settings) -> None:
        self.settings = settings
        # OS pids of the worker processes, filled by start().
        self.worker_pids: list[int] = []

    def start(self, workers: int) -> None:
        """Start ``workers`` workers and return once each one has replied to a call."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every worker and helper process that start() made; safe after a failed start."""
        raise NotImplementedError

    def call(self, index: int, x: int) -> int:
        """Run ``add_one(x)`` on a worker and return its result; ``index`` picks the worker where the API allows."""
        raise NotImplementedError

    def map(self, items: list[int], mode: str) -> list[int]:
        """Run ``add_one`` over ``items`` on all workers, in the chunks that ``mode`` sets."""
        raise NotSupported(f"{self.label} has no map")

    def transfer(self, index: int, array: Any) -> float:
        """Send ``array`` to a worker and return the sum the worker computed."""
        raise NotImplementedError


def chunks(items: list, size: int) -> list[list]:
    """Split ``items`` into consecutive lists of at most ``size`` elements."""
    return [items[start:start + size] for start in range(0, len(items), size)]


def collect_worker_pids(run_round: Callable[[int], list[int]], workers: int, timeout: float) -> list[int]:
    """Return the OS pids of ``workers`` distinct workers of a pool without addressable workers.

    ``run_round(count)`` submits ``count`` tasks ``report_pid(READY_PAUSE)`` at once and
    returns their results. Rounds repeat until ``workers`` distinct pids have replied.
    """
    seen: set[int] = set()
    deadline = Deadline(timeout)
    for _ in range(READY_ROUNDS):
        seen.update(run_round(workers))
        if len(seen) >= workers:
            return sorted(seen)
        if deadline.passed():
            break
    raise TimeoutError(f"timed out: only {len(seen)} of {workers} workers replied within {timeout:g} s")


def readiness_task() -> tuple[Callable, tuple]:
    """Return the function and arguments of one readiness task."""
    return report_pid, (READY_PAUSE,)


def repository_root() -> str:
    """Return the repository root, which contains the ``benchmarks`` package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
