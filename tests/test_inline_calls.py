"""Calls that a worker runs on its I/O loop thread, and the loop's hand-over when one blocks.

A worker runs each incoming call where its message was read (``Node.run_inline``).
These tests check what that must not change: a call that blocks, in pyaddprocs
or in plain threading code, never holds up the messages that would unblock it.
"""

from __future__ import annotations

import pytest

import pyaddprocs
from pyaddprocs import RemoteChannel, RemoteException, remote_do, remotecall, remotecall_fetch
from tests import worker_functions as wf

# Seconds any single result may take before the test fails (generous on a loaded machine).
RESULT_TIMEOUT = 30.0


def test_short_calls_run_on_the_io_thread(cluster_workers):
    pid = cluster_workers[0]
    names = {remotecall_fetch(wf.thread_name, pid) for _ in range(20)}
    assert names == {"pyaddprocs-io"}


def test_plain_blocking_call_does_not_stall(cluster_workers):
    pid = cluster_workers[0]
    remotecall_fetch(wf.clear_local_event, pid)
    # The first call blocks in threading.Event.wait, which pyaddprocs cannot see; the
    # watcher must move the I/O loop to another thread so the second call arrives.
    waiting = remotecall(wf.wait_for_local_event, pid, RESULT_TIMEOUT)
    assert remotecall_fetch(wf.set_local_event, pid) == "set"
    assert waiting.fetch(timeout=RESULT_TIMEOUT) is True
    remotecall_fetch(wf.clear_local_event, pid)


def test_many_blocked_calls_all_get_a_thread(cluster_workers):
    pid = cluster_workers[1]
    parties = 12
    futures = [remotecall(wf.meet_at_barrier, pid, parties, RESULT_TIMEOUT) for _ in range(parties)]
    arrivals = sorted(future.fetch(timeout=RESULT_TIMEOUT) for future in futures)
    assert arrivals == list(range(parties))


def test_call_waiting_on_a_channel_steps_aside(cluster_workers):
    pid = cluster_workers[0]
    channel = RemoteChannel(lambda: pyaddprocs.Channel(1), pid)
    taker = remotecall(wf.take_one, pid, channel)
    remote_do(wf.put_labelled, pid, channel, "x", label="late")
    assert taker.fetch(timeout=RESULT_TIMEOUT) == ("late", "x")


def test_nested_call_back_to_the_master(cluster_workers):
    results = [remotecall_fetch(wf.call_back_master, pid, pid * 10) for pid in cluster_workers]
    assert results == [pid * 10 for pid in cluster_workers]


def test_worker_keeps_answering_after_many_hand_overs(cluster_workers):
    pid = cluster_workers[1]
    blockers = [remotecall(wf.sleep_then_return, pid, 0.05, index) for index in range(30)]
    assert remotecall_fetch(wf.identity, pid, "still here") == "still here"
    assert [future.fetch(timeout=RESULT_TIMEOUT) for future in blockers] == list(range(30))
    assert remotecall_fetch(wf.thread_name, pid) == "pyaddprocs-io"


def test_interrupt_reaches_a_call_on_the_io_thread(spawn_workers):
    [pid] = spawn_workers(1)
    future = remotecall(wf.spin, pid, 60.0)
    remotecall_fetch(wf.identity, pid, None)   # the spin has started, or is queued behind it
    pyaddprocs.interrupt(pid)
    with pytest.raises(RemoteException) as raised:
        future.fetch(timeout=RESULT_TIMEOUT)
    assert isinstance(raised.value.exc, KeyboardInterrupt)
    assert remotecall_fetch(pyaddprocs.myid, pid) == pid


def test_interrupts_never_lose_a_reply(spawn_workers):
    # An interrupt that arrives as a call ends must not land in the code that sends
    # the reply. Every call returns its value or raises KeyboardInterrupt.
    [pid] = spawn_workers(1)
    answered = 0
    for _ in range(60):
        future = remotecall(wf.spin, pid, 0.003)
        pyaddprocs.interrupt(pid)
        try:
            future.fetch(timeout=RESULT_TIMEOUT)
        except RemoteException as error:
            assert isinstance(error.exc, KeyboardInterrupt)
        answered += 1
    assert answered == 60
    assert remotecall_fetch(pyaddprocs.myid, pid) == pid
