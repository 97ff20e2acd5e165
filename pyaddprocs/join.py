"""The join protocol: how a started worker becomes pid N and how workers find each other.

Master, for each launched worker (``create_worker``):
  1. take the next pid (pids start at 2 and are never reused);
  2. ``manager.connect`` returns the worker's address (usually from its announcement);
  3. connect the node to it, which proves the cookie (HELLO);
  4. call ``join_cluster`` on it with a ``JoinRequest``: its pid, the topology and the
     peers it may link to; the worker replies with a ``JoinReply``.
After all workers of an ``addprocs`` call joined, the master sends every worker the
full member list (``set_members``), which is how lower pids learn of higher ones, and
opens the links the topology wants at once (``link_new_workers``: every pair with
``lazy=False``, the listed pairs with ``custom``).

Links between workers follow one rule: the higher pid connects to the lower one. With
``lazy=True`` that happens on first use (``connect_lazily``): a higher pid connects
directly; a lower pid asks the master (``relay_connect``) to have the higher pid
connect to it, and waits until it has.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from transport_zmq import MASTER_PID, LinkState, format_endpoint

from .errors import LaunchError, ProcessExitedError, RemoteException
from .process_group import Member, ProcessGroup, current_caller, get_group
from .settings import connect_timeout, worker_timeout

log = logging.getLogger(__name__)

# Seconds the master tries a worker's announced address before its fallback address.
FALLBACK_AFTER = 5.0


@dataclass(frozen=True)
class PeerAddress:
    """The address a process listens on, as announced to the master."""

    pid: int
    host: str
    port: int


@dataclass(frozen=True)
class JoinRequest:
    """Master to new worker: who it is and whom it may talk to."""

    pid: int
    topology: str
    lazy: bool
    peers: list[PeerAddress]
    enable_threaded_blas: bool = False


@dataclass(frozen=True)
class JoinReply:
    """New worker to master: facts about its process."""

    ospid: int
    cpu_threads: int
    python_version: tuple[int, int, int]
    hostname: str


def usable_cpu_count() -> int:
    """Return the CPUs this process may run on (honours taskset and cgroup cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# -- worker side -----------------------------------------------------------------------


def join_cluster(request: JoinRequest) -> JoinReply:
    """Run on a new worker: take the pid and topology the master assigned."""
    group = get_group()
    if current_caller() != MASTER_PID:
        raise PermissionError("only the master may join a worker to the cluster")
    if group.joined.is_set():
        raise RuntimeError(f"this worker already joined the cluster as pid {group.myid}")
    group.node.pid = request.pid
    group.topology = request.topology
    group.lazy = request.lazy
    group.node.topology.configure(request.topology, request.lazy)
    with group.lock:
        for peer in request.peers:
            group.members[peer.pid] = Member(peer.pid, peer.host, peer.port)
    group.joined.set()
    log.info("joined the cluster as pid %d (topology %s, lazy=%s)", request.pid, request.topology, request.lazy)
    return JoinReply(os.getpid(), usable_cpu_count(), tuple(sys.version_info[:3]), socket.gethostname())


def set_members(peers: list[PeerAddress]) -> None:
    """Run on a worker: learn the current members (the master's list after an addprocs)."""
    group = get_group()
    with group.lock:
        for peer in peers:
            if peer.pid != group.myid and peer.pid not in group.removed and peer.pid not in group.members:
                group.members[peer.pid] = Member(peer.pid, peer.host, peer.port)


def member_removed(pid: int, reason: str) -> None:
    """Run on a worker: ``pid`` left the cluster."""
    get_group().mark_removed(pid, reason)


def connect_to(pid: int, host: str | None = None, port: int | None = None) -> None:
    """Run on a worker: make sure it has a link to worker ``pid``, opening one if needed.

    ``host`` and ``port`` default to the address this worker learned from the master.
    Raises ConnectionError naming both pids and the address when ``pid`` cannot be
    reached within ``connect_timeout()`` seconds.
    """
    group = get_group()
    if pid in group.removed:
        raise ProcessExitedError(pid, group.removed[pid])
    if host is None or port is None:
        member = group.members.get(pid)
        if member is None:
            raise ValueError(f"no process with id {pid} is known to process {group.myid}")
        host, port = member.host, member.port
    table = group.node.topology
    if group.topology == "custom" and table.state(pid) is LinkState.FORBIDDEN:
        table.set_state(pid, LinkState.LAZY)  # the master asked for this custom link
    group.node.ensure_link(pid, lambda: _open_link(group, pid, host, port))


def _open_link(group: ProcessGroup, pid: int, host: str, port: int) -> None:
    timeout = connect_timeout()
    try:
        group.node.connect(pid, host, port, timeout=timeout)
    except ConnectionError as err:
        raise ConnectionError(
            f"process {group.myid} could not connect to peer {pid} at {format_endpoint(host, port)} "
            f"within {timeout:g} seconds; check that the two hosts can reach each other "
            "(or use topology='master_worker')"
        ) from err
    log.info("process %d linked to peer %d at %s:%d", group.myid, pid, host, port)


def connect_lazily(pid: int) -> None:
    """Open the link from this worker to ``pid`` on first use (the worker's lazy connector).

    The higher pid always opens the link, so a pair never gets two: a lower pid asks the
    master to have the higher one connect to it.
    """
    group = get_group()
    if pid in group.removed:
        raise ProcessExitedError(pid, group.removed[pid])
    member = group.members.get(pid)
    if member is None:
        raise ValueError(f"no process with id {pid} is known to process {group.myid}")
    if group.myid > pid:
        _open_link(group, pid, member.host, member.port)
    else:
        group.call_fetch(MASTER_PID, relay_connect, pid, group.myid, timeout=connect_timeout() + worker_timeout())


# -- master side -----------------------------------------------------------------------


def relay_connect(higher: int, lower: int) -> None:
    """Run on the master: have worker ``higher`` connect to worker ``lower``."""
    group = get_group()
    for pid in (higher, lower):
        if pid in group.removed:
            raise ProcessExitedError(pid, group.removed[pid])
    member = group.members.get(lower)
    if member is None:
        raise ValueError(f"no process with id {lower} exists")
    group.call_fetch(higher, connect_to, lower, member.host, member.port, timeout=connect_timeout() + 5.0)


def master_connector(pid: int) -> None:
    """Reject a lazy link on the master, which links to workers only while adding them."""
    group = get_group()
    if pid in group.removed:
        raise ProcessExitedError(pid, group.removed[pid])
    raise ValueError(f"no process with id {pid} exists")


def peers_for(group: ProcessGroup) -> list[PeerAddress]:
    """Return the workers a new worker learns about when it joins."""
    with group.lock:
        existing = [m for m in group.members.values() if m.state == "connected"]
    return [PeerAddress(m.pid, m.host, m.port) for m in existing]


def _connect_with_fallback(group: ProcessGroup, manager: Any, config: Any, pid: int,
                           host: str, port: int, timeout: float) -> str:
    """Connect to the announced address, or else to the manager's fallback; return the one used."""
    fallback = getattr(manager, "fallback_address", lambda _config: None)(config)
    first_timeout = min(timeout, FALLBACK_AFTER) if fallback else timeout
    try:
        group.node.connect(pid, host, port, timeout=first_timeout)
        return host
    except ConnectionError as err:
        if not fallback:
            raise ConnectionError(f"could not connect to worker {pid} at {host}:{port}: {err}") from err
        log.warning("worker %d announced %s:%d, which the master cannot reach (%s); trying %s, the address used for SSH",
                    pid, host, port, err, fallback)
    try:
        group.node.connect(pid, fallback, port, timeout=timeout)
    except ConnectionError as err:
        raise ConnectionError(
            f"could not connect to worker {pid} at its announced address {host}:{port} "
            f"nor at the SSH address {fallback}:{port}: {err}"
        ) from err
    return fallback


def create_worker(group: ProcessGroup, manager: Any, config: Any, params: dict) -> int:
    """Connect a launched worker and join it to the cluster; return its pid."""
    pid = group.allocate_pid()
    timeout = worker_timeout()
    host, port = manager.connect(pid, config)
    tunneled = bool(getattr(config, "tunnel", False))
    config.host = config.host or host
    if not tunneled:
        config.bind_addr, config.port = host, port
    host = _connect_with_fallback(group, manager, config, pid, host, port, timeout)
    if not tunneled:
        config.bind_addr = host
    config.connect_at = (host, port)
    request = JoinRequest(pid, group.topology, group.lazy, peers_for(group),
                          bool(params.get("enable_threaded_blas", False)))
    reply: JoinReply = group.call_fetch(pid, join_cluster, request, timeout=timeout)
    if tuple(reply.python_version[:2]) != tuple(sys.version_info[:2]):
        raise LaunchError(
            f"worker {pid} on {config.host} runs Python {'.'.join(map(str, reply.python_version))} and the "
            f"master Python {sys.version.split()[0]}; pickled functions and values need the same minor "
            "version on both sides, so pass exename= with a matching interpreter on that host"
        )
    config.ospid = reply.ospid
    config.environ["cpu_threads"] = reply.cpu_threads
    config.environ["python_version"] = reply.python_version
    config.environ["hostname"] = reply.hostname
    if tunneled:
        # The master reaches this worker through a local tunnel end; peers use its own address.
        host, port = config.bind_addr, int(config.port)
    with group.lock:
        group.members[pid] = Member(pid, host, port, config=config, manager=manager,
                                    ospid=reply.ospid, cpu_threads=reply.cpu_threads)
    log.info("worker %d joined from %s:%d (os pid %d)", pid, host, port, reply.ospid)
    return pid


def _custom_link_wanted(a: Member, b: Member) -> bool:
    """Return True when either worker's ``connect_idents`` lists the other's ``ident``."""
    ident_a, ident_b = getattr(a.config, "ident", None), getattr(b.config, "ident", None)
    wants_a = getattr(a.config, "connect_idents", None) or []
    wants_b = getattr(b.config, "connect_idents", None) or []
    return (ident_b is not None and ident_b in wants_a) or (ident_a is not None and ident_a in wants_b)


def link_new_workers(group: ProcessGroup, new_pids: list[int]) -> None:
    """Run on the master at the end of an addprocs: open the links the topology wants now.

    With ``all_to_all`` and ``lazy=False`` every pair that includes a new worker gets a
    link; with ``custom`` exactly the pairs that ``ident`` and ``connect_idents`` name.
    This waits until all new workers have joined, because a worker may need a link to
    one that joined after it. The higher pid of each pair opens the link. Raises
    ConnectionError naming the pairs that could not be linked.
    """
    if group.topology == "custom":
        wanted = _custom_link_wanted
    elif group.topology == "all_to_all" and not group.lazy:
        wanted = lambda a, b: True  # noqa: E731
    else:
        return
    with group.lock:
        members = {pid: m for pid, m in group.members.items() if m.state == "connected"}
    pairs = set()
    for new in new_pids:
        for other in members:
            if other != new and new in members and wanted(members[new], members[other]):
                pairs.add((max(new, other), min(new, other)))
    if not pairs:
        return
    failures = []
    with ThreadPoolExecutor(max_workers=min(16, len(pairs))) as pool:
        calls = {
            pool.submit(group.call_fetch, higher, connect_to, lower, members[lower].host, members[lower].port,
                        timeout=connect_timeout() + 5.0): (higher, lower)
            for higher, lower in sorted(pairs)
        }
        for call, (higher, lower) in calls.items():
            try:
                call.result()
            except Exception as err:
                cause = err.exc if isinstance(err, RemoteException) else err
                failures.append(f"{higher}-{lower}: {str(cause).splitlines()[0]}")
    log.info("%s topology: %d links opened, %d failed", group.topology, len(pairs) - len(failures), len(failures))
    if failures:
        raise ConnectionError(f"could not open {group.topology} links between workers " + "; ".join(failures))
