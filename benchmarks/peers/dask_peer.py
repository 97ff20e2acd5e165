"""dask.distributed: ``LocalCluster`` with one single-threaded worker process per worker."""

from __future__ import annotations

import logging
import os
import warnings

from benchmarks.peers.base import BATCHED, DEFAULT, ONE_PER_MESSAGE, NotSupported, Peer, chunks
from benchmarks.tasks import add_one, add_one_to_each, sum_array

# Seconds a single result may take before the measurement fails.
RESULT_TIMEOUT = 600.0


class DaskPeer(Peer):
    key = "dask"
    label = "dask.distributed"
    modules = ("dask", "distributed")
    latency_call = "client.submit(add_one, x, pure=False).result()"
    map_calls = {
        ONE_PER_MESSAGE: "client.gather(client.map(add_one, items, pure=False))",
        BATCHED: "client.map(add_one_to_each, lists of {batch} items) (dask has no chunksize)",
        DEFAULT: "client.map(add_one, items) (one task per item)",
    }
    transfer_call = "client.submit(sum_array, array, pure=False).result()"
    start_call = "LocalCluster(n_workers=2, threads_per_worker=1, processes=True), Client, client.run(os.getpid)"
    default_is_one_per_message = True

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.cluster = None
        self.client = None

    def start(self, workers: int) -> None:
        from dask.distributed import Client, LocalCluster

        # pure=False in every submit: with the default pure=True, dask names a task by
        # the hash of its arguments and returns a cached result for a repeated call.
        self.cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
        )
        self.client = Client(self.cluster)
        self.client.wait_for_workers(workers)
        self.worker_pids = sorted(self.client.run(os.getpid).values())

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            self.client = None
            if self.cluster is not None:
                self.cluster.close()
                self.cluster = None

    def call(self, index: int, x: int) -> int:
        return self.client.submit(add_one, x, pure=False).result(timeout=RESULT_TIMEOUT)

    def map(self, items: list[int], mode: str) -> list[int]:
        if mode in (ONE_PER_MESSAGE, DEFAULT):
            return self.client.gather(self.client.map(add_one, items, pure=False))
        if mode == BATCHED:
            batches = self.client.gather(
                self.client.map(add_one_to_each, chunks(items, self.settings.batch_size), pure=False))
            return [value for batch in batches for value in batch]
        raise NotSupported(mode)

    def transfer(self, index: int, array) -> float:
        # dask warns about a large argument in the task graph and suggests scatter().
        # Sending the argument is what this measures, so the warning is silenced.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.client.submit(sum_array, array, pure=False).result(timeout=RESULT_TIMEOUT)
