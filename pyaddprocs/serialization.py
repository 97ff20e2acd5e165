"""Python objects to ZeroMQ frames and back, with cloudpickle and pickle protocol 5.

    dumps(obj) -> [pickle stream, buffer 1, buffer 2, ...]     loads(frames) -> obj

- Functions, lambdas and closures from ``__main__`` travel by value (cloudpickle);
  functions of importable modules travel by reference and must be importable on the
  receiving process.
- Buffers of ``BUFFER_THRESHOLD`` bytes or more (NumPy arrays, ``bytearray``) leave
  the pickle stream as separate frames, which the transport sends without copying. On
  the receiving side a NumPy array is built on the ZeroMQ frame's own memory, which is
  writable. Large ``bytes`` leave the stream too when they are the whole value (a
  result, for example); inside a container they are copied into the stream, because
  pickle writes ``bytes`` itself without asking the pickler's ``reducer_override``.
- ``destination()`` tells reducers (``Future``, ``RemoteChannel``) which process the
  object is being sent to, so they can register that process with the value's owner.
"""

from __future__ import annotations

import io
import pickle
import sys
import threading
import types
from typing import Any, Sequence

import cloudpickle

from transport_zmq import COPY_THRESHOLD

# Smaller buffers stay inside the pickle stream: one more frame costs more than the copy.
BUFFER_THRESHOLD = COPY_THRESHOLD

_local = threading.local()


def destination() -> int | None:
    """Return the pid the current thread is pickling for in ``dumps``, or None outside it."""
    return getattr(_local, "destination", None)


def _bytes_from_buffer(buffer) -> bytes:
    return bytes(buffer)


class _OutOfBandBytes:
    """A large ``bytes`` value that pickles as an out-of-band buffer (protocol 5)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce_ex__(self, protocol: int):
        return _bytes_from_buffer, (pickle.PickleBuffer(self.data),)


# Values of these types pickle to the same bytes with pickle and cloudpickle, and
# pickle's C code does it without the Python-level pickler cloudpickle sets up.
_PLAIN_TYPES = frozenset({int, float, bool, str, type(None), complex})
_FunctionType = types.FunctionType
# Modules registered with cloudpickle.register_pickle_by_value. While there are any,
# every call takes cloudpickle's path, which also covers their submodules.
_PICKLED_BY_VALUE = getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", ())


def dumps(obj: Any, destination_pid: int | None = None) -> list:
    """Serialize ``obj`` into frames: the pickle stream, then its out-of-band buffers."""
    if _is_plain(obj):
        return [pickle.dumps(obj, protocol=5)]
    if type(obj) is bytes:   # large, else it would be plain
        obj = _OutOfBandBytes(obj)
    buffers: list = []

    def keep_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: it has to go in band
            return True
        if view.nbytes < BUFFER_THRESHOLD:
            return True
        buffers.append(view)
        return False

    stream = io.BytesIO()
    previous = getattr(_local, "destination", None)
    _local.destination = destination_pid
    try:
        cloudpickle.CloudPickler(stream, protocol=5, buffer_callback=keep_out_of_band).dump(obj)
    finally:
        _local.destination = previous
    return [stream.getbuffer(), *buffers]


def dumps_call(function: Any, args: tuple, kwargs: dict, destination_pid: int | None = None) -> list:
    """Serialize a call ``(function, args, kwargs)`` into frames, as ``dumps`` would.

    A function of an importable module called with plain scalar arguments (or
    tuples of them) is the common case, and pickle alone gives the same bytes for it
    as cloudpickle: the function goes by reference either way. That skips
    cloudpickle's Python-level pickler, which cost most of the time of a short call's
    serialization.
    """
    if _by_reference(function) and _plain_arguments(args, kwargs):
        return [pickle.dumps((function, args, kwargs), protocol=5)]
    return dumps((function, args, kwargs), destination_pid)


def _by_reference(function: Any) -> bool:
    # cloudpickle pickles a function by value when its module is __main__, or when the
    # module's attribute of that name is another object. Only the other functions qualify.
    if type(function) is not _FunctionType or _PICKLED_BY_VALUE:
        return False
    module_name = function.__module__
    qualname = function.__qualname__
    if module_name == "__main__" or module_name is None or "." in qualname or "<" in qualname:
        return False
    module = sys.modules.get(module_name)
    return module is not None and getattr(module, qualname, None) is function


def _plain_arguments(args: tuple, kwargs: dict) -> bool:
    for value in args:
        if not _is_plain(value) and not (type(value) is tuple and all(_is_plain(item) for item in value)):
            return False
    return all(_is_plain(value) for value in kwargs.values())


def _is_plain(value: Any) -> bool:
    # Small bytes stay in band in both picklers; large ones go out of band in ours.
    kind = type(value)
    return kind in _PLAIN_TYPES or (kind is bytes and len(value) < BUFFER_THRESHOLD)


def loads(frames: Sequence) -> Any:
    """Rebuild an object from the frames ``dumps`` produced (bytes or zmq.Frame)."""
    views = [frame.buffer if hasattr(frame, "buffer") else frame for frame in frames]
    return pickle.loads(views[0], buffers=views[1:])
