"""Round-trip latency of a trivial call (``add_one``) on a started peer.

Each run times calls one at a time, alternating between the workers where the peer
can address them, until ``latency_calls`` calls or ``latency_seconds`` have passed.
A run yields its median and p99; the figures are the medians of these over the runs.
"""

from __future__ import annotations

import time

from benchmarks.stats import Deadline, median, percentile

# Untimed calls before the first run, so imports and first connections are not measured.
WARMUP_CALLS = 20


def measure_latency(peer, settings) -> dict:
    """Return the latency figures of ``peer`` in microseconds, with each run's figures."""
    for index in range(WARMUP_CALLS):
        _check(peer.call(index, index), index)
    runs = []
    for _ in range(settings.latency_runs):
        durations_ns = []
        deadline = Deadline(settings.latency_seconds)
        for index in range(settings.latency_calls):
            started = time.perf_counter_ns()
            result = peer.call(index, index)
            durations_ns.append(time.perf_counter_ns() - started)
            _check(result, index)
            if deadline.passed():
                break
        microseconds = [duration / 1000 for duration in durations_ns]
        runs.append({"calls": len(microseconds), "median_us": median(microseconds),
                     "p99_us": percentile(microseconds, 0.99)})
    return {
        "call": peer.latency_call,
        "median_us": median([run["median_us"] for run in runs]),
        "p99_us": median([run["p99_us"] for run in runs]),
        "calls_per_run": median([run["calls"] for run in runs]),
        "runs": runs,
    }


def _check(result, x: int) -> None:
    if result != x + 1:
        raise AssertionError(f"add_one({x}) returned {result!r}, expected {x + 1}")
