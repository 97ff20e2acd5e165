"""Workers and masters that die, hang or fail to start.

Every test here starts its own workers or its own master script, because it kills
or breaks them.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time

import pytest

from pyaddprocs import (
    LaunchError,
    ProcessExitedError,
    RemoteChannel,
    WorkerTimeoutError,
    myid,
    remotecall,
    remotecall_fetch,
    worker_timeout,
    workers,
)
from tests import worker_functions
from tests.support import ScriptRun, command_line, is_running, kill_if_command_matches, wait_until_exited

# Seconds any single result in this module may take before the test fails.
RESULT_TIMEOUT = 30


def test_killed_worker_raises_process_exited(spawn_workers, cluster_workers):
    (worker,) = spawn_workers(1)
    worker_ospid = remotecall_fetch(os.getpid, worker)
    started = RemoteChannel(maxsize=1)
    future = remotecall(worker_functions.announce_then_sleep, worker, started, 60)
    assert started.take(timeout=RESULT_TIMEOUT) == worker

    os.kill(worker_ospid, signal.SIGKILL)
    killed_at = time.monotonic()
    with pytest.raises(ProcessExitedError) as caught:
        future.result(timeout=RESULT_TIMEOUT)
    seconds_to_error = time.monotonic() - killed_at

    assert seconds_to_error < 5, f"ProcessExitedError came {seconds_to_error:.1f} s after SIGKILL"
    assert str(worker) in str(caught.value)
    with pytest.raises(ProcessExitedError):
        remotecall(myid, worker).result(timeout=RESULT_TIMEOUT)
    # The rest of the cluster keeps working.
    assert remotecall_fetch(myid, cluster_workers[0]) == cluster_workers[0]


def test_killed_worker_leaves_workers_list(spawn_workers):
    (worker,) = spawn_workers(1)
    worker_ospid = remotecall_fetch(os.getpid, worker)

    os.kill(worker_ospid, signal.SIGKILL)

    deadline = time.monotonic() + 10
    while worker in workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker not in workers()


MASTER_THAT_WAITS_SCRIPT = textwrap.dedent(
    """
    import json
    import os
    import time

    from pyaddprocs import addprocs, remotecall_fetch

    pids = addprocs(2)
    ospids = [remotecall_fetch(os.getpid, pid) for pid in pids]
    print(json.dumps({"worker_ospids": ospids}), flush=True)
    time.sleep(120)
    """
)


def test_killed_master_leaves_no_workers(scratch_dir):
    script = scratch_dir / "master_that_waits.py"
    script.write_text(MASTER_THAT_WAITS_SCRIPT)
    worker_command_lines: dict[int, str] = {}

    with ScriptRun(script, cwd=scratch_dir) as master:
        try:
            line = master.wait_for_line(r'^\{"worker_ospids"', timeout=60)
            worker_ospids = json.loads(line.text)["worker_ospids"]
            worker_command_lines = {ospid: command_line(ospid) for ospid in worker_ospids}
            assert len(worker_ospids) == 2
            assert all(is_running(ospid) for ospid in worker_ospids)

            os.kill(master.process.pid, signal.SIGKILL)
            master.process.wait(timeout=10)

            survivors = wait_until_exited(worker_ospids, timeout=10)
            assert survivors == [], f"workers {survivors} still run 10 s after the master was killed"
        finally:
            for ospid, recorded in worker_command_lines.items():
                kill_if_command_matches(ospid, recorded)


def test_silent_worker_raises_worker_timeout(spawn_workers, scratch_dir, monkeypatch):
    monkeypatch.setenv("PYADDPROCS_WORKER_TIMEOUT", "2")
    pid_file = scratch_dir / "silent_worker.pid"
    # Stands in for the interpreter: it ignores its arguments and never prints the announcement.
    silent_python = scratch_dir / "silent_python"
    silent_python.write_text(f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 60\n')
    silent_python.chmod(0o755)
    workers_before = workers()

    assert worker_timeout() == 2
    with pytest.raises(WorkerTimeoutError) as caught:
        spawn_workers(1, exename=str(silent_python))

    assert isinstance(caught.value, LaunchError)
    assert workers() == workers_before
    assert pid_file.exists()
    silent_ospid = int(pid_file.read_text())
    try:
        assert wait_until_exited([silent_ospid], timeout=10) == [], "the timed-out launch was left running"
    finally:
        kill_if_command_matches(silent_ospid, "sleep 60")


@pytest.mark.parametrize(
    ("startup_code", "expected_output"),
    [
        ("print('boom on stdout'); raise SystemExit(3)", "boom on stdout"),
        ("import sys; sys.stderr.write('boom on stderr\\n'); raise SystemExit(3)", "boom on stderr"),
    ],
    ids=["stdout", "stderr"],
)
def test_exiting_worker_raises_launch_error(spawn_workers, monkeypatch, startup_code, expected_output):
    # Long enough that an exit which is only noticed through the timeout fails the test.
    monkeypatch.setenv("PYADDPROCS_WORKER_TIMEOUT", "60")
    workers_before = workers()

    with pytest.raises(LaunchError) as caught:
        spawn_workers(1, exeflags=["-c", startup_code])

    assert expected_output in str(caught.value)
    assert not isinstance(caught.value, WorkerTimeoutError)
    assert workers() == workers_before
