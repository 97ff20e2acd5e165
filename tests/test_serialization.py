"""The pickle fast paths give the same bytes as cloudpickle, and stay off where they would not."""

from __future__ import annotations

import pickle

import cloudpickle
import pytest

from pyaddprocs.serialization import dumps, dumps_call, loads
from tests import worker_functions
from tests.worker_functions import identity, power


@pytest.mark.parametrize("args, kwargs", [
    ((5,), {}),
    ((2, 10), {"modulus": 7}),
    (("text", None, 1.5, True, 2j), {}),
    (("key", None, (1, "a")), {}),
    (("key", b"function bytes", (1,)), {}),
])
def test_plain_call_matches_cloudpickle(args, kwargs):
    frames = dumps_call(power, args, kwargs)
    assert bytes(frames[0]) == cloudpickle.dumps((power, args, kwargs), protocol=5)


@pytest.mark.parametrize("function, args", [
    (lambda x: x, (1,)),                         # a lambda goes by value
    (identity, ([1, 2],)),                       # a list argument takes cloudpickle's path
    (identity, ({"a": 1},)),
    (identity, ((1, [2]),)),                     # a tuple holding a list
])
def test_other_calls_take_cloudpickle_path(function, args):
    frames = dumps_call(function, args, {})
    assert bytes(frames[0]) == cloudpickle.dumps((function, args, {}), protocol=5)
    rebuilt_function, rebuilt_args, _ = loads(frames)
    assert rebuilt_function(*rebuilt_args) == function(*args)


def test_module_registered_for_pickling_by_value_is_respected():
    cloudpickle.register_pickle_by_value(worker_functions)
    try:
        frames = dumps_call(identity, (1,), {})
    finally:
        cloudpickle.unregister_pickle_by_value(worker_functions)
    # By value, the function's code travels; by reference only its name would.
    assert len(bytes(frames[0])) > len(pickle.dumps((identity, (1,), {}), protocol=5))


@pytest.mark.parametrize("value", [0, -7, 2**80, 1.25, "naïve", "", None, True, 3 + 4j, b"small"])
def test_plain_values_round_trip(value):
    frames = dumps(value)
    assert bytes(frames[0]) == cloudpickle.dumps(value, protocol=5)
    assert loads(frames) == value


def test_large_bytes_still_leave_the_pickle_stream():
    value = bytes(200_000)
    frames = dumps(value)
    assert len(frames) == 2
    assert memoryview(frames[1]).nbytes == len(value)
    assert loads(frames) == value
