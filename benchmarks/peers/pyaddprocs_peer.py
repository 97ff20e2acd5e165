"""pyaddprocs itself: ``addprocs``, ``remotecall_fetch``, ``pmap``, ``rmprocs``."""

from __future__ import annotations

import os

from benchmarks.peers.base import BATCHED, DEFAULT, ONE_PER_MESSAGE, NotSupported, Peer
from benchmarks.tasks import add_one, sum_array

# Seconds rmprocs waits for the workers to exit.
STOP_TIMEOUT = 30.0


class PyaddprocsPeer(Peer):
    key = "pyaddprocs"
    label = "pyaddprocs"
    modules = ("pyaddprocs", "zmq", "cloudpickle")
    latency_call = "remotecall_fetch(add_one, pid, x)"
    map_calls = {
        ONE_PER_MESSAGE: "pmap(add_one, items, batch_size=1)",
        BATCHED: "pmap(add_one, items, batch_size={batch})",
        DEFAULT: "pmap(add_one, items) (default batch_size=1)",
    }
    transfer_call = "remotecall_fetch(sum_array, pid, array)"
    start_call = "addprocs(2), then remotecall_fetch(os.getpid, pid) on each"
    default_is_one_per_message = True

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.pids: list[int] = []

    def start(self, workers: int) -> None:
        from pyaddprocs import addprocs, remotecall_fetch

        self.pids = addprocs(workers)
        self.worker_pids = [remotecall_fetch(os.getpid, pid) for pid in self.pids]

    def stop(self) -> None:
        from pyaddprocs import rmprocs, workers

        listed = [pid for pid in self.pids if pid in workers()]
        if listed:
            rmprocs(*listed, waitfor=STOP_TIMEOUT)
        self.pids = []

    def call(self, index: int, x: int) -> int:
        from pyaddprocs import remotecall_fetch

        return remotecall_fetch(add_one, self.pids[index % len(self.pids)], x)

    def map(self, items: list[int], mode: str) -> list[int]:
        from pyaddprocs import pmap

        if mode == ONE_PER_MESSAGE:
            return pmap(add_one, items, batch_size=1)
        if mode == BATCHED:
            return pmap(add_one, items, batch_size=self.settings.batch_size)
        if mode == DEFAULT:
            return pmap(add_one, items)
        raise NotSupported(mode)

    def transfer(self, index: int, array) -> float:
        from pyaddprocs import remotecall_fetch

        return remotecall_fetch(sum_array, self.pids[index % len(self.pids)], array)
