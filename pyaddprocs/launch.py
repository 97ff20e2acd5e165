"""Reading a new worker's announcement line, then forwarding its output to the master.

A worker prints exactly one line ``pyaddprocs_worker:PORT#ADDR`` once it has bound its
socket. Login shells may print banners and MOTDs before it, so up to
``MAX_FOREIGN_LINES`` other lines are tolerated; they are shown once on the master as
startup output. After the announcement every line the worker (or any process it
started) prints arrives on the master as ``From worker N:\\t<line>``.

One ``OutputForwarder`` thread per worker reads its output stream from start to end,
because a pipe that nobody drains would block the worker once the pipe buffer fills.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import threading
import time
from typing import IO, Callable

from .errors import LaunchError, WorkerTimeoutError

log = logging.getLogger(__name__)

ANNOUNCEMENT = re.compile(r"^pyaddprocs_worker:(\d+)#(.*)$")
MAX_FOREIGN_LINES = 1000

_print_lock = threading.Lock()


def print_from_worker(label: str, line: str) -> None:
    """Print one line of worker output on the master's stdout with its prefix."""
    with _print_lock:
        sys.stdout.write(f"      From worker {label}:\t{line}\n")
        sys.stdout.flush()


def parse_announcement(line: str) -> tuple[str, int] | None:
    """Return (address, port) when ``line`` is a worker announcement, else None."""
    match = ANNOUNCEMENT.match(line.strip())
    if match is None:
        return None
    port = int(match.group(1))
    address = match.group(2).strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not 0 < port < 65536 or not address:
        return None
    return address, port


class OutputForwarder:
    """Reads a worker's output: first its announcement, then lines to forward.

    ``stream`` is the worker's stdout (with stderr merged). ``on_end`` runs on the
    forwarder thread when the stream ends, which usually means the worker exited.
    """

    def __init__(self, stream: IO[bytes], name: str, on_end: Callable[[], None] | None = None) -> None:
        self._stream = stream
        self._name = name
        self.on_end = on_end
        self._startup: "queue.SimpleQueue[str | None]" = queue.SimpleQueue()
        self._label: str | None = None
        self._announced = False
        self._label_set = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pyaddprocs-output-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for raw in iter(self._stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if not self._announced:
                    if parse_announcement(line) is not None:
                        self._announced = True
                    self._startup.put(line)
                    continue
                # Lines after the announcement wait until the pid is known, so none is lost.
                self._label_set.wait(timeout=120)
                print_from_worker(self._label or self._name, line)
        except (OSError, ValueError) as err:  # the stream was closed under us
            log.debug("output stream of worker %s closed: %s", self._name, err)
        finally:
            self._startup.put(None)
            if self.on_end is not None:
                try:
                    self.on_end()
                except Exception:
                    log.exception("end-of-output handler failed for worker %s", self._name)

    def read_announcement(self, timeout: float) -> tuple[str, int]:
        """Wait for the announcement line and return (address, port).

        Raises LaunchError when the stream ends first or when MAX_FOREIGN_LINES other
        lines come first, and WorkerTimeoutError after ``timeout`` seconds. The lines
        seen before the announcement are printed once as startup output.
        """
        deadline = time.monotonic() + timeout
        foreign: list[str] = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WorkerTimeoutError(
                        f"timed out after {timeout:g} seconds waiting for the announcement line "
                        "from the worker (pyaddprocs_worker:PORT#ADDR); raise "
                        "PYADDPROCS_WORKER_TIMEOUT if workers start slowly",
                        "\n".join(foreign),
                    )
                try:
                    line = self._startup.get(timeout=min(remaining, 0.5))
                except queue.Empty:
                    continue
                if line is None:
                    raise LaunchError(
                        "unable to read the announcement line from the worker: its launch "
                        "command exited without printing pyaddprocs_worker:PORT#ADDR",
                        "\n".join(foreign),
                    )
                address = parse_announcement(line)
                if address is not None:
                    return address
                foreign.append(line)
                if len(foreign) >= MAX_FOREIGN_LINES:
                    raise LaunchError(
                        f"unexpected output from the worker launch command: no announcement line "
                        f"among the first {MAX_FOREIGN_LINES} lines",
                        "\n".join(foreign[-50:]),
                    )
        finally:
            for line in foreign:
                print_from_worker("startup", line)

    def set_label(self, label: str) -> None:
        """Start forwarding lines under ``From worker <label>:``."""
        self._label = label
        self._label_set.set()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the stream to end."""
        self._thread.join(timeout)
