"""Throughput of many tiny tasks (``add_one``) through each peer's map, in three chunkings.

There are three map modes: one task per message, ``batch_size`` tasks per message,
and the library's default. Each run maps ``add_one`` over ``throughput_tasks``
integers, and the figure is the median of the runs' tasks per second.
"""

from __future__ import annotations

import time

from benchmarks.peers.base import DEFAULT, MAP_MODES, ONE_PER_MESSAGE, NotSupported
from benchmarks.stats import median

# Tasks of the untimed map before the first run of each mode.
WARMUP_TASKS = 100


def measure_throughput(peer, settings) -> dict:
    """Return, per map mode, tasks per second with each run's figure, or why the mode is n/a."""
    items = list(range(settings.throughput_tasks))
    expected = [x + 1 for x in items]
    figures = {}
    for mode in MAP_MODES:
        call = peer.map_calls.get(mode, "").replace("{batch}", str(settings.batch_size))
        if mode == DEFAULT and peer.default_is_one_per_message and ONE_PER_MESSAGE in figures:
            figures[mode] = {**figures[ONE_PER_MESSAGE], "call": call, "same_as": ONE_PER_MESSAGE}
            continue
        try:
            peer.map(list(range(min(WARMUP_TASKS, len(items)))), mode)
        except NotSupported as reason:
            figures[mode] = {"not_supported": str(reason)}
            continue
        runs = []
        for _ in range(settings.throughput_runs):
            started = time.perf_counter()
            results = peer.map(items, mode)
            elapsed = time.perf_counter() - started
            if list(results) != expected:
                raise AssertionError(f"{mode} map returned wrong results (first ten: {list(results)[:10]})")
            runs.append({"seconds": elapsed, "tasks_per_second": len(items) / elapsed})
        figures[mode] = {
            "call": call,
            "tasks": len(items),
            "tasks_per_second": median([run["tasks_per_second"] for run in runs]),
            "runs": runs,
        }
    return figures
