"""Distributed reference counting frees remote values once no process holds a reference.

The public API cannot observe which values a process still stores, so these tests
ask the owner through ``worker_functions.owned_ref_ids``, which reads pyaddprocs
internals.
"""

from __future__ import annotations

import gc
import time

from pyaddprocs import RemoteChannel, remotecall, remotecall_fetch
from tests import worker_functions

# Larger than the size up to which a result travels back with its completion notice,
# so the value stays on the worker until it is fetched.
LARGE_RESULT_BYTES = 4 * 1024 * 1024

# Seconds to wait for a dropped reference to be freed on its owner.
FREE_TIMEOUT = 10


def owned_refs(pid: int) -> set:
    return {tuple(ref) for ref in remotecall_fetch(worker_functions.owned_ref_ids, pid)}


def wait_until_freed(pid: int, refs: set) -> set:
    """Poll the owner until none of ``refs`` is stored, and return those still stored."""
    deadline = time.monotonic() + FREE_TIMEOUT
    remaining = refs & owned_refs(pid)
    while remaining and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.1)
        remaining = refs & owned_refs(pid)
    return remaining


def test_dropped_future_frees_remote_value(cluster_workers):
    owner = cluster_workers[0]
    before = owned_refs(owner)
    future = remotecall(worker_functions.make_bytes, owner, LARGE_RESULT_BYTES)
    future.wait()

    created = owned_refs(owner) - before
    assert created, "the unfetched result is not stored on its owner"

    del future
    gc.collect()

    assert wait_until_freed(owner, created) == set()


def test_fetched_future_frees_remote_value(cluster_workers):
    owner = cluster_workers[1]
    before = owned_refs(owner)
    future = remotecall(worker_functions.make_bytes, owner, LARGE_RESULT_BYTES)
    future.wait()
    created = owned_refs(owner) - before
    assert created, "the unfetched result is not stored on its owner"

    assert future.fetch() == bytes(LARGE_RESULT_BYTES)

    assert wait_until_freed(owner, created) == set()
    # The fetched value stays readable from the local cache.
    assert len(future.fetch()) == LARGE_RESULT_BYTES


def test_dropped_channel_frees_remote_store(cluster_workers):
    owner = cluster_workers[0]
    before = owned_refs(owner)
    channel = RemoteChannel(pid=owner, maxsize=4)
    channel.put("item")

    created = owned_refs(owner) - before
    assert created, "the channel's store is not on its owner"

    del channel
    gc.collect()

    assert wait_until_freed(owner, created) == set()


def test_worker_held_future_survives_master_release(cluster_workers):
    owner, holder = cluster_workers
    before = owned_refs(owner)
    future = remotecall(worker_functions.make_bytes, owner, LARGE_RESULT_BYTES)
    future.wait()
    created = owned_refs(owner) - before
    assert created, "the unfetched result is not stored on its owner"
    remotecall_fetch(worker_functions.keep_reference, holder, "large", future)

    del future
    gc.collect()
    # A release sent at collection time travels on the same connection as the next
    # call, so it has arrived by the time that call returns. A later release only
    # makes this check weaker, never wrong.
    assert created <= owned_refs(owner), "the value was freed while another worker held it"
    assert remotecall_fetch(worker_functions.fetch_kept_reference, holder, "large") == bytes(LARGE_RESULT_BYTES)

    remotecall_fetch(worker_functions.drop_kept_reference, holder, "large")

    assert wait_until_freed(owner, created) == set()
