"""Values owned by this process on behalf of Futures and RemoteChannels elsewhere.

A remote reference is named by ``RefId = (whence, number)``: the pid that created it
and a counter on that pid. Its value lives on one owner process (``where``) in a
``RemoteValue``, which also records the clients: the pids that still hold a reference.
When the last client lets go the value is deleted (distributed reference counting,
as in Julia's Distributed):

- the creator is a client from the start, even when another process makes the value
  exist first (an unset ``Future(pid)`` is created on its owner on first use);
- a process that sends an unfetched reference to pid P tells the owner to add P,
  before it can drop its own reference (both messages travel on the same connection,
  so the owner sees them in order);
- a reference that is garbage collected, or a Future whose value has been fetched,
  tells the owner to remove its process;
- a process that dies is removed from every client set.

Client-set messages are applied on the I/O thread in arrival order, never on pool
threads, because an add and a later delete from the same process must not swap.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

from .errors import ChannelClosedError

log = logging.getLogger(__name__)

RefId = tuple[int, int]


class Channel:
    """A FIFO buffer with ``close()``, the default store behind a RemoteChannel.

    ``maxsize <= 0`` means unbounded, as with ``queue.Queue``. ``put`` blocks while the
    channel is full; ``take`` blocks while it is empty. After ``close()`` a ``put``
    raises ChannelClosedError, and a ``take`` does too once the buffer is empty.
    """

    def __init__(self, maxsize: int = 1) -> None:
        self.maxsize = maxsize
        self._items: collections.deque = collections.deque()
        self._closed = False
        self._changed = threading.Condition()

    def put(self, item: Any, timeout: float | None = None) -> None:
        """Append ``item``, waiting up to ``timeout`` seconds for room."""
        with self._changed:
            self._wait(lambda: self._closed or not self._full(), timeout, "put")
            if self._closed:
                raise ChannelClosedError("put to a closed channel")
            self._items.append(item)
            self._changed.notify_all()

    def take(self, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, waiting up to ``timeout`` seconds for one."""
        with self._changed:
            self._wait(lambda: self._closed or self._items, timeout, "take")
            if not self._items:
                raise ChannelClosedError("take from a closed and empty channel")
            item = self._items.popleft()
            self._changed.notify_all()
            return item

    get = take  # the queue.Queue name

    def fetch(self, timeout: float | None = None) -> Any:
        """Return the oldest item without removing it, waiting for one like ``take``."""
        with self._changed:
            self._wait(lambda: self._closed or self._items, timeout, "fetch")
            if not self._items:
                raise ChannelClosedError("fetch from a closed and empty channel")
            return self._items[0]

    def isready(self) -> bool:
        """Return True when a take would not block."""
        with self._changed:
            return bool(self._items)

    def empty(self) -> bool:
        """Return True when the channel is empty."""
        return not self.isready()

    def qsize(self) -> int:
        """Return the number of items in the channel."""
        with self._changed:
            return len(self._items)

    def close(self) -> None:
        """Close the channel; waiting puts and takes wake up."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def is_open(self) -> bool:
        """Return True until ``close()`` is called."""
        return not self._closed

    def _full(self) -> bool:
        return self.maxsize > 0 and len(self._items) >= self.maxsize

    def _wait(self, ready: Callable[[], Any], timeout: float | None, operation: str) -> None:
        if not ready():
            step_aside_before_blocking()
        if timeout is None:
            while not ready():
                self._changed.wait()
            return
        deadline = time.monotonic() + timeout
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"channel {operation} timed out after {timeout:g} seconds")
            self._changed.wait(remaining)


def step_aside_before_blocking() -> None:
    """Let a call that runs on the I/O thread hand the loop over before it blocks.

    See ``transport_zmq.Node.run_inline``: a call that waits for something another
    message brings must not hold the loop that would read that message.
    """
    from .process_group import existing_group

    group = existing_group()
    if group is not None:
        group.node.step_aside()


class RemoteValue:
    """The owner's side of one reference: the value once set, and the client pids."""

    __slots__ = ("ref", "clients", "store", "_event", "value", "is_error")

    def __init__(self, ref: RefId, store: Any = None) -> None:
        self.ref = ref
        self.clients: set[int] = set()
        self.store = store          # the channel of a RemoteChannel, None for a Future
        self._event = threading.Event()
        self.value: Any = None
        self.is_error = False

    def set(self, value: Any, is_error: bool = False) -> bool:
        """Set a Future's value once; return False when it was already set."""
        if self._event.is_set():
            return False
        self.value = value
        self.is_error = is_error
        self._event.set()
        return True

    def is_set(self) -> bool:
        """Return True once the value is set."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the value is set; return False on timeout."""
        if not self._event.is_set():
            step_aside_before_blocking()
        return self._event.wait(timeout)


class RefStore:
    """The RemoteValues this process owns, by RefId."""

    def __init__(self) -> None:
        self._values: dict[RefId, RemoteValue] = {}
        self._lock = threading.Lock()

    def lookup(self, ref: RefId, create: bool = True, client: int | None = None) -> RemoteValue | None:
        """Return the value for ``ref``, creating an empty one if asked.

        A new value starts with its creator (``ref[0]``) and ``client`` as clients: the
        creator holds a reference from the moment it made the RefId, even when another
        process touches the value first.
        """
        with self._lock:
            value = self._values.get(ref)
            if value is None and create:
                value = self._values[ref] = RemoteValue(ref)
                value.clients.add(ref[0])
                if client is not None:
                    value.clients.add(client)
            return value

    def add(self, value: RemoteValue) -> None:
        """Store a new value under its RefId."""
        with self._lock:
            self._values[value.ref] = value

    def add_client(self, ref: RefId, pid: int) -> None:
        """Record that ``pid`` holds a reference to ``ref``."""
        with self._lock:
            value = self._values.get(ref)
            if value is None:
                value = self._values[ref] = RemoteValue(ref)
                value.clients.add(ref[0])
            value.clients.add(pid)

    def remove_client(self, ref: RefId, pid: int) -> None:
        """Record that ``pid`` dropped ``ref``; delete the value when no client is left."""
        with self._lock:
            value = self._values.get(ref)
            if value is None:
                return
            value.clients.discard(pid)
            if not value.clients:
                del self._values[ref]
                log.debug("freed remote value %s", ref)

    def remove_process(self, pid: int) -> None:
        """Drop ``pid`` from every client set, as when it exits."""
        with self._lock:
            for ref, value in list(self._values.items()):
                value.clients.discard(pid)
                if not value.clients:
                    del self._values[ref]

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def refs(self) -> list[RefId]:
        """Return the RefIds stored now (for tests and debugging)."""
        with self._lock:
            return list(self._values)
