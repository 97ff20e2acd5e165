"""Remote calls: remotecall, remotecall_fetch, remotecall_wait, remote_do, spawnat, fetch, everywhere.

A call to this process's own pid runs here without serialization: ``remotecall_fetch``
runs in the calling thread, ``remotecall`` and ``remote_do`` on a pool thread.
``pid`` may also be a WorkerPool: the call takes a worker from the pool and gives it
back when the call is done.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, Callable

from transport_zmq import MessageKind

from .errors import RemoteException
from .future import Future
from .process_group import get_group
from .remote_channel import RemoteChannel

log = logging.getLogger(__name__)

_round_robin = itertools.count()


def _check_callable(function: Any) -> None:
    if not callable(function):
        raise TypeError(f"the function to call must be callable, not {function!r}")


def _check_pid(pid: Any) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int or a WorkerPool, not {pid!r}")
    if pid < 1:
        raise ValueError(f"invalid pid {pid}: pids start at 1")
    return pid


def _is_pool(pid: Any) -> bool:
    # Plain pids are by far the common case, so they skip the import.
    if type(pid) is int:
        return False
    from .pool import WorkerPool

    return isinstance(pid, WorkerPool)


def remotecall(f: Callable, pid: Any, /, *args: Any, **kwargs: Any) -> Future:
    """Start ``f(*args, **kwargs)`` on ``pid`` and return a Future for its value."""
    _check_callable(f)
    if _is_pool(pid):
        pool = pid
        worker = pool.take()
        try:
            future = remotecall(f, worker, *args, **kwargs)
        except BaseException:
            pool.put(worker)
            raise
        future.add_done_callback(lambda _: pool.put(worker))
        return future
    pid = _check_pid(pid)
    group = get_group()
    ref = group.next_ref()
    if pid == group.myid:
        stored = group.refs.lookup(ref, create=True, client=group.myid)
        future = Future._create(pid, ref, None, claim=True)
        group.runner.submit(_run_local, stored, f, args, kwargs)
        return future
    waiter = group.start_call(MessageKind.CALL, pid, f, args, kwargs, response=ref, waiter_number=ref[1])
    return Future._create(pid, ref, waiter, claim=True)


def _run_local(stored, f: Callable, args: tuple, kwargs: dict) -> None:
    value, is_error = get_group().execute_call(f, args, kwargs)
    stored.set(value, is_error)


def remotecall_fetch(f: Callable, pid: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Run ``f(*args, **kwargs)`` on ``pid`` and return its value; raise RemoteException on error."""
    _check_callable(f)
    if _is_pool(pid):
        pool = pid
        worker = pool.take()
        try:
            return remotecall_fetch(f, worker, *args, **kwargs)
        finally:
            pool.put(worker)
    pid = _check_pid(pid)
    group = get_group()
    if pid == group.myid:
        value, is_error = group.execute_call(f, args, kwargs)
        if is_error:
            raise value
        return value
    waiter = group.start_call(MessageKind.CALL_FETCH, pid, f, args, kwargs)
    waiter.wait()
    try:
        value, is_error = waiter.outcome()
    except Exception as err:
        error = RuntimeError(f"could not deserialize the result from process {pid}: {type(err).__name__}: {err}")
        error.__cause__ = err
        raise RemoteException.capture(pid, error) from err
    if is_error:
        raise value
    return value


def remotecall_wait(f: Callable, pid: Any, /, *args: Any, **kwargs: Any) -> Future:
    """Run ``f`` on ``pid``, wait until it is done and return the Future; raise if it failed."""
    if _is_pool(pid):
        pool = pid
        worker = pool.take()
        try:
            return remotecall_wait(f, worker, *args, **kwargs)
        finally:
            pool.put(worker)
    future = remotecall(f, pid, *args, **kwargs)
    future.wait()
    return future


def remote_do(f: Callable, pid: Any, /, *args: Any, **kwargs: Any) -> None:
    """Run ``f(*args, **kwargs)`` on ``pid`` without waiting; errors are printed there."""
    _check_callable(f)
    if _is_pool(pid):
        pool = pid
        worker = pool.take()
        try:
            remote_do(f, worker, *args, **kwargs)
        finally:
            pool.put(worker)
        return
    pid = _check_pid(pid)
    group = get_group()
    if pid == group.myid:
        group.runner.submit(_run_and_report, f, args, kwargs)
        return
    group.start_call(MessageKind.REMOTE_DO, pid, f, args, kwargs)


def _run_and_report(f: Callable, args: tuple, kwargs: dict) -> None:
    value, is_error = get_group().execute_call(f, args, kwargs)
    if is_error:
        log.error("remote_do on this process failed:\n%s", value)


def spawnat(pid: Any, f: Callable, /, *args: Any, **kwargs: Any) -> Future:
    """``remotecall(f, pid, ...)``; ``pid="any"`` picks the next worker in turn."""
    if pid == "any":
        from .cluster import workers

        choices = workers()
        pid = choices[next(_round_robin) % len(choices)]
    return remotecall(f, pid, *args, **kwargs)


def fetch(x: Any) -> Any:
    """Return the value of a Future, the next value of a RemoteChannel, or ``x`` itself."""
    if isinstance(x, (Future, RemoteChannel)):
        return x.fetch()
    return x


def everywhere(f: Callable, *args: Any, procs: Any = None, **kwargs: Any) -> list[Any]:
    """Run ``f`` on every process (default: all, master included); return the values in pid order.

    All calls start at once. When some fail, the RemoteException of the lowest failing
    pid is raised, with a note that names the others.
    """
    from .cluster import procs as all_procs

    _check_callable(f)
    pids = sorted(all_procs()) if procs is None else list(procs)
    group = get_group()
    futures = [
        remotecall(f, pid, *args, **kwargs) if pid != group.myid else None
        for pid in pids
    ]
    results: list[Any] = []
    errors: list[BaseException] = []
    for pid, future in zip(pids, futures):
        try:
            results.append(future.fetch() if future is not None else remotecall_fetch(f, pid, *args, **kwargs))
        except Exception as err:
            errors.append(err)
            results.append(err)
    if errors:
        first = errors[0]
        if len(errors) > 1 and hasattr(first, "add_note"):
            first.add_note(f"everywhere: {len(errors)} of {len(pids)} calls failed; the others: "
                           + "; ".join(str(e).splitlines()[0] for e in errors[1:]))
        raise first
    return results
