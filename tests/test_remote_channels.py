"""RemoteChannel between the master and workers, and between two workers."""

from __future__ import annotations

import operator
import queue

import pytest

from pyaddprocs import ChannelClosedError, RemoteChannel, remotecall, remotecall_fetch
from tests import worker_functions

# Seconds any single result in this module may take before the test fails.
RESULT_TIMEOUT = 30


@pytest.mark.parametrize(
    ("producer_index", "consumer_index"),
    [(1, 0), (0, 1)],
    ids=["remote-put-local-take", "local-put-remote-take"],
)
def test_channel_connects_producer_and_consumer_workers(cluster_workers, producer_index, consumer_index):
    owner = cluster_workers[0]
    producer = cluster_workers[producer_index]
    consumer = cluster_workers[consumer_index]
    count = 200
    # A small capacity makes the producer block on put, so back-pressure is exercised.
    channel = RemoteChannel(pid=owner, maxsize=4)

    consumed = remotecall(worker_functions.consume_numbers, consumer, channel, count)
    produced = remotecall(worker_functions.produce_numbers, producer, channel, count)

    assert produced.result(timeout=RESULT_TIMEOUT) == count
    assert consumed.result(timeout=RESULT_TIMEOUT) == list(range(count))
    assert channel.empty()
    assert not channel.isready()


def test_blocked_take_lets_other_calls_finish(cluster_workers):
    worker = cluster_workers[0]
    channel = RemoteChannel(pid=worker, maxsize=8)
    blocked = [remotecall(worker_functions.take_one, worker, channel) for _ in range(4)]

    assert remotecall(operator.add, worker, 2, 3).result(timeout=RESULT_TIMEOUT) == 5
    assert remotecall_fetch(operator.mul, worker, 4, 5) == 20
    assert not any(future.done() for future in blocked)

    for number in range(4):
        channel.put(number)

    assert sorted(future.result(timeout=RESULT_TIMEOUT) for future in blocked) == [0, 1, 2, 3]


def test_channel_iteration_stops_when_closed(cluster_workers):
    owner, producer = cluster_workers
    channel = RemoteChannel(pid=owner, maxsize=8)
    items = ["a", "b", "c", 4, 5.0]

    remotecall_fetch(worker_functions.put_all_then_close, producer, channel, items)

    assert not channel.is_open()
    # Julia's semantics: items already in a closed channel can still be taken.
    assert list(channel) == items
    with pytest.raises(ChannelClosedError):
        channel.put("after close")
    with pytest.raises(ChannelClosedError):
        channel.take(timeout=RESULT_TIMEOUT)


def test_worker_iterates_channel_until_closed(cluster_workers):
    owner, consumer = cluster_workers
    channel = RemoteChannel(pid=owner, maxsize=2)
    items = list(range(20))

    collected = remotecall(worker_functions.collect_until_closed, consumer, channel)
    for item in items:
        channel.put(item, timeout=RESULT_TIMEOUT)
    channel.close()

    assert collected.result(timeout=RESULT_TIMEOUT) == items


def test_channel_fetch_reads_without_removing(cluster_workers):
    channel = RemoteChannel(pid=cluster_workers[1], maxsize=2)

    assert channel.is_open()
    assert channel.empty()
    assert not channel.isready()
    channel.put("kept")

    assert channel.isready()
    assert channel.fetch() == "kept"
    assert channel.take() == "kept"
    assert channel.empty()


def test_channel_take_times_out_when_empty(cluster_workers):
    channel = RemoteChannel(pid=cluster_workers[0])

    with pytest.raises(TimeoutError):
        channel.take(timeout=0.5)

    channel.put("after timeout")
    assert channel.take(timeout=RESULT_TIMEOUT) == "after timeout"


@pytest.mark.parametrize("timeout", ["x", True, [1]])
def test_channel_rejects_invalid_timeout_locally(cluster_workers, timeout):
    channel = RemoteChannel(pid=cluster_workers[0])

    for method in (channel.take, channel.fetch):
        with pytest.raises(TypeError, match="invalid timeout"):
            method(timeout=timeout)
    with pytest.raises(TypeError, match="invalid timeout"):
        channel.put("value", timeout=timeout)
    assert channel.empty()


def test_channel_from_factory_uses_its_store(cluster_workers):
    worker = cluster_workers[1]
    channel = RemoteChannel(lambda: queue.LifoQueue(maxsize=8), worker)

    for item in ["first", "second", "third"]:
        channel.put(item)

    # A LIFO store hands back the last item first, which proves the factory's queue is used.
    assert [channel.take(timeout=RESULT_TIMEOUT) for _ in range(3)] == ["third", "second", "first"]
