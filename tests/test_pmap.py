"""pmap over the default pool and over an explicit WorkerPool."""

from __future__ import annotations

import operator
import time

import pytest

from pyaddprocs import WorkerPool, myid, pmap, remotecall, remotecall_fetch
from tests import worker_functions
from tests.worker_functions import power


@pytest.mark.parametrize("batch_size", [1, 3, 50])
def test_pmap_batches_return_ordered_results(cluster_workers, batch_size):
    values = list(range(40))

    results = pmap(lambda value: value * value, values, batch_size=batch_size)

    assert results == [value * value for value in values]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_pmap_zips_several_iterables(cluster_workers, batch_size):
    results = pmap(operator.add, range(10), range(100, 110), batch_size=batch_size)

    assert results == [2 * value + 100 for value in range(10)]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_pmap_spreads_work_over_workers(cluster_workers, batch_size):
    def slow_myid(_):
        time.sleep(0.2)
        return myid()

    ran_on = pmap(slow_myid, range(8), batch_size=batch_size)

    assert len(ran_on) == 8
    assert set(ran_on) == set(cluster_workers)


def test_pmap_empty_input_returns_empty_list(cluster_workers):
    assert pmap(lambda value: value, []) == []


def test_pmap_on_error_replaces_failed_items(cluster_workers):
    def invert(value):
        return 1 / value

    results = pmap(invert, [1, 0, 2], on_error=lambda error: "failed")

    assert results == [1.0, "failed", 0.5]


def test_worker_pool_limits_pmap_workers(cluster_workers):
    chosen = cluster_workers[1]
    pool = WorkerPool([chosen])

    ran_on = pmap(lambda _: myid(), range(6), pool=pool)

    assert ran_on == [chosen] * 6


def test_worker_pool_accepted_as_call_target(cluster_workers):
    pool = WorkerPool(cluster_workers)

    assert remotecall_fetch(myid, pool) in cluster_workers
    assert remotecall(power, pool, 9).result(timeout=30) == 81
    assert pmap(power, range(5), pool=pool, batch_size=2) == [0, 1, 4, 9, 16]


def test_julia_style_retry_check(cluster_workers):
    seen_states = []

    def check(state, error):
        seen_states.append(state)
        return (state or 0) + 1, isinstance(error, ZeroDivisionError)

    results = pmap(worker_functions.reciprocal_or_fail, [1, 0, 2], retry_delays=[0.01, 0.01],
                   retry_check=check, on_error=lambda error: "failed")

    assert results == [1.0, "failed", 0.5]
    assert seen_states == [None, 1]


# While pmap runs, its thread is the only reader of its workers' links. These tests check
# that nothing waiting on those links, on the same or another thread, is left unread.

@pytest.mark.parametrize("batch_size", [1, 2])
def test_on_error_may_call_the_pool_workers(cluster_workers, batch_size):
    def ask_a_worker(error):
        return remotecall_fetch(power, cluster_workers[0], 3)

    results = pmap(worker_functions.reciprocal_or_fail, [1, 0, 2, 0], on_error=ask_a_worker,
                   batch_size=batch_size)

    assert results == [1.0, 9, 0.5, 9]


def test_on_error_may_run_a_nested_pmap(cluster_workers):
    def nested(error):
        return sum(pmap(power, range(4)))

    results = pmap(worker_functions.reciprocal_or_fail, [0, 4], on_error=nested)

    assert results == [14, 0.25]


def test_other_threads_call_the_workers_while_pmap_runs(cluster_workers):
    import threading

    answers: list = []

    def call_repeatedly():
        for index in range(50):
            answers.append(remotecall_fetch(power, cluster_workers[index % 2], index))

    caller = threading.Thread(target=call_repeatedly)
    caller.start()
    mapped = pmap(worker_functions.sleep_then_return, [0.002] * 200, range(200))
    caller.join(timeout=60)

    assert not caller.is_alive()
    assert mapped == list(range(200))
    assert answers == [index * index for index in range(50)]


def test_on_error_running_does_not_block_other_threads(cluster_workers):
    import threading

    answered = threading.Event()

    def call_a_worker():
        remotecall_fetch(power, cluster_workers[1], 2)
        answered.set()

    def on_error(error):
        # The other thread's call must get its reply while this handler still runs.
        caller = threading.Thread(target=call_a_worker)
        caller.start()
        caller.join(timeout=30)
        return answered.is_set()

    results = pmap(worker_functions.reciprocal_or_fail, [0, 1], on_error=on_error)

    assert results == [True, 1.0]


def test_pmap_does_not_spin_after_a_worker_dies(spawn_workers):
    import os
    import signal

    pids = spawn_workers(2)
    victim = remotecall_fetch(os.getpid, pids[0])

    def kill_then_sleep(value):
        if value == 0:
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.1)
        return value

    started_cpu = time.process_time()
    started = time.monotonic()
    results = pmap(kill_then_sleep, range(40), on_error=lambda error: None)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - started_cpu

    assert len(results) == 40
    # Polling a dead link's closed descriptor returns at once and would keep a CPU busy.
    # Waiting for sleeping workers needs almost no CPU.
    assert cpu < 0.3 * elapsed + 0.3, (cpu, elapsed)
