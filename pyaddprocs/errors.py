"""Exceptions that reach users: remote errors, lost workers, failed launches."""

from __future__ import annotations

import pickle
import traceback

import cloudpickle

from transport_zmq import PeerNotConnectedError

__all__ = [
    "ChannelClosedError", "LaunchError", "PeerNotConnectedError", "ProcessExitedError",
    "RemoteException", "RemoteExceptionStandIn", "WorkerTimeoutError",
]


class RemoteExceptionStandIn(Exception):
    """Stands in for a remote exception that could not be pickled or unpickled.

    ``type_name`` is the original exception's qualified type name.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message

    def __reduce__(self):
        return (type(self), (self.type_name, self.message))


class RemoteException(Exception):
    """An exception raised by a function that ran on another process.

    ``pid`` is the process it ran on, ``exc`` the original exception (or a
    ``RemoteExceptionStandIn`` when it could not cross the process boundary), and
    ``traceback_text`` the formatted traceback from that process.
    """

    def __init__(self, pid: int, exc: BaseException, traceback_text: str = "") -> None:
        super().__init__(pid, exc, traceback_text)
        self.pid = pid
        self.exc = exc
        self.traceback_text = traceback_text

    @classmethod
    def capture(cls, pid: int, exc: BaseException, skip_frames: int = 0) -> "RemoteException":
        """Wrap ``exc``, which is being handled on process ``pid``, with its traceback.

        ``skip_frames`` drops that many outer frames (pyaddprocs' own call wrapper).
        """
        tb = exc.__traceback__
        for _ in range(skip_frames):
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        return cls(pid, exc, text)

    def __str__(self) -> str:
        text = f"On worker {self.pid}:\n{type(self.exc).__name__}: {self.exc}"
        if self.traceback_text:
            text += "\n\nRemote traceback:\n" + self.traceback_text.rstrip()
        return text

    def __reduce__(self):
        # The original exception travels as its own pickle, so a receiver that cannot
        # unpickle it (its class is missing there) still gets the type name, the
        # message and the traceback.
        try:
            exc_bytes = cloudpickle.dumps(self.exc, protocol=5)
        except Exception:
            exc_bytes = None
        return (
            _rebuild_remote_exception,
            (self.pid, exc_bytes, _type_name(self.exc), str(self.exc), self.traceback_text),
        )


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    if isinstance(exc, RemoteExceptionStandIn):
        return exc.type_name
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _rebuild_remote_exception(pid, exc_bytes, type_name, message, traceback_text):
    exc: BaseException | None = None
    if exc_bytes is not None:
        try:
            exc = pickle.loads(exc_bytes)
        except Exception as err:
            message = f"{message} (the exception could not be unpickled here: {err})"
    if exc is None:
        exc = RemoteExceptionStandIn(type_name, message)
    return RemoteException(pid, exc, traceback_text)


class ProcessExitedError(ConnectionError):
    """The process that owed a reply has exited or was removed."""

    def __init__(self, pid: int, reason: str = "") -> None:
        message = f"process {pid} has exited" + (f": {reason}" if reason else "")
        super().__init__(message)
        self.pid = pid
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.pid, self.reason))


class LaunchError(RuntimeError):
    """A worker did not start; the message includes what its launch command printed.

    ``started_pids`` lists the workers of the same ``addprocs`` call that did start and
    stay usable.
    """

    OUTPUT_HEADING = "\nOutput of the launch command:\n"

    def __init__(self, message: str, output: str = "", started_pids: list[int] | None = None) -> None:
        full = message
        if output:
            full += self.OUTPUT_HEADING + output.rstrip()
        super().__init__(full)
        self.output = output
        self.started_pids = list(started_pids or [])


class WorkerTimeoutError(LaunchError):
    """A worker did not announce itself, or did not connect, within the worker timeout."""


class ChannelClosedError(Exception):
    """A put to a closed channel, or a take from a closed and empty one."""
