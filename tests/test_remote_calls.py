"""remotecall and its variants: arguments, results, errors and volume, on real workers."""

from __future__ import annotations

import operator
import os
import sys

import numpy as np
import pytest

from pyaddprocs import (
    Future,
    RemoteChannel,
    RemoteException,
    everywhere,
    fetch,
    myid,
    procs,
    remote_do,
    remotecall,
    remotecall_fetch,
    remotecall_wait,
    spawnat,
    workers,
)
from tests import worker_functions
from tests.worker_functions import describe_call, identity, power

# Seconds any single result in this module may take before the test fails.
RESULT_TIMEOUT = 30

EXPECTED_CALL = {"args": [1, "two", [3]], "kwargs": {"four": 4, "five": {"six": 6}}}


def test_remotecall_passes_args_and_kwargs(cluster_workers):
    worker = cluster_workers[0]

    future = remotecall(describe_call, worker, 1, "two", [3], four=4, five={"six": 6})

    assert isinstance(future, Future)
    assert future.result(timeout=RESULT_TIMEOUT) == EXPECTED_CALL
    assert fetch(future) == EXPECTED_CALL


def test_remotecall_fetch_passes_args_and_kwargs(cluster_workers):
    worker = cluster_workers[1]

    assert remotecall_fetch(describe_call, worker, 1, "two", [3], four=4, five={"six": 6}) == EXPECTED_CALL
    assert remotecall_fetch(power, worker, 3, exponent=4, modulus=5) == 1
    assert remotecall_fetch(int, worker, "ff", base=16) == 255
    assert remotecall_fetch(sorted, worker, [3, 1, 2], reverse=True) == [3, 2, 1]


def test_option_named_keywords_reach_function(cluster_workers):
    # The API defines no call options such as a timeout, so every keyword belongs to f.
    worker = cluster_workers[0]
    keywords = {"timeout": 0.001, "procs": [1], "batch_size": 3}
    expected = {"args": [], "kwargs": keywords}

    assert remotecall_fetch(describe_call, worker, **keywords) == expected
    assert remotecall(describe_call, worker, **keywords).result(timeout=RESULT_TIMEOUT) == expected
    assert remotecall_wait(describe_call, worker, **keywords).fetch() == expected
    assert spawnat(worker, describe_call, **keywords).fetch() == expected


def test_keywords_named_f_and_pid_reach_function(cluster_workers):
    # f and pid are positional-only, so a function may take keywords of those names.
    worker = cluster_workers[1]
    keywords = {"f": "value of f", "pid": 99}
    expected = {"args": [], "kwargs": keywords}

    assert remotecall_fetch(describe_call, worker, **keywords) == expected
    assert remotecall(describe_call, worker, **keywords).result(timeout=RESULT_TIMEOUT) == expected
    assert remotecall_wait(describe_call, worker, **keywords).fetch() == expected
    assert spawnat(worker, describe_call, **keywords).fetch() == expected
    remote_do(describe_call, worker, **keywords)


def test_remotecall_wait_returns_ready_future(cluster_workers):
    worker = cluster_workers[0]

    future = remotecall_wait(describe_call, worker, 1, "two", [3], four=4, five={"six": 6})

    assert isinstance(future, Future)
    assert future.isready()
    assert future.done()
    assert future.fetch() == EXPECTED_CALL


def test_remote_do_runs_with_args_and_kwargs(cluster_workers):
    worker = cluster_workers[1]
    channel = RemoteChannel(maxsize=4)

    returned = remote_do(worker_functions.put_labelled, worker, channel, 42, label="answer")

    assert returned is None
    assert channel.take(timeout=RESULT_TIMEOUT) == ("answer", 42)


def test_spawnat_accepts_pid_and_any(cluster_workers):
    worker = cluster_workers[0]

    on_named = spawnat(worker, describe_call, 1, "two", [3], four=4, five={"six": 6})
    on_any = spawnat("any", power, 2, exponent=10)
    where_any_ran = spawnat("any", myid)

    assert on_named.result(timeout=RESULT_TIMEOUT) == EXPECTED_CALL
    assert on_any.result(timeout=RESULT_TIMEOUT) == 1024
    assert where_any_ran.result(timeout=RESULT_TIMEOUT) in procs()
    assert remotecall_fetch(myid, worker) == worker


def test_fetch_returns_plain_values_unchanged():
    marker = object()

    assert fetch(5) == 5
    assert fetch(marker) is marker
    assert fetch(None) is None


def test_everywhere_returns_results_in_pid_order(cluster_workers):
    all_pids = procs()

    assert everywhere(myid) == all_pids
    assert everywhere(power, 2, exponent=5) == [32] * len(all_pids)
    assert everywhere(describe_call, 7, key="value", procs=cluster_workers) == [
        {"args": [7], "kwargs": {"key": "value"}}
    ] * len(cluster_workers)


def test_remotecall_to_own_pid_runs_locally(cluster_workers):
    assert remotecall_fetch(operator.add, myid(), 2, 3) == 5
    assert remotecall_fetch(os.getpid, myid()) == os.getpid()


