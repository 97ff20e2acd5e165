"""The benchmark suite runs end to end: ``python -m benchmarks --quick --smoke``.

Smoke counts and two fast peers keep the run to a few seconds. The checks are on
the report's shape, never on timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.support import REPO_ROOT, script_env

# Seconds the smoke run may take; it needs about 5 s on a 2-core machine.
SMOKE_TIMEOUT = 120

SMOKE_PEERS = ("pyaddprocs", "raw-socket", "multiprocessing")

# Measurement -> a figure every peer's result must contain.
MEASURED_FIGURES = {
    "latency": "median_us",
    "transfer": "seconds",
    "startup": "start_seconds",
    "memory": "worker_median_kib",
}


@dataclass
class SmokeRun:
    completed: subprocess.CompletedProcess
    markdown: str
    report: dict


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> SmokeRun:
    """Run the suite once in smoke mode for the whole module."""
    output_dir = tmp_path_factory.mktemp("benchmarks")
    command = [sys.executable, "-m", "benchmarks", "--quick", "--smoke",
               "--peers", ",".join(SMOKE_PEERS[1:]), "--output-dir", str(output_dir)]
    completed = subprocess.run(command, cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True,
                               timeout=SMOKE_TIMEOUT)
    assert completed.returncode == 0, f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
    return SmokeRun(completed, (output_dir / "latest.md").read_text(),
                    json.loads((output_dir / "latest.json").read_text()))


def test_smoke_run_prints_table(smoke):
    assert "| pyaddprocs |" in smoke.markdown
    assert "| multiprocessing.Pool |" in smoke.markdown
    assert smoke.markdown.strip() in smoke.completed.stdout


def test_smoke_run_has_no_failures_or_leaks(smoke):
    assert smoke.report["settings"]["mode"] == "smoke"
    assert smoke.report["failures"] == []
    assert smoke.report["leaks"] == []


@pytest.mark.parametrize("measurement", sorted(MEASURED_FIGURES))
def test_smoke_run_measures_each_peer(smoke, measurement):
    results = smoke.report["results"][measurement]
    for peer in SMOKE_PEERS:
        assert MEASURED_FIGURES[measurement] in results[peer], (peer, results[peer])


def test_smoke_run_measures_every_map_mode(smoke):
    throughput = smoke.report["results"]["throughput"]
    for mode in ("one", "batched", "default"):
        assert "tasks_per_second" in throughput["pyaddprocs"][mode], throughput["pyaddprocs"]
        assert "tasks_per_second" in throughput["multiprocessing"][mode], throughput["multiprocessing"]
    assert "not_supported" in throughput["raw-socket"]["default"]


def test_ssh_startup_runs_or_says_why(smoke):
    ssh = smoke.report["results"]["ssh"]["pyaddprocs"]
    reason = smoke.report["ssh_unavailable"]
    if reason is not None and os.environ.get("CI"):
        pytest.fail(f"the SSH start-up must run in CI: {reason}")
    if reason is None:
        assert [case["workers"] for case in ssh["cases"].values()] == [1, 2]
    else:
        assert ssh["skipped"] == reason
        assert "Start-up over SSH not run" in smoke.markdown
