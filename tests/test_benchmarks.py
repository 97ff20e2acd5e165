"""The benchmark suite runs end to end in its quick mode: ``python -m benchmarks --quick``.

Two fast peers besides pyaddprocs keep the run to about 20 seconds. The checks are
on the report's shape, never on timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.support import REPO_ROOT, script_env

# Seconds the quick run may take; it needs about 20 s on a 2-core machine.
QUICK_TIMEOUT = 300

QUICK_PEERS = ("pyaddprocs", "raw-socket", "multiprocessing")

# Measurement -> a figure every peer's result must contain.
MEASURED_FIGURES = {
    "latency": "median_us",
    "transfer": "seconds",
    "startup": "start_seconds",
    "memory": "worker_median_kib",
}


@dataclass
class QuickRun:
    completed: subprocess.CompletedProcess
    markdown: str
    report: dict


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> QuickRun:
    """Run the suite once in quick mode for the whole module."""
    output_dir = tmp_path_factory.mktemp("benchmarks")
    command = [sys.executable, "-m", "benchmarks", "--quick",
               "--peers", ",".join(QUICK_PEERS[1:]), "--output-dir", str(output_dir)]
    completed = subprocess.run(command, cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True,
                               timeout=QUICK_TIMEOUT)
    assert completed.returncode == 0, f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    return QuickRun(completed, (output_dir / "latest.md").read_text(),
                    json.loads((output_dir / "latest.json").read_text()))


def test_quick_run_prints_table(quick):
    assert "| pyaddprocs |" in quick.markdown
    assert "| multiprocessing.Pool (spawn) |" in quick.markdown
    assert quick.markdown.strip() in quick.completed.stdout


def test_quick_run_has_no_failures_or_leaks(quick):
    assert quick.report["settings"]["mode"] == "quick"
    assert quick.report["failures"] == []
    assert quick.report["leaks"] == []


@pytest.mark.parametrize("measurement", sorted(MEASURED_FIGURES))
def test_quick_run_measures_each_peer(quick, measurement):
    results = quick.report["results"][measurement]
    for peer in QUICK_PEERS:
        assert MEASURED_FIGURES[measurement] in results[peer], (peer, results[peer])


def test_quick_run_measures_every_map_mode(quick):
    throughput = quick.report["results"]["throughput"]
    for mode in ("one", "batched", "default"):
        assert "tasks_per_second" in throughput["pyaddprocs"][mode], throughput["pyaddprocs"]
        assert "tasks_per_second" in throughput["multiprocessing"][mode], throughput["multiprocessing"]
    assert "not_supported" in throughput["raw-socket"]["default"]


def test_ssh_startup_runs_or_says_why(quick):
    ssh = quick.report["results"]["ssh"]["pyaddprocs"]
    reason = quick.report["ssh_unavailable"]
    if reason is not None and os.environ.get("CI"):
        pytest.fail(f"the SSH start-up must run in CI: {reason}")
    if reason is None:
        assert [case["workers"] for case in ssh["cases"].values()] == [1, 16]
    else:
        assert ssh["skipped"] == reason
        assert "Start-up over SSH not run" in quick.markdown
