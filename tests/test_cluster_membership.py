"""Cluster membership queries, rmprocs, and worker output forwarded to the master."""

from __future__ import annotations

import os
import textwrap

from pyaddprocs import myid, myrole, nprocs, nworkers, procs, remotecall_fetch, rmprocs, workers
from tests.support import ScriptRun, run_script, wait_until_exited

QUERIES_SCRIPT = textwrap.dedent(
    """
    import json
    import os

    from pyaddprocs import (
        addprocs, myid, myrole, nprocs, nworkers, procs, remotecall_fetch, rmprocs, workers,
    )


    def snapshot():
        return {
            "procs": procs(),
            "workers": workers(),
            "nprocs": nprocs(),
            "nworkers": nworkers(),
            "myid": myid(),
            "myrole": myrole(),
        }


    before = snapshot()
    added = addprocs(2)
    during = snapshot()
    on_workers = [
        {
            "myid": remotecall_fetch(myid, pid),
            "myrole": remotecall_fetch(myrole, pid),
            "procs_of_self": remotecall_fetch(procs, pid, pid),
        }
        for pid in added
    ]
    rmprocs(*added, waitfor=15)
    after = snapshot()
    added_later = addprocs(1)
    rmprocs(*added_later, waitfor=15)
    print(json.dumps({
        "before": before,
        "added": added,
        "during": during,
        "on_workers": on_workers,
        "after": after,
        "added_later": added_later,
    }), flush=True)
    """
)

MASTER_ONLY = {"procs": [1], "workers": [1], "nprocs": 1, "nworkers": 1, "myid": 1, "myrole": "master"}


def test_cluster_queries_before_and_after_rmprocs(scratch_dir):
    script = scratch_dir / "cluster_queries.py"
    script.write_text(QUERIES_SCRIPT)

    report = run_script(script, timeout=90, cwd=scratch_dir).last_json_line()

    # With no workers, Julia's workers() returns [1] and nworkers() returns 1.
    assert report["before"] == MASTER_ONLY
    assert report["added"] == [2, 3]
    assert report["during"] == {
        "procs": [1, 2, 3],
        "workers": [2, 3],
        "nprocs": 3,
        "nworkers": 2,
        "myid": 1,
        "myrole": "master",
    }
    for pid, on_worker in zip([2, 3], report["on_workers"]):
        assert on_worker["myid"] == pid
        assert on_worker["myrole"] == "worker"
        assert pid in on_worker["procs_of_self"]
    assert report["after"] == MASTER_ONLY
    # Pids are never reused.
    assert report["added_later"] == [4]


def test_rmprocs_ends_worker_processes(spawn_workers, cluster_workers):
    procs_before = procs()
    workers_before = workers()

    added = spawn_workers(2)

    assert len(added) == 2
    assert min(added) > max(procs_before)
    assert procs() == sorted(procs_before + added)
    assert workers() == sorted(workers_before + added)
    assert nprocs() == len(procs_before) + 2
    assert nworkers() == len(workers_before) + 2
    assert myid() == 1
    assert myrole() == "master"
    worker_ospids = [remotecall_fetch(os.getpid, pid) for pid in added]

    rmprocs(*added, waitfor=15)

    assert procs() == procs_before
    assert workers() == workers_before
    assert nprocs() == len(procs_before)
    assert nworkers() == len(workers_before)
    still_running = wait_until_exited(worker_ospids, timeout=10)
    assert still_running == [], f"worker processes {still_running} still run after rmprocs"
    (added_later,) = spawn_workers(1)
    assert added_later > max(added)


PRINTING_WORKER_SCRIPT = textwrap.dedent(
    """
    import subprocess
    import time

    from pyaddprocs import addprocs, remotecall_fetch, rmprocs

    (worker,) = addprocs(1)
    print(f"CALLING {worker}", flush=True)
    remotecall_fetch(print, worker, "hello from the worker")
    remotecall_fetch(subprocess.run, worker, ["echo", "hello from the worker's child"])
    # Print nothing for a while, so a line that shows up only when the master flushes
    # its own stdout arrives too late.
    time.sleep(4)
    print("DONE", flush=True)
    rmprocs(worker, waitfor=15)
    """
)


def test_worker_output_reaches_master_stdout(scratch_dir):
    script = scratch_dir / "printing_worker.py"
    script.write_text(PRINTING_WORKER_SCRIPT)

    with ScriptRun(script, cwd=scratch_dir) as master:
        calling = master.wait_for_line(r"^CALLING \d+$", timeout=60)
        worker = int(calling.text.split()[1])
        from_worker = master.wait_for_line(rf"From worker {worker}:.*hello from the worker$", timeout=10)
        from_child = master.wait_for_line(
            rf"From worker {worker}:.*hello from the worker's child$", timeout=10
        )
        master.wait_for_line(r"^DONE$", timeout=30)
        assert master.finish(timeout=30) == 0, master.output()

    worker_delay = from_worker.received_at - calling.received_at
    child_delay = from_child.received_at - calling.received_at
    assert worker_delay < 1.0, f"the worker's line reached the master after {worker_delay:.2f} s"
    assert child_delay < 1.0, f"the child's line reached the master after {child_delay:.2f} s"
