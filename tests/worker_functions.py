"""Functions that tests run on workers.

They live in an importable module, so cloudpickle sends them by reference and each
worker imports this module by name. The test session puts the repository root on
PYTHONPATH so that workers can find it.
"""

from __future__ import annotations

import threading
import time


def describe_call(*args, **kwargs):
    """Return the positional and keyword arguments the call received."""
    return {"args": list(args), "kwargs": kwargs}


def power(base, exponent=2, *, modulus=None):
    return pow(base, exponent, modulus)


def identity(value):
    return value


def raise_value_error(message):
    raise ValueError(message)


class TwoArgumentError(Exception):
    """An exception that pickles but cannot be unpickled.

    ``Exception.__reduce__`` stores only ``args``, which here has one item, so
    unpickling calls ``TwoArgumentError(message)`` and fails with a TypeError.
    """

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def raise_two_argument_error(message, code):
    raise TwoArgumentError(message, code)


def two_argument_error_value(message, code):
    """Return (not raise) a TwoArgumentError: it pickles here and fails to unpickle."""
    return TwoArgumentError(message, code)


def make_lock():
    """Return a ``threading.Lock``, which pickle rejects."""
    return threading.Lock()


def put_labelled(channel, value, *, label):
    channel.put((label, value))


def produce_numbers(channel, count: int) -> int:
    """Put 0 .. count-1 into the channel and return how many were put."""
    for number in range(count):
        channel.put(number, timeout=30)
    return count


def consume_numbers(channel, count: int) -> list[int]:
    """Take ``count`` items from the channel and return them in the order taken."""
    return [channel.take(timeout=30) for _ in range(count)]


def take_one(channel):
    return channel.take(timeout=60)


def collect_until_closed(channel) -> list:
    """Iterate over the channel until it is closed and return the items in order."""
    return list(channel)


def put_all_then_close(channel, items: list) -> None:
    for item in items:
        channel.put(item, timeout=30)
    channel.close()


def put_into_future(future, value) -> None:
    future.put(value)


def sleep_then_return(seconds: float, value):
    time.sleep(seconds)
    return value


def announce_then_sleep(channel, seconds: float) -> None:
    """Put the worker's pid into the channel, so the caller knows the call is running, then sleep."""
    from pyaddprocs import myid

    channel.put(myid())
    time.sleep(seconds)


def make_bytes(size: int) -> bytes:
    return bytes(size)


def owned_ref_ids() -> list:
    """Return the ids of the remote values that this process owns.

    NOTE: reads pyaddprocs internals (``ProcessGroup.refs``), because the public API has
    no way to observe distributed reference counting.
    """
    from pyaddprocs.process_group import get_group

    return sorted(get_group().refs.refs())


# References that a test asked this worker to keep, by name.
_kept_references: dict = {}


def keep_reference(name: str, reference) -> None:
    _kept_references[name] = reference


def fetch_kept_reference(name: str):
    from pyaddprocs import fetch

    return fetch(_kept_references[name])


def drop_kept_reference(name: str) -> None:
    import gc

    del _kept_references[name]
    gc.collect()


def reciprocal_or_fail(value: float) -> float:
    """Return 1 / value; raises ZeroDivisionError for 0."""
    return 1 / value


# A worker-local event that only plain threading primitives touch, so a call waiting
# on it blocks without telling pyaddprocs (see tests/test_inline_calls.py).
_local_event = threading.Event()
_local_barrier: dict = {}
_local_lock = threading.Lock()


def wait_for_local_event(timeout: float) -> bool:
    return _local_event.wait(timeout)


def set_local_event() -> str:
    _local_event.set()
    return "set"


def clear_local_event() -> None:
    _local_event.clear()


def meet_at_barrier(parties: int, timeout: float) -> int:
    """Wait until ``parties`` calls on this worker have arrived; return this call's arrival index."""
    with _local_lock:
        barrier = _local_barrier.setdefault(parties, threading.Barrier(parties))
    return barrier.wait(timeout)


def thread_name() -> str:
    return threading.current_thread().name


def call_back_master(value):
    """Call the master from inside a call: the reply arrives while this call runs."""
    from pyaddprocs import remotecall_fetch

    return remotecall_fetch(identity, 1, value)


def spin(seconds: float) -> int:
    """Run Python bytecode (no blocking call) for ``seconds``; return the loop count."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += 1
    return count
