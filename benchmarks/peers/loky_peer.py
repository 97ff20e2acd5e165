"""loky: joblib's ``ProcessPoolExecutor``, with cloudpickle and its own spawn-like start method."""

from __future__ import annotations

from benchmarks.peers.stdlib import ProcessPoolExecutorPeer


class LokyPeer(ProcessPoolExecutorPeer):
    key = "loky"
    label = "loky"
    modules = ("loky",)
    latency_call = "executor.submit(add_one, x).result()"
    start_call = "loky.ProcessPoolExecutor(2), then rounds of submit until both workers reply"

    # loky.get_reusable_executor() would keep its workers after the measurement, so
    # every start makes a fresh executor and shuts it down.
    def make_executor(self, workers: int):
        import loky

        return loky.ProcessPoolExecutor(max_workers=workers)
