"""Helpers for tests that start, watch and end OS processes.

Every helper that ends a process first checks that its command line still matches the
one recorded when the test found it, so a recycled pid is never signalled.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def script_env(**extra: str) -> dict[str, str]:
    """Return a copy of this process's environment in which ``pyaddprocs`` is importable."""
    env = dict(os.environ)
    python_path = [str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env.update(extra)
    return env


def process_state(ospid: int) -> str | None:
    """Return the state letter from ``/proc/PID/stat``, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{ospid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in brackets may contain spaces or brackets, so split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def parent_pid(ospid: int) -> int | None:
    """Return the parent pid from ``/proc/PID/stat``, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{ospid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_running(ospid: int) -> bool:
    """Return whether the process exists and is not a zombie (state Z) or dead (state X)."""
    state = process_state(ospid)
    return state is not None and state not in ("Z", "X")


def command_line(ospid: int) -> str:
    """Return the process's command line with spaces between arguments, or '' when gone."""
    try:
        raw = Path(f"/proc/{ospid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def descendant_pids(root: int) -> list[int]:
    """Return the pids of every running descendant of ``root``, children first."""
    children_of: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        parent = parent_pid(int(entry.name))
        if parent is not None:
            children_of.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = list(children_of.get(root, []))
    while pending:
        ospid = pending.pop(0)
        found.append(ospid)
        pending.extend(children_of.get(ospid, []))
    return [ospid for ospid in found if is_running(ospid)]


def wait_until_exited(ospids: list[int], timeout: float) -> list[int]:
    """Poll until every process has exited or ``timeout`` seconds pass, and return those still running."""
    deadline = time.monotonic() + timeout
    running = [ospid for ospid in ospids if is_running(ospid)]
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [ospid for ospid in running if is_running(ospid)]
    return running


def kill_if_command_matches(ospid: int, marker: str) -> None:
    """Send SIGKILL to the process if it still runs and its command line contains ``marker``.

    An empty ``marker`` matches nothing, so a pid whose command line was not recorded
    is never signalled.
    """
    if marker and is_running(ospid) and marker in command_line(ospid):
        try:
            os.kill(ospid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class OutputLine:
    """One line a script wrote, with the stream name and the monotonic time it was read."""

    stream: str
    text: str
    received_at: float


@dataclass
class ScriptRun:
    """A Python script running in a child process, with its output read line by line.

    Use it as a context manager: on exit it ends the script and every process the
    script started that is still running, also when the test failed.
    """

    path: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[str] | None = None
    lines: list[OutputLine] = field(default_factory=list)
    _arrivals: queue.Queue[OutputLine] = field(default_factory=queue.Queue)
    _readers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> ScriptRun:
        self.process = subprocess.Popen(
            [sys.executable, str(self.path), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env if self.env is not None else script_env(),
            cwd=self.cwd,
        )
        for stream_name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            reader = threading.Thread(target=self._read_stream, args=(stream_name, stream), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def _read_stream(self, stream_name: str, stream) -> None:
        for text in stream:
            line = OutputLine(stream_name, text.rstrip("\n"), time.monotonic())
            self._arrivals.put(line)

    def _collect(self, timeout: float) -> OutputLine | None:
        try:
            line = self._arrivals.get(timeout=timeout)
        except queue.Empty:
            return None
        self.lines.append(line)
        return line

    def wait_for_line(self, pattern: str, timeout: float, stream: str = "stdout") -> OutputLine:
        """Return the first line of ``stream`` that matches the regular expression ``pattern``.

        Raises AssertionError with the output so far when no line matches within ``timeout``.
        """
        regex = re.compile(pattern)
        for line in self.lines:
            if line.stream == stream and regex.search(line.text):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._collect(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            if line is not None and line.stream == stream and regex.search(line.text):
                return line
        raise AssertionError(
            f"no {stream} line matched {pattern!r} within {timeout} s; output so far:\n{self.output()}"
        )

    def finish(self, timeout: float) -> int:
        """Wait until the script exits and its output is read, and return its exit code."""
        assert self.process is not None
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"script {self.path.name} did not exit within {timeout} s; output so far:\n{self.output()}"
            ) from None
        for reader in self._readers:
            reader.join(timeout=5)
        while self._collect(timeout=0) is not None:
            pass
        return returncode

    def last_json_line(self):
        """Parse and return the last stdout line that starts with '{'."""
        json_lines = [text for text in self.stdout_lines() if text.startswith("{")]
        assert json_lines, f"script {self.path.name} printed no JSON line; output:\n{self.output()}"
        return json.loads(json_lines[-1])

    def stdout_lines(self) -> list[str]:
        return [line.text for line in self.lines if line.stream == "stdout"]

    def output(self) -> str:
        while self._collect(timeout=0) is not None:
            pass
        return "\n".join(f"[{line.stream}] {line.text}" for line in self.lines)

    def end(self) -> None:
        """Kill the script and every running process it started."""
        if self.process is None:
            return
        if self.process.poll() is None:
            started = {ospid: command_line(ospid) for ospid in descendant_pids(self.process.pid)}
            self.process.kill()
            for ospid, recorded in started.items():
                kill_if_command_matches(ospid, recorded)
        self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> ScriptRun:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.end()


def run_script(path: Path, timeout: float, args: list[str] | None = None, **kwargs) -> ScriptRun:
    """Run a Python script to completion and return it; fail with its output if it exits non-zero."""
    run = ScriptRun(path, args or [], **kwargs)
    with run:
        returncode = run.finish(timeout=timeout)
        assert returncode == 0, f"script {path.name} exited with {returncode}; output:\n{run.output()}"
    return run
