"""An elastic thread pool that runs incoming calls, each on its own thread.

Incoming calls must run concurrently: a call blocked in ``RemoteChannel.take`` or in a
nested ``remotecall_fetch`` must not hold up the calls that would unblock it. A
fixed-size pool deadlocks as soon as all its threads wait, so this pool starts a new
thread whenever no idle one is available and lets threads beyond ``KEEP_IDLE`` exit
after ``IDLE_TIMEOUT`` seconds without work.

A worker runs the calls it receives from its ROUTER socket on the I/O loop first
(``Node.run_inline``) and reaches this pool only for calls that arrive over its
outgoing links.

``interrupt_all()`` raises KeyboardInterrupt inside every thread that is running the
user code of a call, between ``enter_call`` and ``leave_call``. CPython delivers it at
the next bytecode boundary, so a call blocked inside C code (a sleep, a lock, a socket
read) receives it only when that returns. ``leave_call`` withdraws an interrupt that has
not landed yet, under the same lock ``interrupt_all`` takes, so none can land later in
the code that sends the reply (a KeyboardInterrupt there would lose the reply or
leave half a message in the socket).
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

_set_async_exception = ctypes.pythonapi.PyThreadState_SetAsyncExc

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
        self._running: dict[int, set] = {}   # thread ident -> tokens of the calls it runs now
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

    def enter_call(self) -> object:
        """Mark this thread as running a call's user code; return the token for ``leave_call``."""
        token = object()
        with self._lock:
            self._running.setdefault(threading.get_ident(), set()).add(token)
        return token

    def leave_call(self, token: object) -> None:
        """Undo ``enter_call``; calling it twice with one token is harmless.

        When the thread's last call leaves, an interrupt that has not landed yet is
        withdrawn.
        """
        ident = threading.get_ident()
        with self._lock:
            tokens = self._running.get(ident)
            if tokens is None:
                return
            tokens.discard(token)
            if not tokens:
                del self._running[ident]
                _set_async_exception(ctypes.c_ulong(ident), None)   # NULL clears a pending one

    def _serve(self) -> None:
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
            try:
                function(*args)
            except BaseException:  # the call wrapper reports errors; this is a last resort
                log.exception("uncaught error in %s", getattr(function, "__name__", function))
            with self._lock:
                self._idle += 1

    def interrupt_all(self, exclude: int | None = None) -> int:
        """Raise KeyboardInterrupt in every thread running a call but ``exclude``; return how many."""
        count = 0
        with self._lock:
            for ident in self._running:
                if ident != exclude:
                    _set_async_exception(ctypes.c_ulong(ident), ctypes.py_object(KeyboardInterrupt))
                    count += 1
        log.info("interrupted %d running calls", count)
        return count
