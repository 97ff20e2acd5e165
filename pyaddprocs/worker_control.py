"""The worker's exit switch, in its own module.

``python -m pyaddprocs.worker`` runs the worker module as ``__main__``, so state kept
there would be a second copy from the one that functions pickled by reference see.
The exit event lives here instead, where both see the same object.
"""

from __future__ import annotations

import logging
import sys
import threading

log = logging.getLogger(__name__)

exit_requested = threading.Event()
exit_code = 0


def request_exit(code: int, reason: str) -> None:
    """Ask the worker's main thread to end the process with ``code``."""
    global exit_code
    if exit_requested.is_set():
        return
    exit_code = code
    exit_requested.set()
    log.info("worker exiting (%s)", reason)
    if code:
        try:
            print(f"pyaddprocs worker exiting: {reason}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # the master, which reads our output, may be gone
            pass


def exit_worker() -> None:
    """Run on a worker (sent by rmprocs): end the worker process."""
    request_exit(0, "removed by the master")


def interrupt_calls() -> None:
    """Run on a worker (sent by interrupt): raise KeyboardInterrupt in its running calls."""
    from .process_group import get_group

    get_group().runner.interrupt_all(exclude=threading.get_ident())
