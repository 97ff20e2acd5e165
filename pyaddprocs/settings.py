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


DEFAULT_CONNECT_TIMEOUT = 10.0


def connect_timeout() -> float:
    """Return PYADDPROCS_CONNECT_TIMEOUT in seconds (default 10), read on every call.

    It bounds how long one worker tries to open a link to another worker, so an address
    that a peer cannot reach fails the call that needed the link instead of hanging.
    """
    text = os.environ.get("PYADDPROCS_CONNECT_TIMEOUT", "")
    if not text:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"invalid PYADDPROCS_CONNECT_TIMEOUT {text!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"invalid PYADDPROCS_CONNECT_TIMEOUT {text!r}: must be a positive number of seconds")
    return value
