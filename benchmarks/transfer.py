"""Round trip of a large NumPy array: send it to a worker, return its sum.

The array contains ``array_bytes`` bytes of random float64 values, so no transport can
compress it. Runs alternate between the workers where the peer can address them.
"""

from __future__ import annotations

import math
import time

from benchmarks.stats import median

# Bytes of the untimed transfer before the first run, which makes workers import NumPy.
WARMUP_BYTES = 1_000_000
# A worker's sum may differ from the master's in the last bits, because NumPy's
# pairwise summation depends on buffer alignment. A larger relative error is a fault.
RELATIVE_TOLERANCE = 1e-9


def make_array(size_bytes: int):
    """Return a float64 array of ``size_bytes`` bytes of reproducible random values."""
    import numpy

    return numpy.random.default_rng(0).random(size_bytes // 8)


def measure_transfer(peer, settings) -> dict:
    """Return the median round trip in seconds and the resulting rate, with each run's time."""
    peer.transfer(0, make_array(min(WARMUP_BYTES, settings.array_bytes)))
    array = make_array(settings.array_bytes)
    expected = float(array.sum())
    runs = []
    for index in range(settings.transfer_runs):
        started = time.perf_counter()
        total = peer.transfer(index, array)
        elapsed = time.perf_counter() - started
        if not math.isclose(total, expected, rel_tol=RELATIVE_TOLERANCE):
            raise AssertionError(f"worker returned sum {total!r}, expected {expected!r}")
        runs.append({"seconds": elapsed})
    seconds = median([run["seconds"] for run in runs])
    return {
        "call": peer.transfer_call,
        "bytes": array.nbytes,
        "seconds": seconds,
        "gigabytes_per_second": array.nbytes / seconds / 1e9,
        "runs": runs,
    }
