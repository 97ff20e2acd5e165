"""Process bookkeeping from /proc: descendants, resident memory, leaks and their cleanup.

Every process this module signals is a descendant of the calling process whose
command line was recorded when it was found and is checked again just before the
signal, so a recycled pid is never hit.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import resource
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

# prctl option from <linux/prctl.h>: orphaned descendants are re-parented to this
# process instead of to init.
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the subreaper of its descendants; return whether Linux allowed it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat_fields(ospid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{ospid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name in brackets may contain spaces or brackets, so split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def is_running(ospid: int) -> bool:
    """Return whether the process exists and is neither a zombie nor dead."""
    fields = _stat_fields(ospid)
    return fields is not None and fields[0] not in ("Z", "X")


def command_line(ospid: int) -> str:
    """Return the process's arguments joined by spaces, or '' when it is gone."""
    try:
        raw = Path(f"/proc/{ospid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def descendants(root: int) -> list[int]:
    """Return the pids of the running descendants of ``root``, parents before children."""
    children_of: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children_of.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = list(children_of.get(root, []))
    while pending:
        ospid = pending.pop(0)
        found.append(ospid)
        pending.extend(children_of.get(ospid, []))
    return [ospid for ospid in found if is_running(ospid)]


def program_name(line: str) -> str:
    """Return a short name for a command line: the module of ``-m`` or of ``-c "from M import"``, else the program."""
    words = line.split()
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    if "-c" in words[:-1]:
        match = re.search(r"from (\S+) import", line)
        if match:
            return match.group(1)
    return os.path.basename(words[0]) if words else "?"


def reap_zombie_children(keep: set[int]) -> None:
    """Collect the exit status of zombie children not in ``keep``.

    Orphans re-parented to a subreaper become its zombies when they exit. ``keep``
    contains the pids that a ``subprocess.Popen`` of this process still waits for.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in keep:
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[0] == "Z" and int(fields[1]) == os.getpid():
            try:
                os.waitpid(int(entry.name), os.WNOHANG)
            except ChildProcessError:
                pass


def resident_kib(ospid: int) -> int | None:
    """Return VmRSS of the process from /proc/PID/status in KiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{ospid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def wait_until_exited(ospids: list[int], timeout: float) -> list[int]:
    """Poll until every process has exited or ``timeout`` seconds pass; return those still running."""
    deadline = time.monotonic() + timeout
    running = [ospid for ospid in ospids if is_running(ospid)]
    while running and time.monotonic() < deadline:
        time.sleep(0.05)
        running = [ospid for ospid in running if is_running(ospid)]
    return running


def end_processes(recorded: dict[int, str], grace: float = 3.0) -> None:
    """Send SIGTERM, then after ``grace`` seconds SIGKILL, to each pid whose command line still matches.

    ``recorded`` maps each pid to the command line it had when it was found.
    """
    for next_signal, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        targets = [ospid for ospid, line in recorded.items() if is_running(ospid) and command_line(ospid) == line]
        for ospid in targets:
            try:
                os.kill(ospid, next_signal)
            except ProcessLookupError:
                pass
        if wait_until_exited(targets, wait) == []:
            return
    still = [ospid for ospid in recorded if is_running(ospid)]
    if still:
        log.warning("processes %s still run after SIGKILL", still)


class CpuAccount:
    """CPU time that processes outside this process tree used since the account was opened.

    The machine's busy time comes from the first line of /proc/stat (user, nice and
    system, without interrupts and steal). This process's own CPU time and that of
    its waited-for descendants come from getrusage. The difference is what other
    processes used. NOTE: an estimate, because descendants that init reaped instead
    of this process count as other processes, and kernel work for them counts too.
    """

    def __init__(self) -> None:
        self.busy_start = machine_busy_seconds()
        self.own_start = own_cpu_seconds()

    def other_seconds(self) -> float:
        """Return the CPU seconds other processes used since the account was opened, at least 0."""
        busy = machine_busy_seconds() - self.busy_start
        own = own_cpu_seconds() - self.own_start
        return max(busy - own, 0.0)


def machine_busy_seconds() -> float:
    """Return the CPU seconds all CPUs of the machine spent in user, nice and system mode since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system = (int(value) for value in fields[1:4])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """Return the CPU seconds of this process and of its descendants that it has waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def lingering_descendants(root: int, grace: float) -> dict[int, str]:
    """Wait up to ``grace`` seconds for the descendants of ``root`` to exit; return the rest with command lines."""
    deadline = time.monotonic() + grace
    remaining = descendants(root)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = descendants(root)
    return {ospid: command_line(ospid) for ospid in remaining}
