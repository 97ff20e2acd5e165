"""The standard library's pools: ``multiprocessing.Pool`` and ``ProcessPoolExecutor``.

Both use the platform's default start method (fork on Linux up to Python 3.13), and
neither can address a worker, so readiness and worker pids come from
``collect_worker_pids``. The pyaddprocs ``Pool`` and ``Executor`` front ends, planned
to follow these APIs, reuse the same adapters once they exist.
"""

from __future__ import annotations

import concurrent.futures

from benchmarks.peers.base import (
    BATCHED, DEFAULT, ONE_PER_MESSAGE, NotSupported, Peer, collect_worker_pids, readiness_task,
)
from benchmarks.tasks import add_one, sum_array

# Seconds start() waits for every worker to reply.
READY_TIMEOUT = 60.0
# Seconds a single result may take before the measurement fails.
RESULT_TIMEOUT = 600.0


class MultiprocessingPoolPeer(Peer):
    key = "multiprocessing"
    # The spawn start method: the portable one (the default on macOS and Windows), and
    # the one pyaddprocs' start-up target is set against. Fork starts faster on Linux.
    label = "multiprocessing.Pool (spawn)"
    modules = ("multiprocessing",)
    latency_call = "pool.apply(add_one, (x,))"
    map_calls = {
        ONE_PER_MESSAGE: "pool.map(add_one, items, chunksize=1)",
        BATCHED: "pool.map(add_one, items, chunksize={batch})",
        DEFAULT: "pool.map(add_one, items) (chunksize = ceil(n / (4 * workers)))",
    }
    transfer_call = "pool.apply(sum_array, (array,))"
    start_call = "get_context('spawn').Pool(2), then rounds of apply_async until both workers reply"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.pool = None

    def make_pool(self, workers: int):
        import multiprocessing

        return multiprocessing.get_context("spawn").Pool(workers)

    def start(self, workers: int) -> None:
        self.pool = self.make_pool(workers)
        function, args = readiness_task()

        def run_round(count: int) -> list[int]:
            results = [self.pool.apply_async(function, args) for _ in range(count)]
            return [result.get(timeout=READY_TIMEOUT) for result in results]

        self.worker_pids = collect_worker_pids(run_round, workers, READY_TIMEOUT)

    def stop(self) -> None:
        if self.pool is None:
            return
        # close() and join() let the workers exit on their own; terminate() would kill them.
        self.pool.close()
        self.pool.join()
        self.pool = None

    def call(self, index: int, x: int) -> int:
        return self.pool.apply(add_one, (x,))

    def map(self, items: list[int], mode: str) -> list[int]:
        if mode == ONE_PER_MESSAGE:
            return self.pool.map(add_one, items, chunksize=1)
        if mode == BATCHED:
            return self.pool.map(add_one, items, chunksize=self.settings.batch_size)
        if mode == DEFAULT:
            return self.pool.map(add_one, items)
        raise NotSupported(mode)

    def transfer(self, index: int, array) -> float:
        return self.pool.apply(sum_array, (array,))


class ProcessPoolExecutorPeer(Peer):
    key = "concurrent.futures"
    label = "ProcessPoolExecutor"
    modules = ("concurrent.futures",)
    latency_call = "executor.submit(add_one, x).result()"
    map_calls = {
        ONE_PER_MESSAGE: "executor.map(add_one, items, chunksize=1)",
        BATCHED: "executor.map(add_one, items, chunksize={batch})",
        DEFAULT: "executor.map(add_one, items) (default chunksize=1)",
    }
    transfer_call = "executor.submit(sum_array, array).result()"
    start_call = "ProcessPoolExecutor(2), then rounds of submit until both workers reply"
    default_is_one_per_message = True

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.executor = None

    def make_executor(self, workers: int):
        return concurrent.futures.ProcessPoolExecutor(max_workers=workers)

    def start(self, workers: int) -> None:
        self.executor = self.make_executor(workers)
        function, args = readiness_task()

        def run_round(count: int) -> list[int]:
            futures = [self.executor.submit(function, *args) for _ in range(count)]
            return [future.result(timeout=READY_TIMEOUT) for future in futures]

        self.worker_pids = collect_worker_pids(run_round, workers, READY_TIMEOUT)

    def stop(self) -> None:
        if self.executor is None:
            return
        self.executor.shutdown(wait=True)
        self.executor = None

    def call(self, index: int, x: int) -> int:
        return self.executor.submit(add_one, x).result(timeout=RESULT_TIMEOUT)

    def map(self, items: list[int], mode: str) -> list[int]:
        if mode in (ONE_PER_MESSAGE, DEFAULT):
            return list(self.executor.map(add_one, items, chunksize=1, timeout=RESULT_TIMEOUT))
        if mode == BATCHED:
            return list(self.executor.map(add_one, items, chunksize=self.settings.batch_size,
                                          timeout=RESULT_TIMEOUT))
        raise NotSupported(mode)

    def transfer(self, index: int, array) -> float:
        return self.executor.submit(sum_array, array).result(timeout=RESULT_TIMEOUT)


class PyaddprocsPoolPeer(MultiprocessingPoolPeer):
    """The planned ``pyaddprocs.Pool``; measured in the throughput table once it exists."""

    key = "pyaddprocs-pool"
    label = "pyaddprocs Pool"
    modules = ("pyaddprocs",)
    front_end = "Pool"
    throughput_only = True
    latency_call = "Pool.apply(add_one, (x,))"
    map_calls = {
        ONE_PER_MESSAGE: "pyaddprocs.Pool.map(add_one, items, chunksize=1)",
        BATCHED: "pyaddprocs.Pool.map(add_one, items, chunksize={batch})",
        DEFAULT: "pyaddprocs.Pool.map(add_one, items)",
    }
    start_call = "pyaddprocs.Pool(2)"

    # NOTE: not yet run, because pyaddprocs has no Pool; it follows the API contract
    # (the multiprocessing.pool.Pool methods apply, apply_async, map, close, join).
    def make_pool(self, workers: int):
        import pyaddprocs

        return pyaddprocs.Pool(workers)


class PyaddprocsExecutorPeer(ProcessPoolExecutorPeer):
    """The planned ``pyaddprocs.Executor``; measured in the throughput table once it exists."""

    key = "pyaddprocs-executor"
    label = "pyaddprocs Executor"
    modules = ("pyaddprocs",)
    front_end = "Executor"
    throughput_only = True
    latency_call = "Executor.submit(add_one, x).result()"
    map_calls = {
        ONE_PER_MESSAGE: "pyaddprocs.Executor.map(add_one, items, chunksize=1)",
        BATCHED: "pyaddprocs.Executor.map(add_one, items, chunksize={batch})",
        DEFAULT: "pyaddprocs.Executor.map(add_one, items)",
    }
    start_call = "pyaddprocs.Executor(2)"
    # The contract does not fix Executor.map's default chunksize, so measure it.
    default_is_one_per_message = False

    # NOTE: not yet run, because pyaddprocs has no Executor; it follows the API
    # contract (the concurrent.futures.Executor methods submit, map, shutdown).
    def make_executor(self, workers: int):
        import pyaddprocs

        return pyaddprocs.Executor(max_workers=workers)

    def map(self, items: list[int], mode: str) -> list[int]:
        if mode == DEFAULT:
            return list(self.executor.map(add_one, items, timeout=RESULT_TIMEOUT))
        return super().map(items, mode)
