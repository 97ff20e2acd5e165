"""ipyparallel: a controller process and IPython engines, started with ``ipyparallel.Cluster``."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from benchmarks.peers.base import BATCHED, DEFAULT, ONE_PER_MESSAGE, NotSupported, Peer
from benchmarks.tasks import add_one, sum_array


class IpyparallelPeer(Peer):
    key = "ipyparallel"
    label = "ipyparallel"
    modules = ("ipyparallel",)
    latency_call = "client[i].apply_sync(add_one, x) (DirectView)"
    map_calls = {
        ONE_PER_MESSAGE: "load_balanced_view().map_sync(add_one, items, chunksize=1)",
        BATCHED: "load_balanced_view().map_sync(add_one, items, chunksize={batch})",
        DEFAULT: "client[:].map_sync(add_one, items) (DirectView: one part per engine)",
    }
    transfer_call = "client[i].apply_sync(sum_array, array)"
    start_call = "Cluster(n=2).start_and_connect_sync(), then client[:].apply_sync(os.getpid)"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.cluster = None
        self.client = None
        self.views = []
        self.ipython_dir = None

    def start(self, workers: int) -> None:
        # A private IPYTHONDIR keeps the profile and connection files out of ~/.ipython;
        # IPython reads the variable when the cluster resolves its profile directory.
        self.ipython_dir = tempfile.mkdtemp(prefix="pyaddprocs-bench-ipython-")
        os.environ["IPYTHONDIR"] = self.ipython_dir
        import ipyparallel

        self.cluster = ipyparallel.Cluster(n=workers, controller_ip="127.0.0.1", log_level=logging.WARNING)
        self.client = self.cluster.start_and_connect_sync()
        self.views = [self.client[engine] for engine in self.client.ids]
        self.worker_pids = self.client[:].apply_sync(os.getpid)

    def stop(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.stop_cluster_sync()
        finally:
            self.client = None
            self.cluster = None
            if self.ipython_dir is not None:
                shutil.rmtree(self.ipython_dir, ignore_errors=True)
                self.ipython_dir = None

    def call(self, index: int, x: int) -> int:
        return self.views[index % len(self.views)].apply_sync(add_one, x)

    def map(self, items: list[int], mode: str) -> list[int]:
        if mode == ONE_PER_MESSAGE:
            return self.client.load_balanced_view().map_sync(add_one, items, chunksize=1)
        if mode == BATCHED:
            return self.client.load_balanced_view().map_sync(add_one, items, chunksize=self.settings.batch_size)
        if mode == DEFAULT:
            return self.client[:].map_sync(add_one, items)
        raise NotSupported(mode)

    def transfer(self, index: int, array) -> float:
        return self.views[index % len(self.views)].apply_sync(sum_array, array)
