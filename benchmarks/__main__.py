"""Run the benchmark suite: ``python -m benchmarks [--quick | --smoke] [--only ...] [--peers ...]``.

Runs each measurement on pyaddprocs and on every installed peer, one child process per
peer and measurement group (see ``benchmarks/__init__.py``), then writes
``latest.md`` and ``latest.json`` to the output directory and prints the Markdown.
Installs nothing: a peer that is not installed is skipped, and the report lists it.

Exit status 0 when every measurement that ran produced its figures and no peer left
processes behind, 1 otherwise (the report is written in both cases), 2 for bad options.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import processes
from benchmarks.peers import ADAPTERS, adapter_path, load_adapter, unavailable_reason
from benchmarks.report import build_markdown, finish_machine_info, machine_info, write_reports
from benchmarks.settings import MEASUREMENTS, STEADY, settings_for

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"

# Seconds an interrupted child gets to stop its peer (and an SSH child its namespaces).
INTERRUPT_GRACE = 30.0
# Seconds a finished child's processes get to exit before they count as leaked.
LEAK_GRACE = 5.0
# Lines of a failed child's log that go into the report's JSON.
LOG_TAIL_LINES = 30
# Share of the machine's CPU time that processes outside the suite may use while a
# child runs before the report marks that child's figures as possibly disturbed.
DISTURBED_SHARE = 0.10


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure pyaddprocs against multiprocessing, concurrent.futures, loky, ipyparallel, "
                    "dask.distributed, execnet and raw pyzmq and socket transports.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="fewer runs and smaller counts; took about 2 minutes on a 2-core machine")
    mode.add_argument("--smoke", action="store_true",
                      help="tiny counts that only check that every measurement runs; about a minute, "
                           "and its figures mean nothing")
    parser.add_argument("--only", metavar="NAMES", default=",".join(MEASUREMENTS),
                        help=f"comma-separated measurements to run, from {','.join(MEASUREMENTS)} (default: all)")
    parser.add_argument("--peers", metavar="KEYS", default=None,
                        help="comma-separated peers to run (default: all installed); pyaddprocs always runs, "
                             "because the ratios need it. Keys: " + ", ".join(load_adapter(p).key for p in ADAPTERS))
    parser.add_argument("--output-dir", metavar="DIR", type=Path, default=DEFAULT_OUTPUT,
                        help=f"directory for latest.md and latest.json (default: {DEFAULT_OUTPUT})")
    arguments = parser.parse_args(argv)
    check_output_dir(parser, arguments.output_dir)
    arguments.only = _split_choices(parser, arguments.only, MEASUREMENTS, "--only")
    if arguments.peers is not None:
        keys = [load_adapter(path).key for path in ADAPTERS]
        arguments.peers = _split_choices(parser, arguments.peers, keys, "--peers")
    return arguments


def _split_choices(parser, text: str, choices, option: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown:
        parser.error(f"unknown {option} name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                     f"choose from {', '.join(choices)}")
    if not names:
        parser.error(f"empty {option}: give one or more of {', '.join(choices)}")
    return names


def check_output_dir(parser, directory: Path) -> None:
    """Exit with a usage error before any measurement when ``directory`` is not writable."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as err:
        parser.error(f"invalid --output-dir {str(directory)!r}: {err.strerror or err}; "
                     "give a directory this user can write")


