"""execnet: one popen gateway per worker, each running an echo loop on a channel.

execnet sends only builtin types, so the transfer sends the array's bytes and the
worker reads them back with ``numpy.frombuffer``. It has no map, so the throughput
measurement keeps ``MAP_WINDOW`` items in flight per gateway, as pmap does.
"""

from __future__ import annotations

import sys

from benchmarks.peers.base import BATCHED, ONE_PER_MESSAGE, NotSupported, Peer, chunks

# Messages in flight per gateway during a map.
MAP_WINDOW = 2
# Seconds to wait for a single reply before the measurement fails.
REPLY_TIMEOUT = 600.0

# Runs on the worker. A channel message is (operation, payload); None ends the loop.
# The loop also ends after IDLE_SECONDS without a message, so a lost master cannot
# leave it running.
WORKER_SOURCE = """
import os
IDLE_SECONDS = 600
while True:
    try:
        message = channel.receive(timeout=IDLE_SECONDS)
    except channel.TimeoutError:
        break
    if message is None:
        break
    operation, payload = message
    if operation == "add_one":
        channel.send(payload + 1)
    elif operation == "add_one_to_each":
        channel.send([x + 1 for x in payload])
    elif operation == "sum_float64_bytes":
        import numpy
        channel.send(float(numpy.frombuffer(payload, dtype=numpy.float64).sum()))
    elif operation == "pid":
        channel.send(os.getpid())
    else:
        channel.send(("unknown operation", operation))
"""


class ExecnetPeer(Peer):
    key = "execnet"
    label = "execnet"
    modules = ("execnet",)
    latency_call = "channel.send(x); channel.receive() (echo loop adds 1)"
    map_calls = {
        ONE_PER_MESSAGE: f"send/receive one item per message, {MAP_WINDOW} in flight per gateway",
        BATCHED: f"send/receive lists of {{batch}} items, {MAP_WINDOW} in flight per gateway",
    }
    transfer_call = "channel.send(array.tobytes()); worker sums numpy.frombuffer(...)"
    start_call = "2 × makegateway('popen//python=...'), remote_exec, one pid request each"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.group = None
        self.channels = []

    def start(self, workers: int) -> None:
        import execnet

        self.group = execnet.Group()
        for _ in range(workers):
            gateway = self.group.makegateway(f"popen//python={sys.executable}")
            self.channels.append(gateway.remote_exec(WORKER_SOURCE))
        for channel in self.channels:
            channel.send(("pid", None))
        self.worker_pids = [channel.receive(timeout=REPLY_TIMEOUT) for channel in self.channels]

    def stop(self) -> None:
        for channel in self.channels:
            try:
                channel.send(None)
                channel.waitclose(timeout=10)
            except Exception:
                pass  # the gateway is ended below in any case
        self.channels = []
        if self.group is not None:
            self.group.terminate(timeout=10)
            self.group = None

    def call(self, index: int, x: int) -> int:
        channel = self.channels[index % len(self.channels)]
        channel.send(("add_one", x))
        return channel.receive(timeout=REPLY_TIMEOUT)

    def map(self, items: list[int], mode: str) -> list[int]:
        if mode == ONE_PER_MESSAGE:
            return self._windowed("add_one", items)
        if mode == BATCHED:
            batches = self._windowed("add_one_to_each", chunks(items, self.settings.batch_size))
            return [value for batch in batches for value in batch]
        raise NotSupported(f"execnet has no map with chunking of its own ({mode})")

    def _windowed(self, operation: str, payloads: list) -> list:
        """Send ``payloads`` round-robin, at most MAP_WINDOW in flight per channel; return the replies in order."""
        results = [None] * len(payloads)
        # Per channel: indices of payloads sent and not yet replied to, oldest first.
        pending = [[] for _ in self.channels]
        next_index = 0
        received = 0
        while received < len(payloads):
            for slot, channel in enumerate(self.channels):
                while next_index < len(payloads) and len(pending[slot]) < MAP_WINDOW:
                    channel.send((operation, payloads[next_index]))
                    pending[slot].append(next_index)
                    next_index += 1
            for slot, channel in enumerate(self.channels):
                if pending[slot]:
                    results[pending[slot].pop(0)] = channel.receive(timeout=REPLY_TIMEOUT)
                    received += 1
        return results

    def transfer(self, index: int, array) -> float:
        channel = self.channels[index % len(self.channels)]
        channel.send(("sum_float64_bytes", array.tobytes()))
        return channel.receive(timeout=REPLY_TIMEOUT)
