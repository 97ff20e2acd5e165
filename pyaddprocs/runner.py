"""An elastic thread pool that runs incoming calls, each on its own thread.

Incoming calls must run concurrently: a call blocked in ``RemoteChannel.take`` or in a
nested ``remotecall_fetch`` must not hold up the calls that would unblock it. A
fixed-size pool deadlocks as soon as all its threads wait, so this pool starts a new
thread whenever no idle one is available and lets threads beyond ``KEEP_IDLE`` exit
after ``IDLE_TIMEOUT`` seconds without work.

A worker runs the calls it receives from its ROUTER socket on the I/O loop first
(``Node.run_inline``) and reaches this pool only for calls that arrive over its
outgoing links; ``run_here`` marks such an inline call as running for ``interrupt_all``.

``interrupt_all()`` raises KeyboardInterrupt inside every thread that is running a
call. CPython delivers it at the next bytecode boundary, so a call blocked inside C
code (a sleep, a lock, a socket read) sees it only when that returns.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

KEEP_IDLE = 4
IDLE_TIMEOUT = 30.0
# A warning is logged each time the pool grows past a multiple of this.
GROWTH_WARNING_STEP = 1000


class CallRunner:
    """Runs submitted functions on pool threads; see the module docstring."""

    def __init__(self, name: str = "pyaddprocs-call") -> None:
        self._name = name
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._running: dict[int, bool] = {}   # thread ident -> running a call now
        self._closed = False

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on a pool thread; exceptions are logged, not raised."""
        self._tasks.put((function, args))
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                return
            self._threads += 1
            count = self._threads
        if count % GROWTH_WARNING_STEP == 0:
            log.warning("%d threads are running calls at once on this process", count)
        threading.Thread(target=self._serve, name=f"{self._name}-{count}", daemon=True).start()

    def run_here(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on this thread as a call, so ``interrupt_all`` reaches it."""
        ident = threading.get_ident()
        self._running[ident] = True
        try:
            function(*args)
        finally:
            self._running[ident] = False

    def _serve(self) -> None:
        ident = threading.get_ident()
        while True:
            try:
                function, args = self._tasks.get(timeout=IDLE_TIMEOUT)
            except queue.Empty:
                with self._lock:
                    if self._tasks.empty() and (self._threads > KEEP_IDLE or self._closed):
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            self._running[ident] = True
            try:
                function(*args)
            except BaseException:  # the call wrapper reports errors; this is a last resort
                log.exception("uncaught error in %s", getattr(function, "__name__", function))
            finally:
                self._running[ident] = False
            with self._lock:
                self._idle += 1

    def interrupt_all(self, exclude: int | None = None) -> int:
        """Raise KeyboardInterrupt in every thread running a call but ``exclude``; return how many."""
        count = 0
        for ident, busy in list(self._running.items()):
            if busy and ident != exclude:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt)
                )
                count += 1
        log.info("interrupted %d running calls", count)
        return count
