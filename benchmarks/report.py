"""The Markdown table and the JSON file of a run, and the machine description in both.

``results`` maps measurement -> peer key -> figures, where figures may instead be
{"error": text} or {"skipped": reason}. Ratio columns divide a peer's figure by
pyaddprocs' figure of the same measurement (and map mode).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from benchmarks.peers import NOT_BUILT
from benchmarks.peers.base import BATCHED, DEFAULT, ONE_PER_MESSAGE

# Distributions whose versions the report lists.
VERSIONED = ("pyzmq", "cloudpickle", "numpy", "ipyparallel", "dask", "distributed", "loky", "execnet")

MAP_MODE_TITLES = {
    ONE_PER_MESSAGE: "one task per message",
    BATCHED: "{batch} tasks per message",
    DEFAULT: "library default",
}


def machine_info(repository: Path) -> dict:
    """Return CPU count, CPU model, memory, OS, Python, library versions and the git commit."""
    info = {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {},
        "load_average_start": _load_average(),
    }
    for name in VERSIONED:
        try:
            info["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    info.update(_git_state(repository))
    info["library_digest"] = library_digest(repository)
    return info


def library_digest(repository: Path) -> str:
    """Return a SHA-256 over the Python files of pyaddprocs and transport_zmq, to notice edits during a run."""
    digest = hashlib.sha256()
    for package in ("pyaddprocs", "transport_zmq"):
        for path in sorted((repository / package).rglob("*.py")):
            digest.update(str(path.relative_to(repository)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _load_average() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def _git_state(repository: Path) -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(repository), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "-C", str(repository), "status", "--porcelain", "--", "pyaddprocs",
                                 "transport_zmq"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if commit.returncode != 0:
        return {}
    return {"commit": commit.stdout.strip(), "library_modified": bool(status.stdout.strip())}


def finish_machine_info(info: dict, repository: Path) -> None:
    """Add the load average at the end of the run, and whether pyaddprocs changed during it."""
    info["load_average_end"] = _load_average()
    info["commit_end"] = _git_state(repository).get("commit")
    info["library_changed_during_run"] = library_digest(repository) != info["library_digest"]


# Formatting ------------------------------------------------------------------------

def number(value: float | None, digits: int = 3) -> str:
    """Format ``value`` with ``digits`` significant digits, without exponent for usual sizes."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    magnitude = len(str(int(abs(value)))) if abs(value) >= 1 else 0
    decimals = max(digits - magnitude, 0) if abs(value) >= 1 else digits
    return f"{value:,.{decimals}f}"


