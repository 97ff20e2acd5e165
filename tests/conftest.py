"""Shared fixtures: a session-wide pair of local workers, per-test workers and temporary files.

Workers inherit this process's environment, so the repository root is put on
PYTHONPATH before any worker starts. That lets workers import ``pyaddprocs`` and
``tests.worker_functions`` by name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import (
    REPO_ROOT,
    command_line,
    descendant_pids,
    kill_if_command_matches,
    wait_until_exited,
)

_python_path = os.environ.get("PYTHONPATH", "")
if str(REPO_ROOT) not in _python_path.split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), _python_path) if p)

import pyaddprocs  # noqa: E402  (imported after PYTHONPATH is set, for the workers' sake)

# Number of workers shared by the whole session. Two keep the suite fast on a 2-core
# machine and are enough for every test that needs two distinct workers.
SESSION_WORKER_COUNT = 2

# Seconds that teardown waits for removed workers to exit before killing them.
WORKER_EXIT_TIMEOUT = 15


class _StartedWorkers:
    """Workers that one fixture started, with their OS pids for a last-resort kill."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        # OS pid -> command line when it was seen, checked again before a kill.
        self.command_lines: dict[int, str] = {}

    def add(self, n: int | None = None, **kwargs) -> list[int]:
        children_before = set(descendant_pids(os.getpid()))
        try:
            pids = pyaddprocs.addprocs(n, **kwargs)
        finally:
            for ospid in set(descendant_pids(os.getpid())) - children_before:
                self.command_lines[ospid] = command_line(ospid)
        self.pids.extend(pids)
        return pids

    def remove_all(self) -> None:
        try:
            still_listed = [pid for pid in self.pids if pid in pyaddprocs.workers()]
            if still_listed:
                pyaddprocs.rmprocs(*still_listed, waitfor=WORKER_EXIT_TIMEOUT)
        finally:
            ospids = list(self.command_lines)
            for ospid in wait_until_exited(ospids, timeout=WORKER_EXIT_TIMEOUT):
                kill_if_command_matches(ospid, self.command_lines[ospid])
            wait_until_exited(ospids, timeout=5)


@pytest.fixture(scope="session")
def cluster_workers():
    """Start two local workers for the session and return their pids."""
    started = _StartedWorkers()
    try:
        started.add(SESSION_WORKER_COUNT)
        yield list(started.pids)
    finally:
        started.remove_all()


@pytest.fixture
def spawn_workers():
    """Return a function that starts local workers for one test and removes them afterwards.

    Tests that kill or remove workers use this instead of ``cluster_workers``.
    """
    started = _StartedWorkers()
    try:
        yield started.add
    finally:
        started.remove_all()


@pytest.fixture
def scratch_dir():
    """Return a temporary directory that is deleted after the test, also when it fails."""
    path = Path(tempfile.mkdtemp(prefix="pyaddprocs-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
