"""Future: concurrency, the concurrent.futures reading protocol, asyncio, pickling and put."""

from __future__ import annotations

import asyncio
import operator
import threading

import pytest

from pyaddprocs import Future, RemoteChannel, RemoteException, fetch, remotecall, remotecall_fetch
from tests import worker_functions

# Seconds any single result in this module may take before the test fails.
RESULT_TIMEOUT = 30


def test_hundred_concurrent_futures_all_resolve(cluster_workers):
    count = 100

    futures = [
        remotecall(operator.mul, cluster_workers[number % len(cluster_workers)], number, number)
        for number in range(count)
    ]

    assert [fetch(future) for future in futures] == [number * number for number in range(count)]
    assert all(future.isready() for future in futures)


def test_future_follows_concurrent_futures_protocol(cluster_workers):
    channel = RemoteChannel(pid=cluster_workers[0])
    future = remotecall(worker_functions.take_one, cluster_workers[0], channel)
    called_with: list = []
    callback_ran = threading.Event()

    def on_done(done_future):
        called_with.append(done_future)
        callback_ran.set()

    future.add_done_callback(on_done)

    assert not future.done()
    assert not future.isready()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.2)
    assert not callback_ran.is_set()

    channel.put("released")

    assert future.result(timeout=RESULT_TIMEOUT) == "released"
    assert future.done()
    assert future.exception() is None
    assert callback_ran.wait(timeout=RESULT_TIMEOUT)
    assert called_with == [future]


def test_late_done_callback_runs_immediately(cluster_workers):
    future = remotecall(operator.add, cluster_workers[1], 1, 2)
    assert future.result(timeout=RESULT_TIMEOUT) == 3
    called_with: list = []

    future.add_done_callback(called_with.append)

    assert called_with == [future]


def test_future_exception_returns_remote_exception(cluster_workers):
    worker = cluster_workers[0]
    future = remotecall(worker_functions.raise_value_error, worker, "protocol error")

    error = future.exception(timeout=RESULT_TIMEOUT)

    assert isinstance(error, RemoteException)
    assert isinstance(error.exc, ValueError)
    assert future.done()


def test_futures_are_awaitable_in_asyncio(cluster_workers):
    count = 100

    async def gather_squares():
        futures = [
            remotecall(operator.mul, cluster_workers[number % len(cluster_workers)], number, number)
            for number in range(count)
        ]
        return await asyncio.wait_for(asyncio.gather(*futures), timeout=RESULT_TIMEOUT)

    async def await_one_error():
        future = remotecall(worker_functions.raise_value_error, cluster_workers[0], "awaited error")
        with pytest.raises(RemoteException) as caught:
            await asyncio.wait_for(future, timeout=RESULT_TIMEOUT)
        return caught.value

    assert asyncio.run(gather_squares()) == [number * number for number in range(count)]
    assert isinstance(asyncio.run(await_one_error()).exc, ValueError)


def test_future_sent_to_other_worker_fetches_there(cluster_workers):
    owner, reader = cluster_workers
    future = remotecall(operator.mul, owner, 6, 7)

    assert remotecall_fetch(fetch, reader, future) == 42
    assert future.fetch() == 42


def test_pending_future_resolves_on_other_worker(cluster_workers):
    owner, reader = cluster_workers
    channel = RemoteChannel(pid=owner)
    pending = remotecall(worker_functions.take_one, owner, channel)

    remote_fetch = remotecall(fetch, reader, pending)
    assert not remote_fetch.done()
    channel.put("late value")

    assert remote_fetch.result(timeout=RESULT_TIMEOUT) == "late value"


def test_unset_future_put_sets_value_once():
    future = Future(pid=None)

    assert not future.isready()
    future.put("first")

    assert future.isready()
    assert future.fetch() == "first"
    assert future.result(timeout=RESULT_TIMEOUT) == "first"
    with pytest.raises(RuntimeError):
        future.put("second")
    assert future.fetch() == "first"


def test_unset_future_put_wakes_remote_fetch(cluster_workers):
    future = Future(pid=None)
    remote_fetch = remotecall(fetch, cluster_workers[0], future)
    assert not remote_fetch.done()

    future.put({"set": "by master"})

    assert remote_fetch.result(timeout=RESULT_TIMEOUT) == {"set": "by master"}


def test_worker_owned_future_set_remotely(cluster_workers):
    owner, writer = cluster_workers
    future = Future(pid=owner)

    remotecall_fetch(worker_functions.put_into_future, writer, future, 99)

    assert future.fetch() == 99
    assert remotecall_fetch(fetch, owner, future) == 99
