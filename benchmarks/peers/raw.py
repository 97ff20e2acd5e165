"""Raw transports without a framework: pyzmq DEALER/ROUTER and plain TCP sockets.

The master side of ``benchmarks.raw_workers``; see that module for the protocol.
Maps keep ``MAP_WINDOW`` requests in flight per worker, as pmap does, so the
throughput rows show what the transport allows with the same pipelining.
"""

from __future__ import annotations

import collections
import pickle
import socket
import subprocess
import sys

from benchmarks.peers.base import BATCHED, ONE_PER_MESSAGE, NotSupported, Peer, chunks
from benchmarks.raw_workers import ADD_ONE, ADD_ONE_TO_EACH, READY, STOP, SUM_FLOAT64, receive_message, send_message

# Requests in flight per worker during a map.
MAP_WINDOW = 2
# Seconds to wait for a worker to connect, or for a single reply.
CONNECT_TIMEOUT = 60.0
REPLY_TIMEOUT = 600.0
# Seconds a worker gets to exit after STOP before it is killed.
EXIT_TIMEOUT = 10.0


class RawPeer(Peer):
    """Base of both raw transports: worker processes, windowed maps and the stop."""

    map_calls = {
        ONE_PER_MESSAGE: f"one pickled int per message, {MAP_WINDOW} in flight per worker",
        BATCHED: f"pickled lists of {{batch}} ints, {MAP_WINDOW} in flight per worker",
    }
    transport = ""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.processes: list[subprocess.Popen] = []

    def spawn_workers(self, workers: int, arguments: list[str]) -> None:
        command = [sys.executable, "-m", "benchmarks.raw_workers", self.transport, *arguments]
        self.processes = [subprocess.Popen(command, stdin=subprocess.DEVNULL) for _ in range(workers)]

    def request(self, slot: int, operation: int, payload) -> bytes:
        """Send one request to worker ``slot`` and return the reply payload."""
        self.send(slot, operation, payload)
        return self.receive(slot)

    def send(self, slot: int, operation: int, payload) -> None:
        raise NotImplementedError

    def receive(self, slot: int):
        raise NotImplementedError

    def call(self, index: int, x: int) -> int:
        return pickle.loads(self.request(index % len(self.processes), ADD_ONE, pickle.dumps(x)))

    def transfer(self, index: int, array) -> float:
        return pickle.loads(self.request(index % len(self.processes), SUM_FLOAT64, memoryview(array).cast("B")))

    def map(self, items: list[int], mode: str) -> list[int]:
        if mode == ONE_PER_MESSAGE:
            return self._windowed(ADD_ONE, items)
        if mode == BATCHED:
            batches = self._windowed(ADD_ONE_TO_EACH, chunks(items, self.settings.batch_size))
            return [value for batch in batches for value in batch]
        raise NotSupported(f"a raw transport has no map of its own ({mode})")

    def _windowed(self, operation: int, values: list) -> list:
        """Send ``values`` round-robin, at most MAP_WINDOW in flight per worker; return the replies in order."""
        results = [None] * len(values)
        # Per worker: indices of values sent and not yet replied to, oldest first.
        pending = [[] for _ in self.processes]
        next_index = 0
        received = 0
        while received < len(values):
            for slot in range(len(self.processes)):
                while next_index < len(values) and len(pending[slot]) < MAP_WINDOW:
                    self.send(slot, operation, pickle.dumps(values[next_index]))
                    pending[slot].append(next_index)
                    next_index += 1
            for slot in range(len(self.processes)):
                if pending[slot]:
                    results[pending[slot].pop(0)] = pickle.loads(self.receive(slot))
                    received += 1
        return results

    def stop_workers(self) -> None:
        for slot, process in enumerate(self.processes):
            if process.poll() is None:
                try:
                    self.request(slot, STOP, b"")
                except Exception:
                    pass  # the process is killed below if it does not exit
        for process in self.processes:
            try:
                process.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=EXIT_TIMEOUT)
        self.processes = []


