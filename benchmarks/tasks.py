"""Functions the benchmarks run on workers.

They live in an importable module, not in ``__main__``, so every peer can send them by
reference: pickle and cloudpickle send a module-level function as its module and name,
and the worker imports this module. The orchestrator puts the repository root on
PYTHONPATH so that every worker, local or over SSH on this machine, can import it.
"""

from __future__ import annotations

import os
import time


def add_one(x: int) -> int:
    """Return ``x + 1``: the trivial call of the latency and throughput measurements."""
    return x + 1


def add_one_to_each(batch: list[int]) -> list[int]:
    """Return ``[x + 1 for x in batch]``, for peers whose map has no batching of its own."""
    return [x + 1 for x in batch]


def sum_array(array) -> float:
    """Return the sum of a NumPy array as a Python float."""
    return float(array.sum())


def sum_float64_bytes(data: bytes) -> float:
    """Return the sum of ``data`` read as native float64 values."""
    import numpy

    return float(numpy.frombuffer(data, dtype=numpy.float64).sum())


def report_pid(pause: float = 0.0) -> int:
    """Sleep ``pause`` seconds, then return this process's OS pid.

    A pool whose workers take tasks from one shared queue gives no way to address a
    worker, so readiness checks send rounds of these. The pause keeps a ready worker
    busy long enough that the next task of the round goes to another worker.
    """
    if pause > 0:
        time.sleep(pause)
    return os.getpid()
