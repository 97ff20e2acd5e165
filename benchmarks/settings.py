"""Counts, repetitions and time limits of the three modes: full, ``--quick`` and ``--smoke``.

Every loop in the suite is bounded twice: by a count from here and by a time limit.
With the quick counts, all peers together finished in about 2 minutes on a 2-core
machine. The smoke counts only check that every code path runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Measurement groups a child process can run, in the order the orchestrator runs them.
# The first three share one started cluster per peer; the others start their own.
STEADY = ("latency", "throughput", "transfer")
MEASUREMENTS = (*STEADY, "startup", "ssh", "memory")

# Workers of every measurement except memory and the SSH start-up.
WORKERS = 2

# Bytes of the array of the transfer measurement: 100 MB (10**8 bytes) of float64.
ARRAY_BYTES = 100_000_000


@dataclass(frozen=True)
class Settings:
    """The counts of one mode; the child processes receive them as JSON."""

    mode: str
    # Latency: runs, and per run at most this many calls or this many seconds.
    latency_runs: int
    latency_calls: int
    latency_seconds: float
    # Throughput: runs of one map over this many tiny tasks, in batches of this size.
    # The batch size is what multiprocessing.Pool.map picks by default for that many
    # tasks on 2 workers, ceil(tasks / (4 * 2)), so the batched rows send as many
    # messages as Pool.map's default chunking does.
    throughput_runs: int
    throughput_tasks: int
    batch_size: int
    # Transfer: round trips of an array of this many bytes.
    transfer_runs: int
    array_bytes: int
    # Start-up: starts of WORKERS workers, each followed by a stop.
    startup_runs: int
    # Start-up over SSH: hosts, workers per host of the large case, starts per case.
    ssh_runs: int
    ssh_hosts: int
    ssh_workers_per_host: int
    # Memory: idle workers, and seconds they stay idle before VmRSS is read.
    memory_workers: int
    memory_settle_seconds: float
    # Seconds one child process may run before it and its processes are killed.
    child_timeout: float

    def to_json(self) -> dict:
        return asdict(self)


FULL = Settings(
    mode="full",
    latency_runs=5, latency_calls=5000, latency_seconds=15.0,
    throughput_runs=3, throughput_tasks=10_000, batch_size=1250,
    transfer_runs=9, array_bytes=ARRAY_BYTES,
    startup_runs=5,
    ssh_runs=3, ssh_hosts=4, ssh_workers_per_host=4,
    memory_workers=32, memory_settle_seconds=2.0,
    child_timeout=1200.0,
)

QUICK = Settings(
    mode="quick",
    latency_runs=3, latency_calls=1000, latency_seconds=1.0,
    throughput_runs=2, throughput_tasks=1000, batch_size=125,
    transfer_runs=5, array_bytes=ARRAY_BYTES,
    startup_runs=2,
    ssh_runs=1, ssh_hosts=4, ssh_workers_per_host=4,
    memory_workers=8, memory_settle_seconds=1.0,
    child_timeout=150.0,
)

SMOKE = Settings(
    mode="smoke",
    latency_runs=1, latency_calls=20, latency_seconds=0.5,
    throughput_runs=1, throughput_tasks=40, batch_size=5,
    transfer_runs=1, array_bytes=1_000_000,
    startup_runs=1,
    ssh_runs=1, ssh_hosts=1, ssh_workers_per_host=2,
    memory_workers=2, memory_settle_seconds=0.2,
    child_timeout=60.0,
)


def settings_for(quick: bool, smoke: bool) -> Settings:
    """Return the settings of the requested mode; ``smoke`` takes precedence over ``quick``."""
    if smoke:
        return SMOKE
    return QUICK if quick else FULL


def settings_from_json(data: dict) -> Settings:
    """Rebuild Settings from ``Settings.to_json()`` output."""
    return Settings(**data)
