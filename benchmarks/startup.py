"""Start-up and memory: fresh starts of a peer's workers, and the memory of idle workers.

Start-up times each run from the start call until every worker has replied to a call,
then times the stop separately. The peer's library is imported before the first run,
and the import time is reported on its own. Memory starts ``memory_workers`` workers,
lets them idle, and reads VmRSS of the master, the workers and every other process
the peer started.
"""

from __future__ import annotations

import collections
import importlib
import os
import time

from benchmarks.processes import command_line, descendants, lingering_descendants, program_name, resident_kib
from benchmarks.stats import median

# Seconds after a stop in which the peer's processes must have exited to not count as
# lingering. Lingering is only recorded; the orchestrator's check after the child has
# exited decides what is a leak.
EXIT_GRACE = 1.0


def import_modules(peer_class) -> float:
    """Import the peer's library and return how many seconds that took."""
    started = time.perf_counter()
    for name in peer_class.modules:
        importlib.import_module(name)
    return time.perf_counter() - started


def measure_startup(peer_class, settings, workers: int) -> dict:
    """Return the median start and stop times over ``startup_runs`` fresh starts."""
    import_seconds = import_modules(peer_class)
    runs = []
    for _ in range(settings.startup_runs):
        peer = peer_class(settings)
        started = time.perf_counter()
        try:
            peer.start(workers)
            ready = time.perf_counter()
        finally:
            stopping = time.perf_counter()
            peer.stop()
            stopped = time.perf_counter()
        # Processes still running after the stop are recorded but not counted as a leak,
        # because some libraries keep one helper per master process (loky's resource
        # tracker) that exits with the child. The orchestrator checks for leaks then.
        lingering = lingering_descendants(os.getpid(), EXIT_GRACE)
        runs.append({"start_seconds": ready - started, "stop_seconds": stopped - stopping,
                     "lingering_after_stop": lingering})
    return {
        "call": peer_class.start_call,
        "workers": workers,
        "import_seconds": import_seconds,
        "start_seconds": median([run["start_seconds"] for run in runs]),
        "stop_seconds": median([run["stop_seconds"] for run in runs]),
        "runs": runs,
    }


def measure_memory(peer_class, settings) -> dict:
    """Return VmRSS in KiB of the master, of each idle worker and of the peer's other processes."""
    import_modules(peer_class)
    peer = peer_class(settings)
    try:
        peer.start(settings.memory_workers)
        time.sleep(settings.memory_settle_seconds)
        master_kib = resident_kib(os.getpid())
        worker_kib = [resident_kib(ospid) or 0 for ospid in peer.worker_pids]
        others = [ospid for ospid in descendants(os.getpid()) if ospid not in peer.worker_pids]
        other_kib = [resident_kib(ospid) or 0 for ospid in others]
        other_names = collections.Counter(program_name(command_line(ospid)) for ospid in others)
    finally:
        peer.stop()
    return {
        "workers": settings.memory_workers,
        "master_kib": master_kib,
        "worker_median_kib": median(worker_kib),
        "workers_total_kib": sum(worker_kib),
        "other_processes": len(others),
        "other_total_kib": sum(other_kib),
        "other_programs": dict(other_names.most_common()),
        "all_processes_kib": master_kib + sum(worker_kib) + sum(other_kib),
        "worker_kib": worker_kib,
    }