class ChildRunner:
    """Runner of child processes, one after another, that collects their results, failures and leaks."""

    def __init__(self, settings, work_directory: Path) -> None:
        self.settings = settings
        self.work_directory = work_directory
        self.count = 0
        # Lines for the report: "peer, measurement: error" and "peer, group: leaked pids".
        self.failures: list[str] = []
        self.leaks: list[str] = []
        # Lines for the report: children during which other processes used the CPUs.
        self.disturbed: list[str] = []
        self.children: list[dict] = []

    def run(self, group: str, label: str, peer_path: str | None, measurements: list[str]) -> dict:
        """Run one child; return its result, with an error entry per measurement if it failed."""
        self.count += 1
        result_path = self.work_directory / f"child-{self.count}.json"
        log_path = self.work_directory / f"child-{self.count}.log"
        task = {"group": group, "peer": peer_path, "measurements": measurements,
                "settings": self.settings.to_json(), "result_path": str(result_path)}
        print(f"[{self.count}] {label}: {', '.join(measurements)} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        cpu = processes.CpuAccount()
        error = self._run_process(task, log_path)
        seconds = time.perf_counter() - started
        leaked = self._end_leftovers()
        other_share = cpu.other_seconds() / (seconds * len(os.sched_getaffinity(0)))
        if other_share > DISTURBED_SHARE:
            self.disturbed.append(f"{label} ({', '.join(measurements)}): other processes used "
                                  f"{other_share:.0%} of the CPUs")

        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        if error is not None:
            for name in measurements:
                result.setdefault(name, {"error": error})
        for name, figures in result.items():
            if isinstance(figures, dict) and "error" in figures:
                self.failures.append(f"{label}, {name}: {figures['error'].splitlines()[0]}")
        if leaked:
            listed = "; ".join(f"pid {ospid} `{line[:100]}`" for ospid, line in leaked.items())
            self.leaks.append(f"{label} ({', '.join(measurements)}): {len(leaked)} processes: {listed}")
        failed = error is not None or any("error" in figures for figures in result.values() if isinstance(figures, dict))
        self.children.append({"group": group, "peer": label, "measurements": measurements, "seconds": seconds,
                              "other_cpu_share": other_share, "error": error, "leaked": leaked,
                              "log_tail": _tail(log_path, LOG_TAIL_LINES) if failed else None})
        print(f"[{self.count}] {label}: {'failed' if failed else 'done'} in {seconds:.1f} s", file=sys.stderr, flush=True)
        return result

    def _run_process(self, task: dict, log_path: Path) -> str | None:
        """Run the child until it exits or times out; return an error text, or None."""
        command = [sys.executable, "-m", "benchmarks.child", json.dumps(task)]
        # Temporary files of the child and its peer (ipyparallel's profile, dask's scratch
        # space, sshd keys) go under the work directory, which is removed at the end even
        # when a child was killed before it could clean up.
        environment = dict(os.environ, TMPDIR=str(self.work_directory))
        with open(log_path, "wb") as log:
            child = subprocess.Popen(command, cwd=REPOSITORY, env=environment, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log)
            try:
                returncode = child.wait(timeout=self.settings.child_timeout)
            except KeyboardInterrupt:
                self._stop_child(child)
                raise
            except subprocess.TimeoutExpired:
                started = {ospid: processes.command_line(ospid) for ospid in processes.descendants(child.pid)}
                child.kill()
                child.wait()
                processes.end_processes(started, grace=0.5)
                return f"timed out after {self.settings.child_timeout:g} s and was killed"
        if returncode != 0:
            return f"child process exited with status {returncode}: {' / '.join(_tail(log_path, 3))}"
        return None

    @staticmethod
    def _stop_child(child: subprocess.Popen) -> None:
        """Let an interrupted child stop its peer and clean up, then end whatever is left."""
        started = {ospid: processes.command_line(ospid) for ospid in processes.descendants(child.pid)}
        child.send_signal(signal.SIGTERM)   # benchmarks.child turns it into KeyboardInterrupt
        try:
            child.wait(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        processes.end_processes(started, grace=0.5)
        processes.end_processes(processes.lingering_descendants(os.getpid(), 0.5), grace=0.5)

    def _end_leftovers(self) -> dict[int, str]:
        """Return the processes the finished child left running, after ending them."""
        leaked = processes.lingering_descendants(os.getpid(), LEAK_GRACE)
        if leaked:
            processes.end_processes(leaked)
        processes.reap_zombie_children(keep=set())
        return leaked


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def select_peers(requested: list[str] | None) -> tuple[list, list, dict[str, str]]:
    """Return (all peers in report order, runnable peers, skipped label -> reason)."""
    peers = [load_adapter(path) for path in ADAPTERS]
    runnable, skipped = [], {}
    for peer in peers:
        if requested is not None and peer.key not in requested and peer.key != "pyaddprocs":
            continue
        reason = unavailable_reason(peer)
        if reason is None:
            runnable.append(peer)
        else:
            skipped[peer.label] = reason
    listed_peers = [peer for peer in peers if peer in runnable or peer.label in skipped]
    return listed_peers, runnable, skipped


def run_suite(arguments: argparse.Namespace, command: str) -> tuple[dict, str]:
    """Run every requested measurement on every selected peer; return the run's data and its Markdown."""
    settings = settings_for(arguments.quick, arguments.smoke)
    started = time.perf_counter()
    cpu = processes.CpuAccount()
    info = machine_info(REPOSITORY)
    listed_peers, runnable, skipped = select_peers(arguments.peers)
    requested = arguments.only
    results: dict[str, dict[str, dict]] = {name: {} for name in requested}
    for peer in listed_peers:
        if peer not in runnable:
            for name in requested:
                results[name][peer.key] = {"skipped": skipped[peer.label]}

    numpy_missing = importlib.util.find_spec("numpy") is None
    steady_names = [name for name in STEADY if name in requested and not (name == "transfer" and numpy_missing)]
    if numpy_missing and "transfer" in requested:
        for peer in runnable:
            results["transfer"][peer.key] = {"skipped": "numpy is not installed"}

    ssh_reason = None
    with tempfile.TemporaryDirectory(prefix="pyaddprocs-bench-") as work:
        runner = ChildRunner(settings, Path(work))
        for peer in runnable:
            names = [name for name in steady_names if name == "throughput" or not peer.throughput_only]
            if names:
                result = runner.run("steady", peer.label, adapter_path(peer.key), names)
                for name in names:
                    results[name][peer.key] = result.get(name, {"error": "no result"})

        for group in ("startup", "ssh", "memory"):
            if group not in requested:
                continue
            if group == "ssh":
                ssh_reason = run_ssh(runner, results)
                continue
            for peer in runnable:
                if not peer.throughput_only:
                    result = runner.run(group, peer.label, adapter_path(peer.key), [group])
                    results[group][peer.key] = result.get(group, {"error": "no result"})

    info["wall_seconds"] = time.perf_counter() - started
    info["other_cpu_share"] = cpu.other_seconds() / (info["wall_seconds"] * info["nproc"])
    finish_machine_info(info, REPOSITORY)
    run = {
        "command": command, "settings": settings.to_json(), "machine": info, "measurements": requested,
        "results": results, "skipped": skipped, "failures": runner.failures, "leaks": runner.leaks,
        "disturbed": runner.disturbed,
        "ssh_unavailable": ssh_reason, "children": runner.children,
    }
    return run, build_markdown(run, listed_peers, settings, command)


def run_ssh(runner: ChildRunner, results: dict) -> str | None:
    """Run the SSH start-up child when namespaces can be made here; return why not otherwise."""
    from benchmarks.ssh import ssh_unavailable_reason

    reason = ssh_unavailable_reason()
    if reason is not None:
        results["ssh"]["pyaddprocs"] = {"skipped": reason}
        print(f"start-up over SSH not run: {reason}", file=sys.stderr, flush=True)
        return reason
    result = runner.run("ssh", "pyaddprocs over SSH", None, ["ssh"])
    results["ssh"]["pyaddprocs"] = result.get("ssh", {"error": "no result"})
    return None


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    # Workers of every peer import benchmarks.tasks by name, so the repository root
    # goes on PYTHONPATH before any child or worker starts.
    python_path = os.environ.get("PYTHONPATH", "")
    if str(REPOSITORY) not in python_path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(part for part in (str(REPOSITORY), python_path) if part)
    if str(REPOSITORY) not in sys.path:
        sys.path.insert(0, str(REPOSITORY))
    if not processes.become_subreaper():
        print("warning: could not become a child subreaper; leaked processes are not detected",
              file=sys.stderr)
    command = shlex.join(["python", "-m", "benchmarks", *argv])
    # SIGTERM (from timeout or kill) unwinds like Ctrl-C, so children stop their peers.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        run, markdown = run_suite(arguments, command)
    except KeyboardInterrupt:
        print("benchmarks interrupted: the running child was stopped and nothing was written",
              file=sys.stderr)
        return 130
    markdown_path, json_path = write_reports(run, markdown, arguments.output_dir)
    print(markdown)
    print(f"wrote {markdown_path} and {json_path}", file=sys.stderr)
    return 1 if run["failures"] or run["leaks"] else 0


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
