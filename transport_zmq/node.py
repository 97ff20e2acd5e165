"""One process's endpoint in the cluster: its sockets, its I/O loop and its links.

Data flow inside one process:

    any thread ── Node.send ── socket lock ──> DEALER or ROUTER ══ TCP ══> peer
    peers ══ TCP ══> ROUTER (bound, workers only) ──┐
    peers ══ TCP ══> DEALER per outgoing connection ┼─ FDs polled ─> I/O loop ─> handler.on_message
                     monitor sockets ───────────────┘  (peer lost) ─> handler.on_peer_lost
    any thread ── commands (open, close a link) ── deque + wake-up pipe ──> I/O loop
    waiting thread ── read_until ── reads its peer's DEALER itself ─> handler.on_message

- A connection is one DEALER (the connecting side) to one ROUTER (the bound side) and
  carries traffic both ways. The master binds nothing and connects to every worker; a
  worker connects to a peer only when it is the higher pid of a pair the topology links.
- ZeroMQ sockets are not thread-safe, so every use of a data socket happens under that
  socket's lock. Each hand-off between threads is a wake-up that costs, under the GIL on
  2 CPUs, about 30 to 60 µs, against a raw pyzmq round trip of about 180 µs. So the
  path of a call avoids them where it can:
  - a thread that sends does so itself, under the socket's lock;
  - a thread that waits for a reply reads its peer's DEALER socket itself for a short
    while (``read_until``); the I/O loop leaves a socket out of its poll set while a
    thread reads it, so the reply wakes only that thread;
  - a handler may run a call on the I/O loop's thread where its message was read
    (``run_inline``). When that call blocks or runs long, a watcher thread starts a
    new thread that takes over the loop, and the old one ends after the call. Messages
    read but not yet handled wait in ``_inbox``, so the new thread handles them first.
- ZMQ_FD is edge-triggered and a send or a read on another thread can consume its edge,
  so every pass of the loop reads every socket it polls, and a thread that stops reading
  or sending checks ZMQ_EVENTS and wakes the loop through the pipe when messages wait.
- Sockets are created, connected and closed only by the I/O loop; other threads queue
  those steps as commands.
- The first message on every connection is HELLO with the cluster cookie. The ROUTER
  side drops every message from a routing id that has not proved the cookie, without
  looking at its payload, so nothing unauthenticated reaches the layer above.
- Liveness: ZMTP heartbeats (see sockets.py) plus socket monitors. A DEALER reports its
  own disconnect; on the ROUTER the monitor reports the file descriptor, which is
  matched to the peer through the descriptor recorded from its HELLO message.
- ``handler.on_message`` runs on the I/O loop or on a thread in ``read_until``, one at a
  time per socket and in arrival order, and must not block; ``run_inline`` is the one
  way to run longer work there.
"""

from __future__ import annotations

import collections
import hmac
import logging
import os
import select
import struct
import threading
import time
from typing import Callable, Iterable, Protocol

import zmq
from zmq.utils.monitor import parse_monitor_message

from .framing import PROTOCOL_VERSION, Header, MessageKind, Payload, send_frames
from .sockets import format_endpoint, make_dealer, make_router
from .topology import MASTER_PID, LinkState, PeerLostError, TopologyTable

log = logging.getLogger(__name__)

_HELLO_BODY = struct.Struct("!IH")   # sender pid, protocol version
_ACK_BODY = struct.Struct("!I")      # acceptor pid

# A thread in read_until looks at the socket at least this often (seconds).
_READ_SLICE = 0.002

# The I/O thread's poll timeout (milliseconds), and the shorter one while a waiting
# thread reads a socket itself.
_IDLE_POLL_MS = 500
_READER_POLL_MS = 2

# Rejected connection attempts are logged at most this often.
_REJECT_LOG_INTERVAL = 10.0

# Seconds a call may run on the I/O thread (run_inline) before a new thread takes over
# the I/O loop. The watcher checks at this interval too.
INLINE_LIMIT = 0.005
# The watcher parks after this many checks without an inline call.
_WATCH_PARK_AFTER = 200

# Plain ints: the IntFlag versions cost an enum operation per use on the hot path.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class _IOLoopTakenOver(BaseException):
    """Raised on a thread whose inline call ended after another thread took over its I/O loop.

    A BaseException, so that no handler's ``except Exception`` stops it on its way
    up to ``Node._run``, which then ends that thread.
    """