def test_calls_run_on_named_worker(cluster_workers):
    for worker in cluster_workers:
        assert remotecall_fetch(myid, worker) == worker
        assert remotecall_fetch(os.getpid, worker) != os.getpid()
    assert sorted(cluster_workers) == sorted(pid for pid in workers() if pid in cluster_workers)


def test_large_numpy_array_round_trip(cluster_workers):
    worker = cluster_workers[0]
    size = 100 * 1024 * 1024
    original = np.random.default_rng(seed=1).integers(0, 256, size=size, dtype=np.uint8)

    returned = remotecall_fetch(identity, worker, original)

    assert isinstance(returned, np.ndarray)
    assert returned.dtype == original.dtype
    assert returned.shape == original.shape
    assert np.array_equal(returned, original)
    # A checksum computed on the worker proves the content arrived intact on the way out too.
    remote_sum = remotecall_fetch(lambda array: int(array.sum(dtype=np.uint64)), worker, original)
    assert remote_sum == int(original.sum(dtype=np.uint64))


def test_remote_exception_carries_remote_traceback(cluster_workers):
    worker = cluster_workers[1]

    with pytest.raises(RemoteException) as caught:
        remotecall_fetch(worker_functions.raise_value_error, worker, "bad value 42")

    error = caught.value
    assert str(error).startswith(f"On worker {worker}:")
    assert "bad value 42" in str(error)
    assert isinstance(error.exc, ValueError)
    assert error.exc.args == ("bad value 42",)
    assert error.pid == worker
    assert "raise_value_error" in error.traceback_text
    assert "ValueError" in error.traceback_text
    assert "worker_functions.py" in error.traceback_text


def test_future_fetch_raises_remote_exception(cluster_workers):
    worker = cluster_workers[0]

    future = remotecall(worker_functions.raise_value_error, worker, "from a future")

    with pytest.raises(RemoteException) as caught:
        future.fetch()
    assert str(caught.value).startswith(f"On worker {worker}:")
    assert isinstance(caught.value.exc, ValueError)
    assert isinstance(future.exception(timeout=RESULT_TIMEOUT), RemoteException)
    with pytest.raises(RemoteException):
        future.result(timeout=RESULT_TIMEOUT)


def test_unpicklable_exception_keeps_name_and_message(cluster_workers):
    worker = cluster_workers[1]

    with pytest.raises(RemoteException) as caught:
        remotecall_fetch(worker_functions.raise_two_argument_error, worker, "code is wrong", 7)

    error = caught.value
    assert str(error).startswith(f"On worker {worker}:")
    assert "TwoArgumentError" in str(error)
    assert "code is wrong" in str(error)
    assert "code is wrong" in str(error.exc)
    assert "raise_two_argument_error" in error.traceback_text


def test_value_failing_to_unpickle_names_its_worker(cluster_workers):
    worker = cluster_workers[1]
    future = remotecall(worker_functions.two_argument_error_value, worker, "no", 1)

    with pytest.raises(RemoteException) as caught:
        future.fetch(timeout=RESULT_TIMEOUT)

    assert str(caught.value).startswith(f"On worker {worker}:")
    assert "could not deserialize" in str(caught.value)


def test_unpicklable_result_keeps_worker_usable(cluster_workers):
    worker = cluster_workers[0]

    with pytest.raises(RemoteException) as caught:
        remotecall_fetch(worker_functions.make_lock, worker)

    error = caught.value
    assert str(error).startswith(f"On worker {worker}:")
    # pickle's own message names the type it cannot handle: "cannot pickle '_thread.lock' object".
    assert "lock" in str(error)
    assert remotecall_fetch(operator.add, worker, 20, 22) == 42
    assert remotecall(operator.mul, worker, 6, 7).result(timeout=RESULT_TIMEOUT) == 42


def test_unpicklable_argument_keeps_worker_usable(cluster_workers, scratch_dir, monkeypatch):
    worker = cluster_workers[1]
    # A class from a module that only the master can import: the worker fails to
    # unpickle the argument with ModuleNotFoundError.
    module_name = "master_only_module_for_test"
    (scratch_dir / f"{module_name}.py").write_text("class OnlyOnMaster:\n    pass\n")
    monkeypatch.syspath_prepend(str(scratch_dir))
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    master_only = __import__(module_name)

    try:
        with pytest.raises(RemoteException) as caught:
            remotecall_fetch(identity, worker, master_only.OnlyOnMaster())
    finally:
        sys.modules.pop(module_name, None)

    error = caught.value
    assert str(error).startswith(f"On worker {worker}:")
    assert module_name in str(error)
    assert remotecall_fetch(operator.add, worker, 1, 1) == 2


def test_many_sequential_fetches_return_correct_results(cluster_workers):
    worker = cluster_workers[0]
    count = 10_000

    results = [remotecall_fetch(operator.add, worker, number, 1) for number in range(count)]

    assert len(results) == count
    assert results == list(range(1, count + 1))
