"""This process's membership in the cluster: its pid, its node, its waiters, its calls.

One ``ProcessGroup`` exists per process. On the master it is created on first use; on a
worker, ``pyaddprocs.worker`` creates it before binding.

    caller thread                         I/O loop (transport_zmq.Node)
    ─────────────                         ─────────────────────────────
    call_fetch / send_call ── CALL ──>    ... remote process runs it ...
         │ registers a Waiter             <── RESULT ── on_message: pops the Waiter,
         └ waits on it: reads the reply        hands it the raw frames
           itself first (Node.read_until)
                                          ── CALL/CALL_FETCH/REMOTE_DO from a peer ──>
    on a worker, from the ROUTER:           on_message runs it on the loop's thread
         Node.run_inline ──────────────── (the loop moves to a new thread if it blocks)
    otherwise: CallRunner thread <── submit ── on_message
         └ runs the function, sends RESULT or stores the value in ``refs``

- A Waiter receives the raw frames; the waiting thread unpickles them, so a result
  that cannot be unpickled fails that one call and nothing else.
- When a peer is lost, every Waiter waiting on it gets ProcessExitedError, and the peer
  is dropped from every client set in ``refs``.
- ``members`` holds what this process knows of the other processes: on the master the
  workers with their configs, on a worker the peers' addresses.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import pickle
import secrets
import string
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from transport_zmq import (
    MASTER_PID, NO_REF, Header, MessageKind, Node, PeerLostError, RefId, ResultFlag,
)

from .errors import ProcessExitedError, RemoteException
from .refs import RefStore
from .runner import CallRunner
from .serialization import dumps, dumps_call, loads

log = logging.getLogger(__name__)

# A CALL's value goes back to its caller with the completion notice when it pickles to
# fewer bytes than this; a larger value stays on the owner until fetched.
INLINE_RESULT_LIMIT = 1 << 20

# Reference-count operations, applied on the I/O thread in arrival order.
CONTROL_ADD_CLIENT = "add_client"
CONTROL_DEL_CLIENT = "del_client"

# How long a waiting thread reads its peer's socket itself before it leaves the reading
# to the I/O thread and sleeps (seconds).
READ_OWN_REPLY_SECONDS = 0.02

_ERROR_FLAG = int(ResultFlag.ERROR)   # a plain int: IntFlag arithmetic is slow on the reply path

_COOKIE_ALPHABET = string.ascii_letters + string.digits
COOKIE_LENGTH = 32


def new_cookie() -> str:
    """Return a random cookie of COOKIE_LENGTH letters and digits."""
    return "".join(secrets.choice(_COOKIE_ALPHABET) for _ in range(COOKIE_LENGTH))


@dataclass
class Member:
    """This process's record of another process of the cluster."""

    pid: int
    host: str = ""
    port: int = 0
    state: str = "connected"     # connected, terminating, terminated
    config: Any = None           # WorkerConfig, master only
    manager: Any = None          # ClusterManager, master only
    ospid: int | None = None
    cpu_threads: int | None = None
    exit_reason: str = ""
    removed: threading.Event = field(default_factory=threading.Event)