class MessageHandler(Protocol):
    """Callbacks from the I/O thread to the layer above; none of them may block."""

    def on_message(self, peer: int, header: Header, frames: list[zmq.Frame]) -> None: ...

    def on_peer_connected(self, peer: int) -> None: ...

    def on_peer_lost(self, peer: int, reason: str) -> None: ...

    def on_send_failed(self, peer: int, header: Header) -> None: ...


class _DealerLink:
    """An outgoing connection: the DEALER socket, its monitor and where it points."""

    def __init__(self, peer: int, socket: zmq.Socket, monitor: zmq.Socket, endpoint: str) -> None:
        self.peer = peer
        self.socket = socket
        self.monitor = monitor
        self.endpoint = endpoint
        self.acknowledged = False
        self.lock = threading.Lock()   # held for every use of ``socket``
        # Held by the one thread that reads and dispatches this socket's messages, from
        # the read until the last of them is handled, so messages are handled in order.
        self.reader = threading.Lock()
        self.reader_owner: int | None = None   # thread ident, while a thread outside the I/O loop reads
        self.watcher: select.poll | None = None  # used by the reader thread only
        self.closed = False
        self.fd: int | None = None     # the socket's ZMQ_FD, polled by the I/O thread


class Node:
    """The process's transport endpoint; one per process.

    ``cookie`` is the cluster secret every connection must prove. ``handler`` receives
    messages and peer events on the I/O thread. ``lazy_connector(peer)`` is called (on
    the sending thread) when a send finds the link LAZY; it must connect the link or
    raise.
    """

    def __init__(self, cookie: bytes, handler: MessageHandler, *, connect_timeout: float = 60.0) -> None:
        self.cookie = cookie
        self.handler = handler
        self.connect_timeout = connect_timeout
        self.topology = TopologyTable()
        self.lazy_connector: Callable[[int], None] | None = None
        self.address: tuple[str, int] | None = None

        self._context = zmq.Context()
        self._router: zmq.Socket | None = None
        self._router_lock = threading.Lock()   # held for every use of the ROUTER socket
        self._router_monitor: zmq.Socket | None = None
        self._dealers: dict[int, _DealerLink] = {}
        self._routing_ids: dict[int, bytes] = {}      # peer pid -> ROUTER routing id
        self._peer_of_routing_id: dict[bytes, int] = {}
        self._routing_id_of_fd: dict[int, bytes] = {}
        self._link_of_socket: dict[zmq.Socket, _DealerLink] = {}  # a DEALER's monitor -> its link
        self._router_fd: int | None = None

        self._queue: collections.deque = collections.deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._wake_pending = False
        self._running = False
        self._thread: threading.Thread | None = None
        self._rejected = 0
        self._last_reject_log = 0.0

        # Inline calls (run_inline): the I/O loop may move to a new thread while a call
        # runs, so the loop's identity (``_thread``) and ``_inline_since`` change only
        # under ``_loop_lock``. ``_inbox`` contains ROUTER messages read but not yet handled,
        # so a new loop thread handles them before anything read later.
        self._loop_lock = threading.Lock()
        self._inline_since: float | None = None
        self._handling_router = False
        self._inbox: collections.deque = collections.deque()
        self._watch_wake = threading.Event()
        self._watch_parked = True
        self._watcher: threading.Thread | None = None

    # -- identity --------------------------------------------------------------------

    @property
    def pid(self) -> int:
        """This process's pid in the cluster (0 on a worker before it has joined)."""
        return self.topology.me

    @pid.setter
    def pid(self, value: int) -> None:
        self.topology.me = value

    # -- start and stop --------------------------------------------------------------

    def bind(self, host: str, port: int = 0, *, port_range: int = 1) -> int:
        """Bind the ROUTER socket at ``host:port`` and return the port.

        ``port=0`` takes a free port from the OS. Otherwise ``port`` and the next
        ``port_range - 1`` ports are tried in order, skipping those in use.
        """
        if self._running:
            raise RuntimeError("bind() must be called before start()")
        router = make_router(self._context)
        if port == 0:
            bound = router.bind_to_random_port(format_endpoint(host, 0)[:-2])
        else:
            bound = self._bind_in_range(router, host, port, port_range)
        self._router = router
        self._router_monitor = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._router_fd = router.getsockopt(zmq.FD)
        self.address = (host, bound)
        log.debug("bound ROUTER at %s", format_endpoint(host, bound))
        return bound

    @staticmethod
    def _bind_in_range(router: zmq.Socket, host: str, port: int, port_range: int) -> int:
        last_error: zmq.ZMQError | None = None
        for candidate in range(port, min(port + max(port_range, 1), 65536)):
            try:
                router.bind(format_endpoint(host, candidate))
                return candidate
            except zmq.ZMQError as err:
                log.debug("port %d on %s is not available: %s", candidate, host, err)
                last_error = err
        router.close(linger=0)
        raise OSError(f"could not bind to {host} on ports {port}..{port + port_range - 1}: {last_error}")

    def start(self) -> None:
        """Start the I/O thread."""
        self._running = True
        self._thread = threading.Thread(target=self._run, name="pyaddprocs-io", daemon=True)
        self._thread.start()
        if self._router is not None:   # only bound nodes (workers) run calls inline
            self._watcher = threading.Thread(target=self._watch_inline_calls, name="pyaddprocs-io-watch", daemon=True)
            self._watcher.start()

    def close(self) -> None:
        """Stop the I/O thread and close every socket; queued messages get LINGER_MS to leave."""
        if not self._running:
            return
        self._running = False
        self._wake()
        self._watch_wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        for link in list(self._dealers.values()):
            self._close_dealer(link)
        if self._router_monitor is not None:
            self._router_monitor.close()
        if self._router is not None:
            with self._router_lock:
                self._router.close()
        self._context.term()
        os.close(self._wake_read)
        os.close(self._wake_write)
        log.debug("node %d closed", self.pid)

    def in_io_thread(self) -> bool:
        """Return True when called on the I/O thread, outside an inline call."""
        return threading.current_thread() is self._thread and self._inline_since is None

    # -- calls run on the I/O thread -------------------------------------------------

    def can_run_inline(self) -> bool:
        """Return True when a handler may pass the message it handles to ``run_inline``.

        That is on the I/O thread, outside another inline call, while handling a
        message from the ROUTER socket (messages from DEALER links are handled under
        their reader lock, which a long call would hold).
        """
        return self._handling_router and self.in_io_thread()

    def run_inline(self, function: Callable[..., None], *args: object) -> None:
        """Run ``function(*args)`` on the I/O thread now, from a message handler.

        Running a short call where its message was read saves two thread wake-ups (to
        a pool thread and back), about a sixth of a round trip. A call that blocks
        or runs longer than INLINE_LIMIT must not stall this process's messages. The
        watcher thread (or ``step_aside``) then starts a new thread that takes over the
        I/O loop, and this thread ends once the call returns.
        """
        with self._loop_lock:
            self._inline_since = time.monotonic()
        if self._watch_parked:
            self._watch_parked = False
            self._watch_wake.set()
        try:
            function(*args)
        finally:
            with self._loop_lock:
                taken_over = self._thread is not threading.current_thread()
                if not taken_over:
                    self._inline_since = None
        if taken_over:
            raise _IOLoopTakenOver

    def step_aside(self) -> None:
        """Hand the I/O loop to a new thread if this thread runs an inline call.

        Blocking waits call this first: a call that waits for a reply must not hold
        the loop that would read that reply.
        """
        if self._inline_since is not None and threading.current_thread() is self._thread:
            self._take_over(self._inline_since)

    def _take_over(self, since: float) -> None:
        with self._loop_lock:
            if self._inline_since != since or not self._running:
                return   # that call has ended, or the node is closing
            previous = self._thread
            self._inline_since = None
            self._handling_router = False
            self._thread = threading.Thread(target=self._run, name="pyaddprocs-io", daemon=True)
            self._thread.start()
        log.debug("a call on %s runs long; a new thread took over the I/O loop", previous.name)

    def _watch_inline_calls(self) -> None:
        while self._running:
            self._watch_wake.wait()
            self._watch_wake.clear()
            quiet_checks = 0
            while self._running and quiet_checks < _WATCH_PARK_AFTER:
                time.sleep(INLINE_LIMIT)
                since = self._inline_since
                if since is None:
                    quiet_checks += 1
                    continue
                quiet_checks = 0
                if time.monotonic() - since >= INLINE_LIMIT:
                    self._take_over(since)
            # Park, then look once more: a call that started before the flag was set
            # did not wake this thread.
            self._watch_parked = True
            if self._inline_since is not None:
                self._watch_parked = False
                self._watch_wake.set()

    # -- links -----------------------------------------------------------------------

    def connect(self, peer: int, host: str, port: int, timeout: float | None = None) -> None:
        """Open the link to ``peer`` at ``host:port`` and wait until it has accepted the cookie.

        Raises ConnectionError when the peer does not reply within ``timeout`` seconds
        (default: ``connect_timeout``), and PeerLostError when it disconnects first.
        """
        if self.in_io_thread():
            raise RuntimeError("connect() would block the I/O thread")
        timeout = self.connect_timeout if timeout is None else timeout
        endpoint = format_endpoint(host, port)
        self.topology.set_state(peer, LinkState.CONNECTING)
        self._call_in_io_thread(lambda: self._open_dealer(peer, endpoint, timeout))
        try:
            self.wait_connected(peer, timeout)
        except ConnectionError:
            self._call_in_io_thread(lambda: self._drop_dealer(peer))
            raise

    def wait_connected(self, peer: int, timeout: float) -> None:
        """Block until the link to ``peer`` is CONNECTED; raise when it fails or times out."""
        self.step_aside()
        deadline = time.monotonic() + timeout
        table = self.topology
        with table.changed:
            while True:
                state = table._states.get(peer)
                if state is LinkState.CONNECTED:
                    return
                if state is LinkState.CLOSED:
                    raise table._errors.get(peer) or PeerLostError(peer)
                if state is LinkState.LAZY and peer in table._errors:
                    raise ConnectionError(f"connecting to peer {peer} failed: {table._errors[peer]}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConnectionError(
                        f"peer {peer} did not connect to {self.pid} within {timeout:g} seconds"
                    )
                table.changed.wait(min(remaining, 1.0))

    def connected_peers(self) -> list[int]:
        """Return the pids this node currently has a link to."""
        return self.topology.connected_peers()

    def socket_links(self) -> dict[int, int]:
        """Return, per peer pid, how many transport connections this node has with it.

        Each linked peer should have exactly one: a DEALER (we connected) or a ROUTER
        routing id (it connected). Tests use this to find duplicate connections.
        """
        counts: dict[int, int] = {}
        for peer in list(self._dealers) + list(self._routing_ids):
            counts[peer] = counts.get(peer, 0) + 1
        return counts

    def drop_peer(self, peer: int, reason: str) -> None:
        """Close the link to ``peer`` as if it had disconnected (used after a removal)."""
        self._call_in_io_thread(lambda: self._lose_peer(peer, reason))

    # -- sending ---------------------------------------------------------------------

    def send(self, peer: int, header: Header, payload: list[Payload] = ()) -> None:
        """Send one message to ``peer``; safe from any thread.

        Raises PeerNotConnectedError when the topology has no link to ``peer`` and
        PeerLostError when the peer is gone. A LAZY link is connected first through
        ``lazy_connector``.
        """
        state = self.topology.state(peer)
        if state is not LinkState.CONNECTED:
            self._prepare_link(peer, state)
        self._send_now(peer, header, [header.pack(), *payload])

    def _prepare_link(self, peer: int, state: LinkState) -> None:
        if state is LinkState.FORBIDDEN:
            raise self.topology.not_connected(peer)
        if state is LinkState.CLOSED:
            raise self.topology.error(peer) or PeerLostError(peer)
        if self.lazy_connector is None and state is LinkState.LAZY:
            raise self.topology.not_connected(peer)
        self.ensure_link(peer, lambda: self.lazy_connector(peer))

    def ensure_link(self, peer: int, opener: Callable[[], None], timeout: float | None = None) -> None:
        """Make sure a link to ``peer`` exists, running ``opener`` unless another thread is opening it.

        Of several threads that find the link LAZY, exactly one runs ``opener``; the
        others wait for its outcome. When ``opener`` fails the link goes back to LAZY,
        so a later send tries again.
        """
        state = self.topology.state(peer)
        if state is LinkState.CONNECTED:
            return
        if state is LinkState.FORBIDDEN:
            raise self.topology.not_connected(peer)
        if state is LinkState.CLOSED:
            raise self.topology.error(peer) or PeerLostError(peer)
        if self.in_io_thread():
            raise RuntimeError(f"link to peer {peer} is {state.value}; the I/O thread cannot wait for it")
        if self.topology.claim(peer):
            try:
                opener()
            except BaseException as err:
                if self.topology.state(peer) is not LinkState.CLOSED:
                    self.topology.set_state(peer, LinkState.LAZY, err)
                raise
        self.wait_connected(peer, self.connect_timeout if timeout is None else timeout)

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            try:
                os.write(self._wake_write, b"x")
            except OSError:  # closed during shutdown
                pass

    def call_soon(self, function: Callable[[], None]) -> None:
        """Run ``function`` on the I/O thread at its next pass, never inline.

        Safe from finalizers and signal handlers: it only appends to a deque and writes
        to the wake-up pipe, and takes no lock.
        """
        self._queue.append(function)
        self._wake()

    def _call_in_io_thread(self, function: Callable[[], None]) -> None:
        if self.in_io_thread():
            function()
            return
        self._queue.append(function)
        self._wake()

    # -- the I/O thread --------------------------------------------------------------

    def _run(self) -> None:
        me = threading.current_thread()
        # The first pass does not wait: a thread that takes over the loop finds messages
        # already read (the inbox) or waiting behind an edge the previous thread consumed.
        ready: dict = {}
        while self._running and self._thread is me:
            try:
                self._handle_pass(ready)
            except _IOLoopTakenOver:
                break
            except KeyboardInterrupt:   # meant for an inline call that had just ended
                log.warning("an interrupt reached the I/O loop of node %d after its call ended", self.pid)
            except Exception:  # a bug in a handler must not kill the I/O thread
                log.exception("error while handling input on node %d", self.pid)
            if not self._running or self._thread is not me:
                break
            items, timeout_ms = self._poll_items()
            try:
                ready = dict(zmq.zmq_poll(items, timeout_ms))
            except zmq.ZMQError as err:
                if err.errno == zmq.ETERM:
                    break
                log.exception("poll failed on node %d", self.pid)
                ready = {}
        log.debug("I/O loop of node %d stopped on %s", self.pid, me.name)

    def _handle_pass(self, ready: dict) -> None:
        if self._wake_read in ready or self._queue:
            self._drain_queue()
        # Every data socket is read on every pass: its FD is edge-triggered, and a
        # sender on another thread may have consumed the edge.
        if self._router is not None:
            self._read_router()
        for link in list(self._dealers.values()):
            self._read_dealer(link)
        for sock in ready:
            if sock is self._router_monitor:
                self._read_router_monitor()
            elif not isinstance(sock, int):
                link = self._link_of_socket.get(sock)
                if link is not None and sock is link.monitor:
                    self._read_dealer_monitor(link)

    def _poll_items(self) -> tuple[list, int]:
        # A socket that a waiting thread reads (read_until) is left out, so its reply
        # wakes only that thread. The short timeout bounds the wait of a message that
        # arrives just after that thread stops reading.
        items: list = [(self._wake_read, zmq.POLLIN)]
        if self._router is not None:
            items.append((self._router_fd, zmq.POLLIN))
            items.append((self._router_monitor, zmq.POLLIN))
        timeout_ms = _IDLE_POLL_MS
        for link in self._dealers.values():
            items.append((link.monitor, zmq.POLLIN))
            if link.reader.locked():
                timeout_ms = _READER_POLL_MS
            elif link.fd is not None:
                items.append((link.fd, zmq.POLLIN))
        return items, timeout_ms

    def _drain_queue(self) -> None:
        # Empty the pipe first and only then clear the flag: a sender that still saw the
        # flag set has appended its message before the flag is cleared here, so the
        # loop below sends it. The other order loses a wake-up.
        try:
            while os.read(self._wake_read, 4096):
                pass
        except BlockingIOError:
            pass
        self._wake_pending = False
        queue = self._queue
        while queue:
            command = queue.popleft()
            try:
                command()
            except Exception:
                log.exception("command failed on the I/O thread of node %d", self.pid)

    def _send_now(self, peer: int, header: Header, frames: list[Payload]) -> None:
        # Any thread sends directly, under the socket's lock, which saves a hand-off to
        # the I/O thread per message. A send can consume the edge of the socket's FD
        # that announces incoming messages, so the sender checks for them and wakes the
        # I/O thread when some are waiting.
        link = self._dealers.get(peer)
        try:
            if link is not None:
                with link.lock:
                    if not link.closed:
                        send_frames(link.socket, frames)
                        # A thread that reads this link itself (claim_readers) finds the
                        # messages within its next slice; the I/O thread could not read them.
                        if link.reader_owner is None and link.socket.getsockopt(_EVENTS) & _POLLIN:
                            self._wake()
                        return
            routing_id = self._routing_ids.get(peer)
            if routing_id is not None and self._router is not None:
                with self._router_lock:
                    send_frames(self._router, frames, prefix=routing_id)
                    if self._router.getsockopt(_EVENTS) & _POLLIN:
                        self._wake()
                return
        except zmq.ZMQError as err:
            log.warning("send to peer %d failed: %s", peer, err)
        else:
            log.debug("no route to peer %d for a %s message", peer, header.kind)
        self.handler.on_send_failed(peer, header)

    # Messages are read until the socket reports no more, under the socket's lock, and
    # handled after the lock is released, because handlers send too.
    def _read_router(self) -> None:
        router = self._router
        inbox = self._inbox
        with self._router_lock:
            while router.getsockopt(_EVENTS) & _POLLIN:
                inbox.append(router.recv_multipart(zmq.NOBLOCK, copy=False))
        self._handling_router = True
        try:
            while inbox:
                parts = inbox.popleft()
                routing_id = parts[0].bytes
                peer = self._peer_of_routing_id.get(routing_id)
                if peer is None:
                    self._accept_hello(routing_id, parts)
                    continue
                self._dispatch(peer, parts[1:])
        finally:
            if self._thread is threading.current_thread():   # else the flag is the new loop's
                self._handling_router = False

    def _read_dealer(self, link: _DealerLink) -> bool:
        # A thread waiting for a reply may be reading this socket itself (read_until);
        # then it also handles whatever else arrives there.
        if not link.reader.acquire(blocking=False):
            return False
        try:
            return self._read_dealer_as_reader(link)
        finally:
            link.reader.release()

    def _read_dealer_as_reader(self, link: _DealerLink) -> bool:
        received = []
        with link.lock:
            if link.closed:
                return False
            while link.socket.getsockopt(_EVENTS) & _POLLIN:
                received.append(link.socket.recv_multipart(zmq.NOBLOCK, copy=False))
        for parts in received:
            if not link.acknowledged:
                self._accept_ack(link, parts)
                continue
            self._dispatch(link.peer, parts)
        return bool(received)

    def read_until(self, peers: int | Iterable[int], done: Callable[[], bool], timeout: float) -> None:
        """Read and handle the messages of ``peers`` on this thread until ``done()`` or ``timeout``.

        A thread that waits for replies calls this first: reading a reply itself saves
        the hand-off from the I/O thread, a thread wake-up per message. Only outgoing
        links that no other thread is reading take part; without any, or on the I/O
        thread, this returns at once. Everything read is handled exactly as the I/O
        thread would handle it, in arrival order per link.
        """
        claimed, already_reading = self.claim_readers(peers)
        if not claimed and not already_reading:
            return
        try:
            self.read_claimed(claimed + already_reading, done, timeout)
        finally:
            self.release_readers(claimed)

    def claim_readers(self, peers: int | Iterable[int]) -> tuple[list[_DealerLink], list[_DealerLink]]:
        """Make this thread the only reader of the outgoing links to ``peers``.

        Returns the links claimed now and the links this thread was already reading
        (a nested wait); only the first go to ``release_readers``. Links that another
        thread reads, that are not acknowledged yet, or that do not exist are left out.
        Until the release no other thread reads the claimed links, so this thread must
        call ``read_claimed`` whenever it waits. A thread running an inline call steps aside
        first, since it is about to wait.
        """
        self.step_aside()
        if self.in_io_thread():
            return [], []
        me = threading.get_ident()
        claimed, already_reading = [], []
        for peer in (peers,) if isinstance(peers, int) else peers:
            link = self._dealers.get(peer)
            if link is None or link.fd is None or not link.acknowledged:
                continue
            if link.reader_owner == me:
                already_reading.append(link)
            elif link.reader.acquire(blocking=False):
                link.reader_owner = me
                claimed.append(link)
        return claimed, already_reading

    def read_claimed(self, links: list[_DealerLink], done: Callable[[], bool], timeout: float) -> None:
        """Read and handle the messages of claimed ``links`` until ``done()``, ``timeout``, or all are closed."""
        open_links = [link for link in links if not link.closed]
        watcher = self._watcher_for(open_links)
        deadline = time.monotonic() + timeout
        while open_links and not done():
            got = False
            for link in open_links:
                got = self._read_dealer_as_reader(link) or got
            remaining = deadline - time.monotonic()
            if remaining <= 0:   # also while messages keep coming: the caller has a timeout
                return
            if got:
                continue
            if any(link.closed for link in open_links):
                # A closed socket's descriptor would make every poll return at once.
                open_links = [link for link in open_links if not link.closed]
                watcher = self._watcher_for(open_links)
                continue
            # A sender's EVENTS check can consume the descriptor's edge while this
            # thread is about to wait, so the wait is sliced.
            watcher.poll(min(remaining, _READ_SLICE) * 1000)

    @staticmethod
    def _watcher_for(links: list[_DealerLink]) -> select.poll:
        if len(links) == 1:
            # The common case, one reply awaited: the link keeps its poll object.
            link = links[0]
            if link.watcher is None:
                link.watcher = select.poll()
                link.watcher.register(link.fd, select.POLLIN)
            return link.watcher
        watcher = select.poll()
        for link in links:
            watcher.register(link.fd, select.POLLIN)
        return watcher

    def release_readers(self, links: list[_DealerLink]) -> None:
        """Give the reading of ``links`` back to the I/O thread."""
        for link in links:
            link.reader_owner = None
            link.reader.release()
            # Messages that came in after the last read have lost their edge; the I/O
            # thread must look.
            self._wake_if_waiting(link)

    def _wake_if_waiting(self, link: _DealerLink) -> None:
        with link.lock:
            if not link.closed and link.socket.getsockopt(_EVENTS) & _POLLIN:
                self._wake()

    def _dispatch(self, peer: int, parts: list[zmq.Frame]) -> None:
        try:
            header = Header.unpack(parts[0].buffer)
        except ValueError as err:
            log.warning("dropped a malformed message from peer %d: %s", peer, err)
            return
        self.handler.on_message(peer, header, parts[1:])

    # -- the cookie handshake --------------------------------------------------------

    # TODO: a peer that has not proved the cookie can still make libzmq buffer one
    # message of any size before it is dropped here; ZMQ_MAXMSGSIZE would also cap
    # authenticated transfers, and CurveZMQ (which authenticates during the ZMTP
    # handshake) is the planned fix.
    def _accept_hello(self, routing_id: bytes, parts: list[zmq.Frame]) -> None:
        peer = self._check_hello(parts)
        if peer is None:
            self._log_rejection(parts[0])
            return
        old = self._routing_ids.get(peer)
        if old is not None:
            self._peer_of_routing_id.pop(old, None)
        self._routing_ids[peer] = routing_id
        self._peer_of_routing_id[routing_id] = peer
        try:
            self._routing_id_of_fd[parts[1].get(zmq.SRCFD)] = routing_id
        except zmq.ZMQError:  # SRCFD is deprecated; without it only heartbeats notice loss
            log.debug("no source descriptor for peer %d", peer)
        ack = [Header(MessageKind.HELLO_ACK).pack(), _ACK_BODY.pack(self.pid)]
        with self._router_lock:
            send_frames(self._router, ack, prefix=routing_id)
        log.debug("peer %d connected to node %d", peer, self.pid)
        self.topology.set_state(peer, LinkState.CONNECTED)
        self.handler.on_peer_connected(peer)

    def _check_hello(self, parts: list[zmq.Frame]) -> int | None:
        if len(parts) != 4:
            return None
        try:
            header = Header.unpack(parts[1].buffer)
            sender, version = _HELLO_BODY.unpack(parts[3].buffer)
        except (ValueError, struct.error):
            return None
        if header.kind != MessageKind.HELLO or version != PROTOCOL_VERSION:
            return None
        if not hmac.compare_digest(parts[2].bytes, self.cookie):
            return None
        return sender

    def _log_rejection(self, routing_frame: zmq.Frame) -> None:
        self._rejected += 1
        now = time.monotonic()
        if now - self._last_reject_log < _REJECT_LOG_INTERVAL:
            return
        self._last_reject_log = now
        try:
            address = routing_frame.get("Peer-Address")
        except zmq.ZMQError:
            address = "unknown address"
        log.warning(
            "node %d rejected a message from %s: invalid connection credentials (%d rejected so far)",
            self.pid, address, self._rejected,
        )

    def _accept_ack(self, link: _DealerLink, parts: list[zmq.Frame]) -> None:
        try:
            header = Header.unpack(parts[0].buffer)
            (acceptor,) = _ACK_BODY.unpack(parts[1].buffer)
        except (ValueError, struct.error, IndexError):
            header, acceptor = None, -1
        if header is None or header.kind != MessageKind.HELLO_ACK:
            log.warning("peer %d at %s replied to HELLO with an unexpected message; dropped", link.peer, link.endpoint)
            return
        link.acknowledged = True
        log.debug("node %d connected to peer %d at %s (it calls itself %d)", self.pid, link.peer, link.endpoint, acceptor)
        self.topology.set_state(link.peer, LinkState.CONNECTED)
        self.handler.on_peer_connected(link.peer)

    # -- outgoing links --------------------------------------------------------------

    def _open_dealer(self, peer: int, endpoint: str, timeout: float) -> None:
        old = self._dealers.get(peer)
        if old is not None:
            self._close_dealer(old)
        socket = make_dealer(self._context, int(timeout * 1000))
        monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        socket.connect(endpoint)
        link = _DealerLink(peer, socket, monitor, endpoint)
        self._dealers[peer] = link
        self._link_of_socket[monitor] = link
        link.fd = socket.getsockopt(zmq.FD)
        hello = [Header(MessageKind.HELLO).pack(), self.cookie, _HELLO_BODY.pack(self.pid, PROTOCOL_VERSION)]
        with link.lock:
            send_frames(socket, hello)
        log.debug("node %d connecting to peer %d at %s", self.pid, peer, endpoint)

    def _drop_dealer(self, peer: int) -> None:
        link = self._dealers.pop(peer, None)
        if link is not None:
            self._close_dealer(link)

    def _close_dealer(self, link: _DealerLink) -> None:
        self._link_of_socket.pop(link.monitor, None)
        link.monitor.close(linger=0)
        with link.lock:
            link.closed = True
            # The link is dropped because its peer is gone or being replaced, so queued
            # messages are discarded at once instead of lingering in libzmq.
            link.socket.close(linger=0)
        if self._dealers.get(link.peer) is link:
            del self._dealers[link.peer]

    def _read_dealer_monitor(self, link: _DealerLink) -> None:
        while True:
            try:
                event = parse_monitor_message(link.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            # Before the HELLO_ACK a disconnect is a failed attempt that ZeroMQ retries
            # until the connect timeout; after it, the peer is gone.
            if event["event"] == zmq.EVENT_DISCONNECTED and link.acknowledged:
                self._lose_peer(link.peer, f"connection to {link.endpoint} closed")
                return

    def _read_router_monitor(self) -> None:
        while True:
            try:
                event = parse_monitor_message(self._router_monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if event["event"] != zmq.EVENT_DISCONNECTED:
                continue
            routing_id = self._routing_id_of_fd.pop(event["value"], None)
            peer = self._peer_of_routing_id.get(routing_id) if routing_id else None
            if peer is not None:
                self._lose_peer(peer, "peer closed its connection")

    def _lose_peer(self, peer: int, reason: str) -> None:
        link = self._dealers.get(peer)
        if link is not None:
            self._close_dealer(link)
        routing_id = self._routing_ids.pop(peer, None)
        if routing_id is not None:
            self._peer_of_routing_id.pop(routing_id, None)
        had_link = link is not None or routing_id is not None
        if self.topology.state(peer) is LinkState.CLOSED and not had_link:
            return
        self.topology.set_state(peer, LinkState.CLOSED, PeerLostError(peer, reason))
        log.info("node %d lost peer %d: %s", self.pid, peer, reason)
        self.handler.on_peer_lost(peer, reason)

    def forget_peer(self, peer: int) -> None:
        """Close any link to ``peer`` without reporting it lost (used before re-linking)."""
        def forget() -> None:
            self._drop_dealer(peer)
            routing_id = self._routing_ids.pop(peer, None)
            if routing_id is not None:
                self._peer_of_routing_id.pop(routing_id, None)
            self.topology.forget(peer)
        self._call_in_io_thread(forget)


__all__ = ["MASTER_PID", "MessageHandler", "Node"]
