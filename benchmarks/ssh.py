"""Start-up of pyaddprocs workers over SSH on network-namespace hosts of this machine.

Reuses the test suite's infrastructure: ``tests.netns.TestNetwork`` makes a private
bridge (10.213.0.0/24) with one namespace per host, each running its own sshd, and
removes all of it in ``stop()``. This needs root and a working ``ip netns``.

Two cases: 1 worker on one host, and ``ssh_workers_per_host`` workers on each of
``ssh_hosts`` hosts (16 on 4 in the full and quick modes). Each run times
``addprocs`` until every new worker has replied to a call, then ``rmprocs``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.peers.base import repository_root
from benchmarks.stats import median

# Seconds rmprocs waits for the SSH workers to exit.
STOP_TIMEOUT = 30.0
# Name prefix of the bridges that tests.netns.TestNetwork makes.
BRIDGE_PREFIX = "pyapbr"


def ssh_unavailable_reason() -> str | None:
    """Return why the SSH start-up cannot run here, or None when it can."""
    try:
        from tests.netns import netns_possible
        from tests.sshd import ssh_tests_possible
    except ImportError as err:
        return f"the test infrastructure in tests/ cannot be imported: {err}"
    return ssh_tests_possible() or netns_possible() or busy_test_network()


def busy_test_network() -> str | None:
    """Return a reason when another TestNetwork's bridge exists, else None.

    Every TestNetwork puts 10.213.0.1/24 on its bridge, so a second one at the same
    time (a test run of the SSH suite, for example) would break the routes of both.
    """
    listed = subprocess.run(["ip", "-brief", "link", "show", "type", "bridge"], capture_output=True, text=True)
    bridges = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith(BRIDGE_PREFIX)]
    if bridges:
        return (f"another test network (bridge {', '.join(bridges)}) is using 10.213.0.0/24; run again after "
                f"it is gone, or, when no test or benchmark run is using it, remove it with "
                f"`ip link delete {bridges[0]}` and its namespaces (pyap-*) with `ip netns delete`")
    return None


def ssh_cases(settings, hosts) -> list[tuple[str, list]]:
    """Return (label, machines) for each case, with machines as addprocs takes them."""
    per_host = settings.ssh_workers_per_host
    used = hosts[:settings.ssh_hosts]
    total = per_host * len(used)
    return [
        ("1 worker on 1 host", [(f"root@{hosts[0].ipv4}", 1)]),
        (f"{total} workers on {len(used)} host{'s' if len(used) > 1 else ''}",
         [(f"root@{host.ipv4}", per_host) for host in used]),
    ]


def measure_ssh_startup(settings) -> dict:
    """Return, per case, the median seconds of addprocs until every worker replied, and of rmprocs."""
    from pyaddprocs import addprocs, remotecall_fetch, rmprocs
    from tests.netns import TestNetwork

    network = TestNetwork(settings.ssh_hosts)
    try:
        setup_started = time.perf_counter()
        network.start()
        setup_seconds = time.perf_counter() - setup_started
        cases = {}
        for label, machines in ssh_cases(settings, network.hosts):
            runs = []
            for _ in range(settings.ssh_runs):
                started = time.perf_counter()
                pids = addprocs(machines, sshflags=network.client_flags, exename=sys.executable,
                                env={"PYTHONPATH": repository_root()})
                try:
                    for pid in pids:
                        remotecall_fetch(os.getpid, pid)
                    ready = time.perf_counter()
                finally:
                    stopping = time.perf_counter()
                    rmprocs(*pids, waitfor=STOP_TIMEOUT)
                    stopped = time.perf_counter()
                runs.append({"workers": len(pids), "start_seconds": ready - started,
                             "stop_seconds": stopped - stopping})
            cases[label] = {
                "call": "addprocs([(\"root@10.213.0.1x\", n), ...], sshflags=..., exename=sys.executable)",
                "workers": runs[0]["workers"],
                "start_seconds": median([run["start_seconds"] for run in runs]),
                "stop_seconds": median([run["stop_seconds"] for run in runs]),
                "runs": runs,
            }
        return {"network_setup_seconds": setup_seconds, "cases": cases}
    finally:
        network.stop()