class RawZmqPeer(RawPeer):
    key = "raw-zmq"
    label = "raw pyzmq"
    modules = ("zmq",)
    transport = "zmq"
    latency_call = "ROUTER send / recv of a pickled int, worker DEALER adds 1"
    transfer_call = "ROUTER sends the array buffer as one frame (copy=False), worker sums it"
    start_call = "2 × Popen(python -m benchmarks.raw_workers zmq), READY from each"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.context = None
        self.router = None
        # Worker slot -> ZeroMQ routing identity of its DEALER.
        self.identities: list[bytes] = []
        # Worker slot -> replies received and not yet returned by receive().
        self.reply_queues: list[collections.deque] = []

    def start(self, workers: int) -> None:
        import zmq

        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.linger = 0
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.spawn_workers(workers, [f"tcp://127.0.0.1:{port}"])
        by_pid: dict[int, bytes] = {}
        while len(by_pid) < workers:
            if not self.router.poll(CONNECT_TIMEOUT * 1000):
                raise TimeoutError(f"{len(by_pid)} of {workers} raw zmq workers connected within {CONNECT_TIMEOUT:g} s")
            identity, operation, payload = self.router.recv_multipart()
            if operation[0] == READY:
                by_pid[pickle.loads(payload)] = identity
        self.worker_pids = [process.pid for process in self.processes]
        self.identities = [by_pid[ospid] for ospid in self.worker_pids]
        self.reply_queues = [collections.deque() for _ in self.worker_pids]

    def send(self, slot: int, operation: int, payload) -> None:
        self.router.send_multipart([self.identities[slot], bytes([operation]), payload], copy=False)

    def receive(self, slot: int):
        # One ROUTER receives the replies of all workers, and in a windowed map the
        # next reply may come from another worker than the one asked for, so replies
        # wait in a queue per worker until they are asked for.
        queued = self.reply_queues[slot]
        while not queued:
            if not self.router.poll(REPLY_TIMEOUT * 1000):
                raise TimeoutError(f"no reply from raw zmq worker {slot} within {REPLY_TIMEOUT:g} s")
            identity, _operation, payload = self.router.recv_multipart(copy=False)
            self.reply_queues[self.identities.index(identity.bytes)].append(payload.buffer)
        return queued.popleft()

    def stop(self) -> None:
        try:
            if self.router is not None and self.identities:
                self.stop_workers()
        finally:
            for process in self.processes:
                process.kill()
                process.wait(timeout=EXIT_TIMEOUT)
            self.processes = []
            if self.router is not None:
                self.router.close()
                self.context.term()
                self.router = None


class RawSocketPeer(RawPeer):
    key = "raw-socket"
    label = "raw socket"
    modules = ()
    transport = "socket"
    latency_call = "sendall / recv_into of a pickled int with a 9-byte header, worker adds 1"
    transfer_call = "sendall of the array buffer, worker recv_into a bytearray and sums it"
    start_call = "2 × Popen(python -m benchmarks.raw_workers socket), READY from each"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.listener = None
        self.connections: list[socket.socket] = []

    def start(self, workers: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(CONNECT_TIMEOUT)
        port = self.listener.getsockname()[1]
        self.spawn_workers(workers, ["127.0.0.1", str(port)])
        by_pid: dict[int, socket.socket] = {}
        for _ in range(workers):
            connection, _address = self.listener.accept()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection.settimeout(REPLY_TIMEOUT)
            operation, payload = receive_message(connection)
            if operation != READY:
                raise RuntimeError(f"raw socket worker sent operation {operation} before READY")
            by_pid[pickle.loads(payload)] = connection
        self.worker_pids = [process.pid for process in self.processes]
        self.connections = [by_pid[ospid] for ospid in self.worker_pids]

    def send(self, slot: int, operation: int, payload) -> None:
        send_message(self.connections[slot], operation, payload)

    def receive(self, slot: int):
        _operation, payload = receive_message(self.connections[slot])
        return payload

    def stop(self) -> None:
        try:
            if self.connections:
                self.stop_workers()
        finally:
            for process in self.processes:
                process.kill()
                process.wait(timeout=EXIT_TIMEOUT)
            self.processes = []
            for connection in self.connections:
                connection.close()
            self.connections = []
            if self.listener is not None:
                self.listener.close()
                self.listener = None