class Waiter:
    """A pending reply from one peer, completed once by the thread that reads the reply."""

    __slots__ = ("pid", "flags", "frames", "error", "_lock", "_done", "callbacks", "_node")

    def __init__(self, pid: int, node: Node | None = None) -> None:
        self.pid = pid
        self._node = node
        self.flags = 0
        self.frames: list | None = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._lock.acquire()
        self._done = False
        self.callbacks: list[Callable[["Waiter"], None]] = []

    def deliver(self, flags: int, frames: list | None, error: BaseException | None = None) -> None:
        """Complete the waiter with a RESULT's frames, or with an error."""
        if self._done:
            return
        self.flags, self.frames, self.error = flags, frames, error
        self._done = True
        self._lock.release()
        for callback in self.callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("waiter callback failed")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until delivered; return False on timeout.

        The waiting thread first reads the peer's socket itself for up to
        READ_OWN_REPLY_SECONDS (see ``Node.read_until``): a quick reply then needs no
        wake-up of this thread by the I/O thread. Longer waits block on the lock.
        """
        if self._done:
            return True
        node = self._node
        if node is not None:
            lead = READ_OWN_REPLY_SECONDS if timeout is None else min(max(timeout, 0), READ_OWN_REPLY_SECONDS)
            started = time.monotonic()
            node.read_until(self.pid, self.done, lead)
            if self._done:
                return True
            if timeout is not None:
                timeout -= time.monotonic() - started
        acquired = self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0))
        if acquired:
            self._lock.release()  # let other threads waiting on the same reply through
        return acquired

    def done(self) -> bool:
        """Return True once delivered."""
        return self._done

    def outcome(self) -> tuple[Any, bool]:
        """Unpickle the delivered reply and return (value, is_error)."""
        if self.error is not None:
            return self.error, True
        value = loads(self.frames)
        return value, bool(self.flags & _ERROR_FLAG)


_caller = threading.local()


def current_caller() -> int:
    """Return the pid that sent the call running on this thread (own pid outside calls)."""
    return getattr(_caller, "pid", None) or get_group().myid


class ProcessGroup:
    """Cluster state of this process; see the module docstring."""

    def __init__(self, role: str, cookie: str | None = None) -> None:
        self.role = role
        self.cookie = cookie if cookie is not None else new_cookie()
        self.node = Node(self.cookie.encode(), self)
        self.node.pid = MASTER_PID if role == "master" else 0
        self.refs = RefStore()
        self.runner = CallRunner()
        self.members: dict[int, Member] = {}
        self.removed: dict[int, str] = {}       # pid -> why it left
        self.lock = threading.RLock()
        self.topology = "all_to_all"
        self.lazy = True
        self.joined = threading.Event()
        self.on_master_lost: Callable[[str], None] | None = None
        self.on_worker_lost: Callable[[int, str], None] | None = None
        self._waiters: dict[int, Waiter] = {}
        # One Future or RemoteChannel object per RefId in this process, so that each
        # process holds (and releases) a reference exactly once.
        self.client_refs: "weakref.WeakValueDictionary[RefId, Any]" = weakref.WeakValueDictionary()
        self._numbers = itertools.count(1)
        self._pids = itertools.count(2)
        self._releases: collections.deque = collections.deque()   # (owner pid, RefId) to release

    def allocate_pid(self) -> int:
        """Return the next worker pid (master only; pids are never reused)."""
        return next(self._pids)

    @property
    def myid(self) -> int:
        """This process's pid (0 on a worker that has not joined yet)."""
        return self.node.pid

    def next_ref(self) -> RefId:
        """Return a new RefId created by this process."""
        return (self.myid, next(self._numbers))

    # -- sending -------------------------------------------------------------------------

    def send(self, pid: int, header: Header, payload: list = ()) -> None:
        """Send a message, turning a lost peer into ProcessExitedError."""
        if pid in self.removed:
            raise ProcessExitedError(pid, self.removed[pid])
        try:
            self.node.send(pid, header, payload)
        except PeerLostError as err:
            raise ProcessExitedError(pid, self.removed.get(pid) or err.reason) from err

    def start_call(self, kind: int, pid: int, function: Callable, args: tuple, kwargs: dict,
                   response: RefId = NO_REF, waiter_number: int | None = None,
                   callback: Callable[[Waiter], None] | None = None) -> Waiter | None:
        """Send a CALL, CALL_FETCH or REMOTE_DO; return the Waiter for its reply, if any.

        ``callback`` is registered on the Waiter before the message leaves, so it cannot
        miss a fast reply; it runs on the I/O thread and must not block.
        """
        try:
            payload = dumps_call(function, args, kwargs, destination_pid=pid)
        except Exception as err:
            raise TypeError(
                f"could not serialize the call of {getattr(function, '__qualname__', function)!s} "
                f"for process {pid}: {type(err).__name__}: {err}"
            ) from err
        waiter = None
        notify = NO_REF
        if kind != MessageKind.REMOTE_DO:
            number = waiter_number if waiter_number is not None else next(self._numbers)
            waiter = Waiter(pid, self.node)
            if callback is not None:
                waiter.callbacks.append(callback)
            notify = (self.myid, number)
            self._waiters[number] = waiter
        try:
            self.send(pid, Header(kind, 0, response, notify), payload)
        except BaseException:
            if waiter is not None:
                self._waiters.pop(notify[1], None)
            raise
        return waiter

    def call_fetch(self, pid: int, function: Callable, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``function`` on ``pid`` and return its value; raise its RemoteException."""
        waiter = self.start_call(MessageKind.CALL_FETCH, pid, function, args, kwargs)
        if not waiter.wait(timeout):
            self.forget_waiter(waiter)
            raise TimeoutError(f"no reply from process {pid} within {timeout:g} seconds")
        value, is_error = waiter.outcome()
        if is_error:
            raise value
        return value

    def forget_waiter(self, waiter: Waiter) -> None:
        """Stop waiting for ``waiter``'s reply; a late reply is then dropped."""
        for number, candidate in list(self._waiters.items()):
            if candidate is waiter:
                self._waiters.pop(number, None)

    def forget_waiter_number(self, number: int) -> None:
        """Stop waiting for the reply registered under ``number``."""
        self._waiters.pop(number, None)

    def release_later(self, where: int, ref: RefId) -> None:
        """Queue the release of this process's claim on ``ref`` (safe inside finalizers).

        The message leaves from the I/O thread at its next pass. It still follows any
        add_client this process sent for ``ref``, because those were sent before the
        reference could be dropped.
        """
        self._releases.append((where, ref))
        self.node.call_soon(self._flush_releases)

    def _flush_releases(self) -> None:
        while self._releases:
            where, ref = self._releases.popleft()
            try:
                self.send_control(where, CONTROL_DEL_CLIENT, ref, self.myid)
            except Exception as err:  # a finalizer's message must never break the I/O thread
                log.debug("dropped the release of %s for process %d: %s", ref, where, err)

    def send_control(self, pid: int, operation: str, *args: Any) -> None:
        """Send a reference-count operation to ``pid``, or apply it here when ``pid`` is us."""
        if pid == self.myid:
            self._apply_control(pid, operation, args)
            return
        try:
            self.send(pid, Header(MessageKind.CONTROL), [pickle.dumps((operation, args))])
        except (ProcessExitedError, ConnectionError, RuntimeError, ValueError) as err:
            log.debug("dropped %s for process %d: %s", operation, pid, err)

    # -- running incoming calls ----------------------------------------------------------

    def on_message(self, peer: int, header: Header, frames: list) -> None:
        """Dispatch one message (I/O thread)."""
        kind = header.kind
        if kind == MessageKind.RESULT:
            waiter = self._waiters.pop(header.response[1], None)
            if waiter is not None:
                waiter.deliver(header.flags, frames)
        elif kind in (MessageKind.CALL, MessageKind.CALL_FETCH, MessageKind.REMOTE_DO):
            if kind == MessageKind.CALL:
                # Created here, in arrival order, so a fetch that follows the call finds it.
                self.refs.lookup(header.response, create=True, client=header.response[0])
            if self.node.can_run_inline():
                self.node.run_inline(self._run_call, peer, header, frames)
            else:
                self.runner.submit(self._run_call, peer, header, frames)
        elif kind == MessageKind.CONTROL:
            try:
                operation, args = pickle.loads(frames[0].buffer)
            except Exception as err:
                log.warning("dropped a malformed control message from %d: %s", peer, err)
                return
            self._apply_control(peer, operation, args)
        else:
            log.warning("dropped a message of unknown kind %d from %d", kind, peer)

    def _apply_control(self, peer: int, operation: str, args: tuple) -> None:
        if operation == CONTROL_ADD_CLIENT:
            ref, pid = args
            self.refs.add_client(tuple(ref), pid)
        elif operation == CONTROL_DEL_CLIENT:
            ref, pid = args
            self.refs.remove_client(tuple(ref), pid)
        else:
            log.warning("unknown control operation %r from %d", operation, peer)

    def _run_call(self, peer: int, header: Header, frames: list) -> None:
        _caller.pid = peer
        try:
            value, is_error = self._execute(frames)
            kind = header.kind
            if kind == MessageKind.CALL_FETCH:
                self._send_result(peer, header.notify, value, is_error)
            elif kind == MessageKind.CALL:
                self._store_result(peer, header, value, is_error)
            elif is_error:
                print(f"Error in remote_do on process {self.myid} (called by {peer}):\n{value}", file=sys.stderr, flush=True)
        finally:
            _caller.pid = None

    def _execute(self, frames: list) -> tuple[Any, bool]:
        try:
            function, args, kwargs = loads(frames)
        except BaseException as err:
            error = RuntimeError(f"could not deserialize the call on process {self.myid}: {type(err).__name__}: {err}")
            error.__cause__ = err
            return RemoteException.capture(self.myid, error), True
        return self.execute_call(function, args, kwargs)

    def execute_call(self, function: Callable, args: tuple, kwargs: dict) -> tuple[Any, bool]:
        """Run a function as a remote call would; return (value or RemoteException, is_error)."""
        runner = self.runner
        token = runner.enter_call()
        try:
            try:
                value = function(*args, **kwargs)
            finally:
                runner.leave_call(token)
            return value, False
        except BaseException as err:
            # An interrupt can land inside leave_call before it has done its work; a
            # second leave_call finishes it.
            # TODO: a second interrupt sent within microseconds of the first can still
            # land after this point, in the code that sends the reply.
            runner.leave_call(token)
            if isinstance(err, RemoteException) and getattr(function, "_pyaddprocs_passthrough", False):
                return err, True
            return RemoteException.capture(self.myid, err, skip_frames=1), True

    def _encode_result(self, peer: int, value: Any, is_error: bool) -> tuple[list, int]:
        try:
            return dumps(value, destination_pid=peer), ResultFlag.ERROR if is_error else ResultFlag.OK
        except Exception as err:
            error = TypeError(
                f"could not serialize the {'error' if is_error else 'result'} of type "
                f"{type(value).__qualname__} on process {self.myid}: {type(err).__name__}: {err}"
            )
            error.__cause__ = err
            return dumps(RemoteException.capture(self.myid, error)), ResultFlag.ERROR

    def _send_result(self, peer: int, notify: RefId, value: Any, is_error: bool) -> None:
        payload, flags = self._encode_result(peer, value, is_error)
        try:
            self.send(peer, Header(MessageKind.RESULT, flags, notify), payload)
        except (ConnectionError, RuntimeError) as err:
            log.info("could not send a result to process %d: %s", peer, err)

    def _store_result(self, peer: int, header: Header, value: Any, is_error: bool) -> None:
        stored = self.refs.lookup(header.response, create=True)
        if not stored.set(value, is_error):
            log.warning("value of %s was already set; a second result was dropped", header.response)
        if header.notify == NO_REF:
            return
        payload, flags = self._encode_result(peer, value, is_error)
        size = sum(memoryview(frame).nbytes for frame in payload)
        # The stored copy stays until the caller lets go of its Future: the caller may
        # have sent the Future on, and that process's add_client may still be in flight.
        if size >= INLINE_RESULT_LIMIT:
            payload, flags = [], flags | ResultFlag.NOT_STORED
        try:
            self.send(peer, Header(MessageKind.RESULT, flags, header.notify), payload)
        except (ConnectionError, RuntimeError) as err:
            log.info("could not notify process %d: %s", peer, err)

    # -- peer events (I/O thread) --------------------------------------------------------

    def on_peer_connected(self, peer: int) -> None:
        """Note a new link; a worker's first link from pid 1 means the master is here."""
        log.debug("process %d linked to %d", self.myid, peer)

    def on_peer_lost(self, peer: int, reason: str) -> None:
        """Fail everything that waits on ``peer`` and release its references."""
        self.fail_waiters(peer, reason)
        self.refs.remove_process(peer)
        if peer == MASTER_PID and self.role == "worker" and self.on_master_lost is not None:
            self.on_master_lost(reason)
        elif self.role == "master" and self.on_worker_lost is not None:
            self.on_worker_lost(peer, reason)

    def on_send_failed(self, peer: int, header: Header) -> None:
        """Fail the waiter of a message that could not be sent."""
        if header.notify != NO_REF and header.notify[0] == self.myid:
            waiter = self._waiters.pop(header.notify[1], None)
            if waiter is not None:
                waiter.deliver(0, None, ProcessExitedError(peer, self.removed.get(peer, "connection lost")))

    def fail_waiters(self, pid: int, reason: str) -> None:
        """Complete every waiter on ``pid`` with ProcessExitedError."""
        for number, waiter in list(self._waiters.items()):
            if waiter.pid == pid:
                self._waiters.pop(number, None)
                waiter.deliver(0, None, ProcessExitedError(pid, reason))

    def mark_removed(self, pid: int, reason: str) -> None:
        """Record that ``pid`` left the cluster; later sends to it raise ProcessExitedError."""
        self.removed.setdefault(pid, reason)
        with self.lock:
            member = self.members.pop(pid, None)
        if member is not None:
            member.state = "terminated"
            member.exit_reason = member.exit_reason or reason
            member.removed.set()
        self.node.drop_peer(pid, reason)
        self.fail_waiters(pid, reason)


_group: ProcessGroup | None = None
_group_lock = threading.Lock()


def get_group() -> ProcessGroup:
    """Return this process's ProcessGroup, making this process the master on first use."""
    global _group
    if _group is None:
        with _group_lock:
            if _group is None:
                group = ProcessGroup("master")
                group.node.start()
                group.joined.set()
                _group = group
                log.debug("process group started as master (os pid %d)", os.getpid())
    return _group


def set_group(group: ProcessGroup) -> None:
    """Install the worker's ProcessGroup (called once by pyaddprocs.worker)."""
    global _group
    _group = group


def existing_group() -> ProcessGroup | None:
    """Return the ProcessGroup if one was created, without creating it."""
    return _group
