"""LocalManager: workers as child processes of the master on this machine."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from typing import Any

from .base import ClusterManager, WorkerConfig

log = logging.getLogger(__name__)

# Thread-count variables of the common BLAS and OpenMP builds, set to 1 on workers
# unless enable_threaded_blas=True, so N workers on N cores do not start N*N threads.
BLAS_THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BLIS_NUM_THREADS",
)

# Seconds rmprocs waits for a worker to exit by itself, then after SIGTERM, before SIGKILL.
EXIT_GRACE = 5.0
TERM_GRACE = 3.0


def package_root() -> str:
    """Return the directory that contains the pyaddprocs package."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_environment(env: dict[str, str], enable_threaded_blas: bool) -> dict[str, str]:
    """Build a local worker's environment: the master's, then ``env`` on top.

    The master's import path (its script directory and the directory holding
    pyaddprocs) goes first on PYTHONPATH, so modules the master imports by path are
    importable on its workers, unless ``env`` sets PYTHONPATH itself.
    """
    result = dict(os.environ)
    if "PYTHONPATH" not in env:
        entries = []
        script_dir = os.path.abspath(sys.path[0]) if sys.path and sys.path[0] else os.getcwd()
        for entry in (script_dir, package_root()):
            if os.path.isdir(entry) and entry not in entries:
                entries.append(entry)
        if result.get("PYTHONPATH"):
            entries.append(result["PYTHONPATH"])
        result["PYTHONPATH"] = os.pathsep.join(entries)
    if not enable_threaded_blas:
        for name in BLAS_THREAD_VARIABLES:
            if name not in env:
                result[name] = "1"
    # Worker output must reach the master line by line, also from Python child processes.
    result.setdefault("PYTHONUNBUFFERED", "1")
    result.update(env)
    return result


class LocalManager(ClusterManager):
    """Starts ``np`` workers on this machine, bound to 127.0.0.1 when ``restrict`` is true."""

    def __init__(self, np: int, restrict: bool = True) -> None:
        self.np = np
        self.restrict = restrict

    def __repr__(self) -> str:
        return "LocalManager()"

    def default_params(self) -> dict[str, Any]:
        """Return LocalManager's own keyword (``restrict``) with its default."""
        return {"restrict": True}

    def launch(self, params: dict[str, Any], launched: "queue.Queue[WorkerConfig]") -> None:
        """Start ``np`` worker processes, writing the cookie to each one's stdin."""
        from ..process_group import get_group
        from ..worker import choose_bind_address

        cookie = get_group().cookie
        bind = "127.0.0.1" if params.get("restrict", self.restrict) else choose_bind_address()
        command = [params["exename"], *params["exeflags"], "-m", "pyaddprocs.worker", "--bind-to", bind]
        env = worker_environment(params["env"], params["enable_threaded_blas"])
        for index in range(self.np):
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                cwd=params["dir"], env=env,
                # A new session: Ctrl-C in the master's terminal does not reach workers,
                # and the worker leads a process group it can end on exit.
                start_new_session=True,
            )
            try:
                # The pipe stays open: the worker takes its end of file as the master's death.
                process.stdin.write(cookie.encode() + b"\n")
                process.stdin.flush()
            except BrokenPipeError:
                log.debug("local worker (os pid %d) exited before reading its cookie", process.pid)
            log.debug("started local worker %d of %d (os pid %d)", index + 1, self.np, process.pid)
            launched.put(WorkerConfig(
                io=process.stdout, process=process, exename=params["exename"],
                exeflags=list(params["exeflags"]), bind_addr=bind,
                enable_threaded_blas=params["enable_threaded_blas"],
            ))

    def manage(self, pid: int, config: WorkerConfig, op: str) -> None:
        """Send SIGINT on ``interrupt``; reap the process of a worker that is gone."""
        process = config.process
        if process is None:
            return
        if op == "interrupt" and process.poll() is None:
            process.send_signal(signal.SIGINT)
        elif op == "deregister":
            threading.Thread(target=reap, args=(pid, process), name=f"pyaddprocs-reap-{pid}", daemon=True).start()

    def kill(self, pid: int, config: WorkerConfig) -> None:
        """Ask the worker to exit, then escalate to SIGTERM and SIGKILL; reap the process."""
        super().kill(pid, config)
        process = config.process
        if process is None:
            return
        for grace, next_signal in ((EXIT_GRACE, signal.SIGTERM), (TERM_GRACE, signal.SIGKILL)):
            try:
                process.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not exit within %g s; sending %s", pid, grace, next_signal.name)
                process.send_signal(next_signal)
        else:
            process.wait(timeout=TERM_GRACE)
        close_pipes(process)


def close_pipes(process: subprocess.Popen) -> None:
    """Close the master's ends of a worker's pipes."""
    for stream in (process.stdin,):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


# Seconds a worker that lost its master may take to notice and exit before it is killed.
REAP_GRACE = 30.0


def reap(pid: int, process: subprocess.Popen) -> None:
    """Wait for a deregistered worker's process so it does not stay a zombie; kill it
    when it is still running after REAP_GRACE (a stopped process cannot exit itself)."""
    try:
        process.wait(timeout=REAP_GRACE)
    except subprocess.TimeoutExpired:
        log.warning("worker %d (os pid %d) still runs %g s after it was removed; killing it",
                    pid, process.pid, REAP_GRACE)
        process.kill()
        process.wait(timeout=TERM_GRACE)
    close_pipes(process)
