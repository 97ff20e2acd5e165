"""Python objects to ZeroMQ frames and back, with cloudpickle and pickle protocol 5.

    dumps(obj) -> [pickle stream, buffer 1, buffer 2, ...]     loads(frames) -> obj

- Functions, lambdas and closures from ``__main__`` travel by value (cloudpickle);
  functions of importable modules travel by reference and must be importable on the
  receiving process.
- Buffers of ``BUFFER_THRESHOLD`` bytes or more (NumPy arrays, ``bytearray``, large
  ``bytes``) leave the pickle stream as separate frames, which the transport sends
  without copying. On the receiving side a NumPy array is built on the ZeroMQ frame's
  own memory, which is writable.
- ``destination()`` tells reducers (``Future``, ``RemoteChannel``) which process the
  object is being sent to, so they can register that process with the value's owner.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import threading
from typing import Any, Iterator, Sequence

import cloudpickle

from transport_zmq import COPY_THRESHOLD

# Smaller buffers stay inside the pickle stream: one more frame costs more than the copy.
BUFFER_THRESHOLD = COPY_THRESHOLD

_local = threading.local()


@contextlib.contextmanager
def sending_to(pid: int | None) -> Iterator[None]:
    """Mark the pickling done inside the block as being for process ``pid``."""
    previous = getattr(_local, "destination", None)
    _local.destination = pid
    try:
        yield
    finally:
        _local.destination = previous


def destination() -> int | None:
    """Return the pid the current thread is pickling for, or None outside ``sending_to``."""
    return getattr(_local, "destination", None)


def _bytes_from_buffer(buffer) -> bytes:
    return bytes(buffer)


class _Pickler(cloudpickle.CloudPickler):
    """cloudpickle's pickler that also moves large ``bytes`` out of band."""

    def reducer_override(self, obj):
        if type(obj) is bytes and len(obj) >= BUFFER_THRESHOLD:
            return _bytes_from_buffer, (pickle.PickleBuffer(obj),)
        return super().reducer_override(obj)


# Values of these types pickle to the same bytes with pickle and cloudpickle, and
# pickle's C code does it without the Python-level pickler cloudpickle sets up.
_PLAIN_TYPES = frozenset({int, float, bool, str, type(None), complex})


def dumps(obj: Any, destination_pid: int | None = None) -> list:
    """Serialize ``obj`` into frames: the pickle stream, then its out-of-band buffers."""
    if type(obj) in _PLAIN_TYPES:
        return [pickle.dumps(obj, protocol=5)]
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
        _Pickler(stream, protocol=5, buffer_callback=keep_out_of_band).dump(obj)
    finally:
        _local.destination = previous
    return [stream.getbuffer(), *buffers]


def loads(frames: Sequence) -> Any:
    """Rebuild an object from the frames ``dumps`` produced (bytes or zmq.Frame)."""
    views = [frame.buffer if hasattr(frame, "buffer") else frame for frame in frames]
    return pickle.loads(views[0], buffers=views[1:])
