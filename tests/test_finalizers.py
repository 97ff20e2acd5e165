"""Futures freed by the garbage collector, on any thread, at any moment.

A Future's finalizer runs wherever garbage collection happens to run, possibly inside a
send that holds a socket lock. It must never block there or corrupt a message.
"""

from __future__ import annotations

import gc
import threading

from pyaddprocs import remotecall, remotecall_fetch

FUTURES_PER_THREAD = 3000
THREADS = 3


def test_cyclic_futures_freed_during_sends(cluster_workers):
    worker = cluster_workers[0]
    errors: list[BaseException] = []
    old_threshold = gc.get_threshold()

    def churn():
        try:
            for _ in range(FUTURES_PER_THREAD):
                future = remotecall(int, worker, 1)
                cycle = [future]
                cycle.append(cycle)   # only the cyclic collector frees this Future
        except BaseException as err:
            errors.append(err)

    gc.set_threshold(5, 1, 1)
    try:
        threads = [threading.Thread(target=churn) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        still_running = [t for t in threads if t.is_alive()]
    finally:
        gc.set_threshold(*old_threshold)

    assert still_running == []
    assert errors == []
    assert remotecall_fetch(abs, worker, -5) == 5