def count(n: int, noun: str) -> str:
    """Return ``n`` with ``noun``, plural unless n is 1 ("1 run", "5 runs")."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "—"
    return f"{value / base:.2f}"


def cell_problem(figures: dict | None) -> str | None:
    """Return the text of a cell that has no figure (skipped, failed, not supported), else None."""
    if figures is None:
        return "not run"
    if "skipped" in figures:
        return figures["skipped"]
    if "error" in figures:
        return "failed: " + figures["error"].splitlines()[0][:120]
    if "not_supported" in figures:
        return "n/a: " + figures["not_supported"]
    return None


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


# Sections --------------------------------------------------------------------------

def latency_section(results: dict, peers: list, settings) -> list[str]:
    by_peer = results.get("latency", {})
    base = by_peer.get("pyaddprocs", {})
    rows = []
    for peer in peers:
        figures = by_peer.get(peer.key)
        problem = cell_problem(figures)
        if problem:
            rows.append([peer.label, _code(peer.latency_call), problem, "", "", "", ""])
            continue
        rows.append([peer.label, _code(figures["call"]), number(figures["calls_per_run"], 1),
                     number(figures["median_us"]), number(figures["p99_us"]),
                     ratio(figures["median_us"], base.get("median_us")),
                     ratio(figures["p99_us"], base.get("p99_us"))])
    return [
        "## Round-trip latency of a trivial call",
        "",
        f"`add_one(x)` on 2 workers, one call at a time, alternating between the workers where the API "
        f"can address one. {count(settings.latency_runs, 'run')} of up to {count(settings.latency_calls, 'call')} or "
        f"{settings.latency_seconds:g} s each; the figures are the medians over the runs of each run's "
        "median and p99. Lower is better.",
        "",
        *_table(["Peer", "Call", "Calls per run", "Median µs", "p99 µs", "Median ÷ pyaddprocs",
                 "p99 ÷ pyaddprocs"], rows),
    ]


def throughput_section(results: dict, peers: list, settings) -> list[str]:
    by_peer = results.get("throughput", {})
    base = by_peer.get("pyaddprocs", {})
    rows = []
    for mode in (ONE_PER_MESSAGE, BATCHED, DEFAULT):
        title = MAP_MODE_TITLES[mode].format(batch=settings.batch_size)
        base_rate = base.get(mode, {}).get("tasks_per_second") if isinstance(base.get(mode), dict) else None
        for peer in peers:
            figures = by_peer.get(peer.key)
            problem = cell_problem(figures)
            call = peer.map_calls.get(mode, "").replace("{batch}", str(settings.batch_size))
            if problem:
                rows.append([title, peer.label, _code(call), problem, ""])
                continue
            mode_figures = figures.get(mode, {})
            problem = cell_problem(mode_figures)
            if problem:
                rows.append([title, peer.label, _code(call), problem, ""])
                continue
            rate = mode_figures["tasks_per_second"]
            rows.append([title, peer.label, _code(mode_figures["call"]), number(rate), ratio(rate, base_rate)])
    return [
        "## Throughput of tiny tasks",
        "",
        f"`add_one` mapped over {settings.throughput_tasks:,} integers on 2 workers, "
        f"{count(settings.throughput_runs, 'run')} per chunking; the figure is the median of the runs' tasks per "
        f"second. Higher is better. In the library default rows each library uses its own default chunking, "
        f"so their ratios compare defaults, not equal messages. The `{NOT_BUILT}` rows are the planned "
        "`Pool` and `Executor` front ends of pyaddprocs, measured here once they exist.",
        "",
        *_table(["Chunking", "Peer", "Call", "Tasks/s", "÷ pyaddprocs"], rows),
    ]


def transfer_section(results: dict, peers: list, settings) -> list[str]:
    by_peer = results.get("transfer", {})
    base = by_peer.get("pyaddprocs", {})
    rows = []
    for peer in peers:
        figures = by_peer.get(peer.key)
        problem = cell_problem(figures)
        if problem:
            rows.append([peer.label, _code(peer.transfer_call), problem, "", ""])
            continue
        rows.append([peer.label, _code(figures["call"]), number(figures["seconds"] * 1000),
                     number(figures["gigabytes_per_second"]), ratio(figures["seconds"], base.get("seconds"))])
    size = number(settings.array_bytes / 1e6, 3)
    return [
        f"## Round trip of a {size} MB NumPy array",
        "",
        f"A float64 array of {settings.array_bytes:,} random bytes sent to a worker, which returns its sum; "
        f"{count(settings.transfer_runs, 'run')}, median. GB/s is the array size over the whole round trip. "
        "Lower time is better.",
        "",
        *_table(["Peer", "Call", "Median ms", "GB/s", "Time ÷ pyaddprocs"], rows),
    ]


def startup_section(results: dict, peers: list, settings) -> list[str]:
    by_peer = results.get("startup", {})
    base = by_peer.get("pyaddprocs", {})
    rows = []
    for peer in peers:
        figures = by_peer.get(peer.key)
        problem = cell_problem(figures)
        if problem:
            rows.append([peer.label, _code(peer.start_call), problem, "", "", ""])
            continue
        rows.append([peer.label, _code(figures["call"]), number(figures["start_seconds"]),
                     ratio(figures["start_seconds"], base.get("start_seconds")),
                     number(figures["stop_seconds"]), number(figures["import_seconds"])])
    return [
        "## Start-up of 2 local workers",
        "",
        f"{count(settings.startup_runs, 'fresh start')} per peer, each timed from the start call until both workers "
        "have replied to a call; the stop is timed apart, and so is the first import of the library. "
        "Medians. Lower is better.",
        "",
        *_table(["Peer", "Start", "Start s", "Start ÷ pyaddprocs", "Stop s", "Import s"], rows),
    ]


def ssh_section(results: dict, settings) -> list[str]:
    figures = results.get("ssh", {}).get("pyaddprocs")
    lines = ["## Start-up over SSH (pyaddprocs)", ""]
    problem = cell_problem(figures)
    if problem:
        return lines + [f"Not run: {problem}."]
    rows = [[label, str(case["workers"]), number(case["start_seconds"]), number(case["stop_seconds"])]
            for label, case in figures["cases"].items()]
    return lines + [
        f"Workers started with `addprocs` over OpenSSH on network-namespace hosts of this machine, each "
        f"with its own sshd; {count(settings.ssh_runs, 'run')} per case, each timed until every worker has "
        f"replied to a call. Setting up the namespaces took {number(figures['network_setup_seconds'])} s "
        "(not included). Medians.",
        "",
        *_table(["Case", "Workers", "Start s", "Stop s"], rows),
    ]


def memory_section(results: dict, peers: list, settings) -> list[str]:
    by_peer = results.get("memory", {})
    base = by_peer.get("pyaddprocs", {})
    rows = []
    for peer in peers:
        figures = by_peer.get(peer.key)
        problem = cell_problem(figures)
        if problem:
            rows.append([peer.label, problem, "", "", "", "", "", ""])
            continue
        others = number(figures["other_total_kib"] / 1024)
        if figures["other_programs"]:
            others += " (" + ", ".join(f"{count} × {name}" for name, count in figures["other_programs"].items()) + ")"
        rows.append([
            peer.label,
            number(figures["worker_median_kib"] / 1024), ratio(figures["worker_median_kib"], base.get("worker_median_kib")),
            number(figures["master_kib"] / 1024), ratio(figures["master_kib"], base.get("master_kib")),
            others,
            number(figures["all_processes_kib"] / 1024), ratio(figures["all_processes_kib"], base.get("all_processes_kib")),
        ])
    note = "" if settings.memory_workers == 32 else f" ({settings.mode} mode: {settings.memory_workers}, not 32)"
    return [
        f"## Memory with {settings.memory_workers} idle workers{note}",
        "",
        "VmRSS from /proc/PID/status after the workers have idled "
        f"{settings.memory_settle_seconds:g} s. \"Other processes\" are those the peer starts besides master "
        "and workers, with their summed VmRSS and their programs. \"All processes\" sums VmRSS, so pages shared between forked "
        "processes count once per process. Lower is better.",
        "",
        *_table(["Peer", "Idle worker MiB", "Worker ÷ pyaddprocs", "Master MiB", "Master ÷ pyaddprocs",
                 "Other processes MiB", "All processes MiB", "All ÷ pyaddprocs"], rows),
    ]


def header_section(info: dict, settings, command: str) -> list[str]:
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    commit = info.get("commit", "unknown")
    if info.get("library_modified"):
        commit += " with uncommitted changes to pyaddprocs or transport_zmq"
    if info.get("library_changed_during_run"):
        commit += (f". The files of pyaddprocs or transport_zmq changed during the run (commit {info['commit_end']} "
                   "at the end), so children that started later may have run other code")
    return [
        "# pyaddprocs benchmarks",
        "",
        f"Mode: {settings.mode}. Command: `{command}`. Wall time {number(info.get('wall_seconds'))} s.",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB memory, {info['os']}, "
        f"Python {info['python']}. Load average {info['load_average_start']} at the start, "
        f"{info.get('load_average_end')} at the end. Processes outside the suite used "
        f"{info.get('other_cpu_share', 0):.0%} of the CPU time (an estimate from /proc/stat). "
        f"pyaddprocs commit {commit}.",
        "",
        f"Versions: {versions}.",
        "",
        "Each ratio column divides the peer's figure by pyaddprocs' figure in the same table (and chunking). "
        "Above 1, the peer's figure is larger: slower or more memory in the time and memory tables, "
        "faster in the throughput table.",
    ]


def notes_section(skipped: dict, failures: list[str], leaks: list[str], disturbed: list[str],
                  ssh_reason: str | None) -> list[str]:
    lines = ["## Not measured, failures and leaks", ""]
    if skipped:
        lines += [f"- Skipped {label}: {reason}." for label, reason in skipped.items()]
    else:
        lines.append("- No selected peer was skipped.")
    if ssh_reason:
        lines.append(f"- Start-up over SSH not run: {ssh_reason}.")
    lines += [f"- Failed: {failure}" for failure in failures] or ["- No measurement failed."]
    lines += [f"- Leaked: {leak}" for leak in leaks] or ["- No peer left processes running after its stop."]
    lines += [f"- Possibly disturbed: {entry}." for entry in disturbed]
    return lines


def build_markdown(run: dict, peers: list, settings, command: str) -> str:
    """Return the whole Markdown report of a run."""
    results = run["results"]
    local_peers = [peer for peer in peers if not peer.throughput_only]
    requested = run["measurements"]
    sections = [header_section(run["machine"], settings, command)]
    if "latency" in requested:
        sections.append(latency_section(results, local_peers, settings))
    if "throughput" in requested:
        sections.append(throughput_section(results, peers, settings))
    if "transfer" in requested:
        sections.append(transfer_section(results, local_peers, settings))
    if "startup" in requested:
        sections.append(startup_section(results, local_peers, settings))
    if "ssh" in requested:
        sections.append(ssh_section(results, settings))
    if "memory" in requested:
        sections.append(memory_section(results, local_peers, settings))
    sections.append(notes_section(run["skipped"], run["failures"], run["leaks"], run["disturbed"],
                                  run.get("ssh_unavailable")))
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def write_reports(run: dict, markdown: str, directory: Path) -> tuple[Path, Path]:
    """Write latest.md and latest.json into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown_path = directory / "latest.md"
    json_path = directory / "latest.json"
    markdown_path.write_text(markdown)
    json_path.write_text(json.dumps(run, indent=1, default=str) + "\n")
    return markdown_path, json_path
