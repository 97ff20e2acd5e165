"""Settings read from the environment."""

from __future__ import annotations

import os

DEFAULT_WORKER_TIMEOUT = 60.0


def worker_timeout() -> float:
    """Return PYADDPROCS_WORKER_TIMEOUT in seconds (default 60), read on every call.

    Both sides use it: a worker exits when the master has not joined it in time, and
    the master gives up on a worker that has not announced itself or joined in time.
    """
    text = os.environ.get("PYADDPROCS_WORKER_TIMEOUT", "")
    if not text:
        return DEFAULT_WORKER_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"invalid PYADDPROCS_WORKER_TIMEOUT {text!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"invalid PYADDPROCS_WORKER_TIMEOUT {text!r}: must be a positive number of seconds")
    return value
