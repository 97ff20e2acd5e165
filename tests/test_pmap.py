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
