"""RemoteChannel: a channel that lives on one process and is used from any process.

Every operation runs on the owner (``where``) through a remote call, so ``put`` and
``take`` block across processes exactly as they would locally. The store is a
``Channel`` by default, or whatever a factory returned on the owner: any object with
``queue.Queue``'s ``put(item, timeout=)`` and ``get(timeout=)`` works, and ``close``
needs a ``close()`` method on it.
"""

from __future__ import annotations

import queue
import weakref
from typing import Any, Callable, Iterator

from .errors import ChannelClosedError, RemoteException
from .future import _release_claim
from .process_group import CONTROL_ADD_CLIENT, current_caller, get_group
from .refs import Channel, RemoteValue
from .serialization import destination

# Errors of channel operations that reach the caller as themselves, not wrapped.
_UNWRAPPED = (ChannelClosedError, TimeoutError)


class RemoteChannel:
    """A channel owned by one process, usable from every process of the cluster.

    ``RemoteChannel(pid=None, maxsize=1)`` makes a ``Channel(maxsize)`` on ``pid``
    (default: this process); ``maxsize <= 0`` means unbounded.
    ``RemoteChannel(factory, pid)`` runs ``factory()`` on ``pid`` to make the store.
    """

    __slots__ = ("where", "ref", "_finalizer", "__weakref__")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        factory, where, maxsize = _parse_arguments(args, kwargs)
        group = get_group()
        where = group.myid if where is None else int(where)
        ref = group.next_ref()
        if where == group.myid:
            create_channel(ref, factory, maxsize)
        else:
            group.call_fetch(where, create_channel, ref, factory, maxsize)
        self._setup(where, ref)

    def _setup(self, where: int, ref: tuple) -> None:
        self.where = where
        self.ref = tuple(ref)
        self._finalizer = weakref.finalize(self, _release_claim, where, self.ref)
        self._finalizer.atexit = False
        get_group().client_refs[self.ref] = self

    def __repr__(self) -> str:
        return f"RemoteChannel(where={self.where}, ref={self.ref})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteChannel) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(("RemoteChannel", self.ref))

    def _run(self, operation: str, *args: Any) -> Any:
        group = get_group()
        if self.where == group.myid:
            return channel_operation(self.ref, operation, args)
        try:
            return group.call_fetch(self.where, channel_operation, self.ref, operation, args)
        except RemoteException as err:
            if isinstance(err.exc, _UNWRAPPED):
                raise err.exc from None
            raise

    def put(self, value: Any, timeout: float | None = None) -> "RemoteChannel":
        """Append ``value``; block while the channel is full (TimeoutError after ``timeout``)."""
        self._run("put", value, _check_timeout(timeout))
        return self

    def take(self, timeout: float | None = None) -> Any:
        """Remove and return the oldest value; block while empty.

        Raises ChannelClosedError when the channel is closed and empty, TimeoutError
        after ``timeout`` seconds.
        """
        return self._run("take", _check_timeout(timeout))

    def fetch(self, timeout: float | None = None) -> Any:
        """Return the oldest value without removing it; block while empty."""
        return self._run("fetch", _check_timeout(timeout))

    def isready(self) -> bool:
        """Return True when a take would not block."""
        return self._run("isready")

    def empty(self) -> bool:
        """Return True when the channel is empty."""
        return self._run("empty")

    def close(self) -> None:
        """Close the channel: puts fail, takes drain what is left and then fail."""
        self._run("close")

    def is_open(self) -> bool:
        """Return True until the channel is closed."""
        return self._run("is_open")

    def __iter__(self) -> Iterator[Any]:
        """Take values until the channel is closed and empty."""
        while True:
            try:
                yield self.take()
            except ChannelClosedError:
                return

    def __reduce__(self):
        target = destination()
        if target is not None and target != self.where:
            get_group().send_control(self.where, CONTROL_ADD_CLIENT, self.ref, target)
        return (_rebuild_channel, (self.where, self.ref))


def _check_timeout(timeout: Any) -> float | None:
    # Checked here, so a bad value fails in the caller and not on the channel's owner.
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"invalid timeout {timeout!r}: expected None or a number of seconds")
    return timeout


def _parse_arguments(args: tuple, kwargs: dict) -> tuple[Callable | None, int | None, int]:
    if len(args) > 2:
        raise TypeError(f"RemoteChannel() takes at most 2 positional arguments ({len(args)} given)")
    factory = kwargs.pop("factory", None)
    if args and callable(args[0]):
        factory, args = args[0], args[1:]
        where = args[0] if args else kwargs.pop("pid", None)
        maxsize = kwargs.pop("maxsize", 1)
    else:
        where = args[0] if args else kwargs.pop("pid", None)
        maxsize = args[1] if len(args) > 1 else kwargs.pop("maxsize", 1)
    if kwargs:
        raise TypeError(f"RemoteChannel() got unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
    if where is not None and (not isinstance(where, int) or isinstance(where, bool)):
        raise TypeError(f"RemoteChannel pid must be an int, not {where!r}")
    if not isinstance(maxsize, int) or isinstance(maxsize, bool):
        raise TypeError(f"RemoteChannel maxsize must be an int, not {maxsize!r}")
    return factory, where, maxsize


def _rebuild_channel(where: int, ref: tuple) -> RemoteChannel:
    group = get_group()
    ref = tuple(ref)
    existing = group.client_refs.get(ref)
    if isinstance(existing, RemoteChannel):
        return existing
    if where == group.myid:
        group.refs.add_client(ref, group.myid)
    channel = RemoteChannel.__new__(RemoteChannel)
    channel._setup(where, ref)
    return channel


# -- functions the owner runs -------------------------------------------------------------


def create_channel(ref: tuple, factory: Callable | None, maxsize: int) -> None:
    """Run on the owner: make the store for a new RemoteChannel."""
    group = get_group()
    store = factory() if factory is not None else Channel(maxsize)
    value = RemoteValue(tuple(ref), store=store)
    value.clients.add(current_caller())
    group.refs.add(value)


def channel_operation(ref: tuple, operation: str, args: tuple) -> Any:
    """Run on the owner: apply one channel operation to the store of ``ref``."""
    group = get_group()
    stored = group.refs.lookup(tuple(ref), create=False)
    if stored is None or stored.store is None:
        raise LookupError(
            f"RemoteChannel {tuple(ref)} does not exist on process {group.myid}: it was freed "
            "after every reference to it was dropped, or its owner restarted"
        )
    store = stored.store
    try:
        if operation == "put":
            value, timeout = args
            store.put(value, timeout=timeout)
            return None
        if operation in ("take", "fetch"):
            (timeout,) = args
            if operation == "take":
                method = getattr(store, "take", None) or store.get
            else:
                method = getattr(store, "fetch", None)
                if method is None:
                    raise TypeError(f"the channel store {type(store).__name__} has no fetch()")
            return method(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"channel {operation} timed out after {args[-1]} seconds") from None
    except queue.Full:
        raise TimeoutError(f"channel put timed out after {args[-1]} seconds") from None
    if operation == "isready":
        return store.isready() if hasattr(store, "isready") else not store.empty()
    if operation == "empty":
        return store.empty()
    if operation == "close":
        if not hasattr(store, "close"):
            raise TypeError(f"the channel store {type(store).__name__} has no close()")
        store.close()
        return None
    if operation == "is_open":
        return store.is_open() if hasattr(store, "is_open") else True
    raise ValueError(f"unknown channel operation {operation!r}")
