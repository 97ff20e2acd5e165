"""Settings read from the environment."""

from __future__ import annotations

import os

DEFAULT_WORKER_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0


def _seconds_from_environment(name: str, default: float) -> float:
    """Return the positive number of seconds in environment variable ``name``, or ``default``."""
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"invalid {name} {text!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"invalid {name} {text!r}: must be a positive number of seconds")
    return value


def worker_timeout() -> float:
    """Return PYADDPROCS_WORKER_TIMEOUT in seconds (default 60), read on every call.

    Both sides use it: a worker exits when the master has not joined it in time, and
    the master gives up on a worker that has not announced itself or joined in time.
    """
    return _seconds_from_environment("PYADDPROCS_WORKER_TIMEOUT", DEFAULT_WORKER_TIMEOUT)


def connect_timeout() -> float:
    """Return PYADDPROCS_CONNECT_TIMEOUT in seconds (default 10), read on every call.

    It bounds how long one worker tries to open a link to another worker, so an address
    that a peer cannot reach fails the call that needed the link instead of hanging.
    """
    return _seconds_from_environment("PYADDPROCS_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
