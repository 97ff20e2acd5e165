"""Future: a reference to a value that is, or will be, stored on one process.

``remotecall(f, pid)`` returns a Future whose value lives on ``pid`` (its owner).
The owner tells the caller when the call is done, and sends the value along when it
pickles to less than INLINE_RESULT_LIMIT bytes; a larger value is fetched only when
asked for, so data can stay on the worker and be used there by later calls.

    fetch() -> value cached here (later fetches make no network trip), and this
               process's claim on the owner's copy is released.

A Future can be pickled into another call: the receiver's copy refers to the same
value. An unfetched Future registers its new holder with the owner (see refs.py); a
fetched one carries its value with it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from typing import Any, Callable

from transport_zmq import ResultFlag

from .errors import ProcessExitedError, RemoteException
from .process_group import (
    CONTROL_ADD_CLIENT, Waiter, current_caller, existing_group, get_group,
)
from .serialization import destination

log = logging.getLogger(__name__)

_UNSET = object()
# Extra seconds a caller waits beyond the timeout it gave the owner, so the owner's
# own timeout error arrives first.
_OWNER_TIMEOUT_GRACE = 5.0


def _release_claim(where: int, ref: tuple[int, int]) -> None:
    # A finalizer: it may run inside garbage collection on any thread, even one that
    # holds a socket lock in the middle of a send, so it only queues the message.
    group = existing_group()
    if group is not None:
        group.release_later(where, ref)


class Future:
    """A reference to one value on one process; see the module docstring.

    ``Future(pid=None)`` makes an unset future owned by ``pid`` (default: this
    process) that ``put(value)`` sets once.
    """

    __slots__ = ("where", "ref", "_value", "_is_error", "_waiter", "_finalizer", "__weakref__")

    def __init__(self, pid: int | None = None) -> None:
        group = get_group()
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)):
            raise TypeError(f"Future pid must be an int, not {pid!r}")
        if pid is not None and pid < 1:
            raise ValueError(f"invalid Future pid {pid}: pids start at 1")
        where = group.myid if pid is None else pid
        self._setup(where, group.next_ref(), waiter=None, claim=True)

    @classmethod
    def _create(cls, where: int, ref: tuple[int, int], waiter: Waiter | None, claim: bool) -> "Future":
        future = cls.__new__(cls)
        future._setup(where, ref, waiter, claim)
        return future

    def _setup(self, where: int, ref: tuple[int, int], waiter: Waiter | None, claim: bool) -> None:
        self.where = where
        self.ref = ref
        self._value: Any = _UNSET
        self._is_error = False
        self._waiter = waiter
        self._finalizer = None
        if claim:
            self._finalizer = weakref.finalize(self, _release_claim, where, ref)
            self._finalizer.atexit = False
        get_group().client_refs[ref] = self

    def __repr__(self) -> str:
        state = "ready" if self._value is not _UNSET else "pending"
        return f"Future(where={self.where}, ref={self.ref}, {state})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Future) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(("Future", self.ref))

    # -- reading the value -----------------------------------------------------------

    def fetch(self, timeout: float | None = None) -> Any:
        """Return the value, waiting up to ``timeout`` seconds; raise the remote error.

        Raises RemoteException when the call failed, ProcessExitedError when the owner
        is gone, and TimeoutError when ``timeout`` passes first.
        """
        if self._value is _UNSET:
            value, is_error = self._obtain(timeout)
            self._cache(value, is_error)
        if self._is_error:
            raise self._value
        return self._value

    def _obtain(self, timeout: float | None) -> tuple[Any, bool]:
        group = get_group()
        if self.where == group.myid:
            stored = group.refs.lookup(self.ref, create=True, client=group.myid)
            if not stored.wait(timeout):
                raise concurrent.futures.TimeoutError(f"{self!r} not ready after {timeout:g} seconds")
            return stored.value, stored.is_error
        waiter = self._waiter
        if waiter is not None:
            if not waiter.wait(timeout):
                raise concurrent.futures.TimeoutError(f"{self!r} not ready after {timeout:g} seconds")
            if waiter.error is None and waiter.flags & ResultFlag.NOT_STORED:
                return self._fetch_from_owner(timeout)
            return self._decode(waiter)
        return self._fetch_from_owner(timeout)

    def _decode(self, waiter: Waiter) -> tuple[Any, bool]:
        try:
            return waiter.outcome()
        except Exception as err:
            error = RuntimeError(f"could not deserialize the value of {self!r}: {type(err).__name__}: {err}")
            error.__cause__ = err
            # Named after the process the value came from, as remotecall_fetch does.
            return RemoteException.capture(waiter.pid, error), True

    def _fetch_from_owner(self, timeout: float | None) -> tuple[Any, bool]:
        group = get_group()
        local_timeout = None if timeout is None else timeout + _OWNER_TIMEOUT_GRACE
        try:
            return group.call_fetch(self.where, fetch_ref, self.ref, timeout, timeout=local_timeout), False
        except RemoteException as err:
            if isinstance(err.exc, TimeoutError) and getattr(err.exc, "pyaddprocs_wait", False):
                raise concurrent.futures.TimeoutError(f"{self!r} not ready after {timeout:g} seconds") from None
            return err, True
        except ProcessExitedError as err:
            return err, True

    def _cache(self, value: Any, is_error: bool) -> None:
        self._value = value
        self._is_error = is_error
        self._waiter = None
        if self._finalizer is not None and self._finalizer.alive:
            # The value is here now; the owner may free its copy as far as we are concerned.
            self._finalizer()

    def wait(self, timeout: float | None = None) -> "Future":
        """Wait until the value is ready and return this Future; raise if the call failed."""
        if self._value is not _UNSET:
            if self._is_error:
                raise self._value
            return self
        group = get_group()
        waiter = self._waiter
        if self.where == group.myid or waiter is None:
            if self.where != group.myid:
                local_timeout = None if timeout is None else timeout + _OWNER_TIMEOUT_GRACE
                try:
                    failed = group.call_fetch(self.where, wait_ref, self.ref, timeout, timeout=local_timeout)
                except RemoteException as err:
                    if isinstance(err.exc, TimeoutError):
                        raise concurrent.futures.TimeoutError(f"{self!r} not ready after {timeout:g} seconds") from None
                    raise
                if failed:
                    self.fetch()
                return self
            self.fetch(timeout)
            return self
        if not waiter.wait(timeout):
            raise concurrent.futures.TimeoutError(f"{self!r} not ready after {timeout:g} seconds")
        if waiter.error is not None or waiter.flags & ResultFlag.ERROR:
            self.fetch()
        return self

    def isready(self) -> bool:
        """Return True when the value is ready, asking the owner when nothing is cached here."""
        if self._value is not _UNSET:
            return True
        group = get_group()
        if self.where == group.myid:
            stored = group.refs.lookup(self.ref, create=False)
            return stored is not None and stored.is_set()
        if self._waiter is not None:
            return self._waiter.done()
        try:
            return group.call_fetch(self.where, isready_ref, self.ref)
        except ProcessExitedError:
            return True  # done, with ProcessExitedError as its outcome

    # -- the concurrent.futures.Future reading protocol --------------------------------

    def result(self, timeout: float | None = None) -> Any:
        """Return the value, as ``fetch``; the ``concurrent.futures`` name."""
        return self.fetch(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Return the error the call ended with, or None when it succeeded."""
        try:
            self.wait(timeout)
        except (RemoteException, ProcessExitedError) as err:
            return err
        return None

    def done(self) -> bool:
        """Return True when the value is ready; the ``concurrent.futures`` name of isready."""
        return self.isready()

    def running(self) -> bool:
        """Return True while the value is not ready."""
        return not self.isready()

    def cancel(self) -> bool:
        """Return False: a remote call cannot be cancelled (use ``interrupt``)."""
        return False

    def cancelled(self) -> bool:
        """Return False: a remote call is never cancelled."""
        return False

    def add_done_callback(self, function: Callable[["Future"], Any]) -> None:
        """Call ``function(self)`` once the value is ready.

        As with ``concurrent.futures``, a Future that is already done calls it at once
        in this thread; otherwise it runs later on a pool thread.
        """
        group = get_group()
        waiter = self._waiter
        if self._value is not _UNSET or (waiter is not None and waiter.done()):
            _call_callback(function, self)
            return
        if waiter is None:
            group.runner.submit(_callback_after_wait, self, function)
            return
        lock = threading.Lock()
        called = []

        def run_once(_waiter: Any = None) -> None:
            with lock:
                if called:
                    return
                called.append(True)
            group.runner.submit(_call_callback, function, self)

        waiter.callbacks.append(run_once)
        if waiter.done():  # delivered while the callback was being added
            run_once()

    def __await__(self):
        """Await the value in asyncio; the wait runs on the loop's default executor."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, self.fetch).__await__()

    # -- setting the value -----------------------------------------------------------

    def put(self, value: Any) -> "Future":
        """Set the value of an unset Future; a second put raises RuntimeError."""
        if self._value is not _UNSET:
            raise RuntimeError("Future can be set only once")
        group = get_group()
        if self.where == group.myid:
            stored = group.refs.lookup(self.ref, create=True, client=group.myid)
            if not stored.set(value):
                raise RuntimeError("Future can be set only once")
        else:
            group.call_fetch(self.where, put_future, self.ref, value)
            if self._finalizer is not None:
                self._finalizer.detach()  # put_future removed us from the owner's clients
        self._cache(value, False)
        return self

    # -- crossing processes ----------------------------------------------------------

    def __reduce__(self):
        if self._value is not _UNSET:
            return (_rebuild_future, (self.where, self.ref, True, self._value, self._is_error))
        target = destination()
        if target is not None and target != self.where:
            get_group().send_control(self.where, CONTROL_ADD_CLIENT, self.ref, target)
        return (_rebuild_future, (self.where, self.ref, False, None, False))


def _call_callback(function: Callable, future: Future) -> None:
    try:
        function(future)
    except Exception:
        log.exception("done callback %r of %r failed", function, future)


def _callback_after_wait(future: Future, function: Callable) -> None:
    try:
        future.wait()
    except Exception as err:  # the callback reads the error through future.exception()
        log.debug("%r finished with an error: %s", future, err)
    _call_callback(function, future)


def _rebuild_future(where: int, ref: tuple, has_value: bool, value: Any, is_error: bool) -> Future:
    group = get_group()
    ref = tuple(ref)
    existing = group.client_refs.get(ref)
    if existing is not None:
        if has_value and existing._value is _UNSET:
            existing._cache(value, is_error)
        return existing
    if has_value:
        future = Future._create(where, ref, None, claim=False)
        future._value, future._is_error = value, is_error
        return future
    if where == group.myid:
        group.refs.add_client(ref, group.myid)   # back on its owner: hold it here
    return Future._create(where, ref, None, claim=True)


# -- functions the owner runs for other processes ---------------------------------------


def fetch_ref(ref: tuple, timeout: float | None = None) -> Any:
    """Run on the owner: wait for the value of ``ref`` and return it (raise its error)."""
    stored = get_group().refs.lookup(tuple(ref), create=True, client=current_caller())
    if not stored.wait(timeout):
        error = TimeoutError(f"value {tuple(ref)} not ready after {timeout:g} seconds")
        error.pyaddprocs_wait = True
        raise error
    if stored.is_error:
        raise stored.value
    return stored.value


fetch_ref._pyaddprocs_passthrough = True  # a stored RemoteException goes back unwrapped


def wait_ref(ref: tuple, timeout: float | None = None) -> bool:
    """Run on the owner: wait for ``ref`` and return True when its value is an error."""
    stored = get_group().refs.lookup(tuple(ref), create=True, client=current_caller())
    if not stored.wait(timeout):
        raise TimeoutError(f"value {tuple(ref)} not ready after {timeout:g} seconds")
    return stored.is_error


def isready_ref(ref: tuple) -> bool:
    """Run on the owner: return True when ``ref`` has its value."""
    stored = get_group().refs.lookup(tuple(ref), create=True, client=current_caller())
    return stored.is_set()


def put_future(ref: tuple, value: Any) -> None:
    """Run on the owner: set the value of ``ref`` once; the caller stops being a client."""
    group = get_group()
    stored = group.refs.lookup(tuple(ref), create=True, client=current_caller())
    if not stored.set(value):
        raise RuntimeError("Future can be set only once")
    group.refs.remove_client(tuple(ref), current_caller())
