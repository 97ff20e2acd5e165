"""Worker processes of the raw transports: ``python -m benchmarks.raw_workers zmq|socket ADDRESS``.

They set the floor that any library built on the same transport can reach: one
message per request, pickle for values, raw bytes for arrays, no framework.

    zmq:    worker DEALER ── connects to ──> master ROUTER (tcp://127.0.0.1:PORT)
    socket: worker TCP socket ── connects to ──> master listening socket (127.0.0.1:PORT)

A request is an operation name and a payload, and every request gets one reply.
Over zmq the two are separate frames; over a socket each is preceded by a header
(``HEADER``: operation byte, payload length). The first message of a worker is a
``READY`` reply that carries its OS pid.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import sys

# Operations; every request carries one of these and gets one reply.
READY = 0               # worker -> master once: payload is the pickled OS pid
ADD_ONE = 1             # pickled int -> pickled int + 1
ADD_ONE_TO_EACH = 2     # pickled list of int -> pickled list
SUM_FLOAT64 = 3         # raw float64 bytes -> pickled float sum
STOP = 4                # no payload; the worker replies and exits

# Socket framing: operation (unsigned byte) and payload length in bytes (unsigned 64-bit).
HEADER = struct.Struct("!BQ")

# A worker exits after this many seconds without a request, so a master that died
# without sending STOP cannot leave it running.
IDLE_SECONDS = 600
# Upper bound of requests one worker serves.
MAX_REQUESTS = 100_000_000


def reply_payload(operation: int, payload) -> bytes:
    """Return the reply payload for one request."""
    if operation == ADD_ONE:
        return pickle.dumps(pickle.loads(payload) + 1)
    if operation == ADD_ONE_TO_EACH:
        return pickle.dumps([x + 1 for x in pickle.loads(payload)])
    if operation == SUM_FLOAT64:
        import numpy

        return pickle.dumps(float(numpy.frombuffer(payload, dtype=numpy.float64).sum()))
    if operation == STOP:
        return b""
    raise ValueError(f"unknown operation {operation}")


def serve_zmq(address: str) -> None:
    import zmq

    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.linger = 1000
    dealer.connect(address)
    dealer.send_multipart([bytes([READY]), pickle.dumps(os.getpid())])
    try:
        for _ in range(MAX_REQUESTS):
            if not dealer.poll(IDLE_SECONDS * 1000):
                return
            operation_frame, payload = dealer.recv_multipart(copy=False)
            operation = operation_frame.bytes[0]
            dealer.send_multipart([bytes([operation]), reply_payload(operation, payload.buffer)])
            if operation == STOP:
                return
    finally:
        dealer.close()
        context.term()


def receive_exactly(connection: socket.socket, size: int) -> bytearray:
    """Read exactly ``size`` bytes; raise EOFError when the peer closes first."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = connection.recv_into(view[received:])
        if count == 0:
            raise EOFError(f"connection closed after {received} of {size} bytes")
        received += count
    return buffer


def send_message(connection: socket.socket, operation: int, payload) -> None:
    """Send one header and payload; ``payload`` is any bytes-like object."""
    connection.sendall(HEADER.pack(operation, memoryview(payload).nbytes))
    connection.sendall(payload)


def receive_message(connection: socket.socket) -> tuple[int, bytearray]:
    """Read one header and its payload."""
    operation, size = HEADER.unpack(receive_exactly(connection, HEADER.size))
    return operation, receive_exactly(connection, size)


def serve_socket(host: str, port: int) -> None:
    connection = socket.create_connection((host, port), timeout=30)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connection.settimeout(IDLE_SECONDS)
    try:
        send_message(connection, READY, pickle.dumps(os.getpid()))
        for _ in range(MAX_REQUESTS):
            try:
                operation, payload = receive_message(connection)
            except (EOFError, TimeoutError):
                return
            send_message(connection, operation, reply_payload(operation, payload))
            if operation == STOP:
                return
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "zmq":
        serve_zmq(argv[1])
        return 0
    if len(argv) == 3 and argv[0] == "socket":
        serve_socket(argv[1], int(argv[2]))
        return 0
    print("usage: python -m benchmarks.raw_workers zmq tcp://HOST:PORT | socket HOST PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
