"""Wire format of one message: a fixed header frame followed by payload frames.

    frame 0   Header (28 bytes, network byte order)
                kind     u8   MessageKind value; 1..15 belong to the transport
                flags    u8   kind-specific bits (for results: ok or error)
                (pad)    2 bytes
                response RemoteRef id (whence u32, number u64) the message fills, or (0, 0)
                notify   RemoteRef id (whence u32, number u64) to notify when done, or (0, 0)
    frame 1.. payload, opaque to the transport

Payload frames at or above ``COPY_THRESHOLD`` bytes are handed to ZeroMQ without a
copy; smaller ones are copied, because a zero-copy send costs about 10 microseconds of
bookkeeping in pyzmq and only pays off for large buffers.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Union

import zmq

# pyzmq's own default threshold for zero-copy sends (pyzmq 25 to 27).
COPY_THRESHOLD = 65536

# Version of this wire format; a node rejects a HELLO with another version.
PROTOCOL_VERSION = 1

RefId = tuple[int, int]
NO_REF: RefId = (0, 0)

Payload = Union[bytes, bytearray, memoryview, zmq.Frame]

_HEADER = struct.Struct("!BB2xIQIQ")


class MessageKind(enum.IntEnum):
    """Message kinds; values below 16 are handled inside the transport."""

    HELLO = 1        # first message on a connection: cookie, sender pid, protocol version
    HELLO_ACK = 2    # accepting side's reply to a valid HELLO: its pid

    # Kinds used by the layer above the transport (pyaddprocs).
    CALL = 16        # run a function, store the value under `response`, notify `notify`
    CALL_FETCH = 17  # run a function and send the value back to `notify`
    REMOTE_DO = 18   # run a function, no reply
    RESULT = 19      # the value or error for the waiter `response`
    JOIN = 20        # master to new worker: your pid, topology, peers
    JOIN_COMPLETE = 21
    CONTROL = 22     # cluster bookkeeping (peer lists, reference counts, exit)


class ResultFlag(enum.IntFlag):
    """Bits of ``Header.flags`` on RESULT messages."""

    OK = 0
    ERROR = 1        # the payload is a RemoteException
    NOT_STORED = 2   # CALL finished but its value was too large to send inline


@dataclass(frozen=True)
class Header:
    """Decoded header frame of a message."""

    kind: int
    flags: int = 0
    response: RefId = NO_REF
    notify: RefId = NO_REF

    def pack(self) -> bytes:
        """Encode the header as the first frame of a message."""
        return _HEADER.pack(self.kind, self.flags, *self.response, *self.notify)

    @classmethod
    def unpack(cls, data: bytes | memoryview) -> "Header":
        """Decode a header frame; raises ValueError when it is not a valid header."""
        if len(data) != _HEADER.size:
            raise ValueError(f"invalid header frame of {len(data)} bytes, expected {_HEADER.size}")
        kind, flags, rw, rn, nw, nn = _HEADER.unpack(data)
        return cls(kind, flags, (rw, rn), (nw, nn))


def send_frames(socket: zmq.Socket, frames: list[Payload], prefix: bytes | None = None) -> None:
    """Send one multipart message, copying only the frames below ``COPY_THRESHOLD``.

    ``prefix`` is the routing id frame when sending on a ROUTER socket.
    """
    if prefix is not None:
        socket.send(prefix, zmq.SNDMORE)
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        flags = zmq.SNDMORE if index < last else 0
        if isinstance(frame, zmq.Frame):
            socket.send(frame, flags, copy=False)
            continue
        size = frame.nbytes if isinstance(frame, memoryview) else len(frame)
        socket.send(frame, flags, copy=size < COPY_THRESHOLD)
