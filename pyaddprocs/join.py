"""The join protocol: how a started worker becomes pid N and how workers find each other.

Master, for each launched worker (``create_worker``):
  1. take the next pid (pids start at 2 and are never reused);
  2. ``manager.connect`` returns the worker's address (usually from its announcement);
  3. connect the node to it, which proves the cookie (HELLO);
  4. call ``join_cluster`` on it with a ``JoinRequest``: its pid, the topology and the
     peers it may link to; the worker replies with a ``JoinReply``.
After all workers of an ``addprocs`` call joined, the master sends every worker the
full member list (``set_members``), which is how lower pids learn of higher ones.

Links between workers (``all_to_all``) follow one rule: the higher pid connects to the
lower one. With ``lazy=True`` that happens on first use (``connect_lazily``): a higher
pid connects directly; a lower pid asks the master (``relay_connect``) to have the
higher pid connect to it, and waits until it has.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from transport_zmq import MASTER_PID

from .errors import LaunchError, ProcessExitedError
from .process_group import Member, ProcessGroup, current_caller, get_group
from .settings import worker_timeout

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
    connect_now: list[int] = field(default_factory=list)   # peers to link to before replying
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
    if request.connect_now:
        _connect_all(group, request.connect_now)
    group.joined.set()
    log.info("joined the cluster as pid %d (topology %s, lazy=%s)", request.pid, request.topology, request.lazy)
    return JoinReply(os.getpid(), usable_cpu_count(), tuple(sys.version_info[:3]), socket.gethostname())


def _connect_all(group: ProcessGroup, pids: list[int]) -> None:
    with ThreadPoolExecutor(max_workers=min(16, len(pids))) as pool:
        for future in [pool.submit(connect_to, pid) for pid in pids]:
            future.result()


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


def connect_to(pid: int) -> None:
    """Run on a worker: make sure this process has a link to ``pid`` (we are the higher pid)."""
    group = get_group()
    member = group.members.get(pid)
    if member is None:
        raise ValueError(f"process {pid} is not known to process {group.myid}")
    group.node.ensure_link(
        pid, lambda: group.node.connect(pid, member.host, member.port, timeout=worker_timeout()),
    )


def connect_lazily(pid: int) -> None:
    """Open the link from this worker to ``pid`` on first use (the worker's lazy connector)."""
    group = get_group()
    if pid in group.removed:
        raise ProcessExitedError(pid, group.removed[pid])
    member = group.members.get(pid)
    if member is None:
        raise ValueError(f"no process with id {pid} is known to process {group.myid}")
    if group.myid > pid:
        try:
            group.node.connect(pid, member.host, member.port, timeout=worker_timeout())
        except ConnectionError as err:
            raise ConnectionError(
                f"process {group.myid} could not connect to peer {pid} at {member.host}:{member.port}: {err}"
            ) from err
    else:
        group.call_fetch(MASTER_PID, relay_connect, pid, group.myid, timeout=worker_timeout())


# -- master side -----------------------------------------------------------------------


def relay_connect(higher: int, lower: int) -> None:
    """Run on the master: have worker ``higher`` connect to worker ``lower``."""
    group = get_group()
    if higher in group.removed:
        raise ProcessExitedError(higher, group.removed[higher])
    group.call_fetch(higher, connect_to, lower, timeout=worker_timeout())


def master_connector(pid: int) -> None:
    """Reject a lazy link on the master, which links to workers only while adding them."""
    group = get_group()
    if pid in group.removed:
        raise ProcessExitedError(pid, group.removed[pid])
    raise ValueError(f"no process with id {pid} exists")


def peers_for(group: ProcessGroup, pid: int, config: Any) -> tuple[list[PeerAddress], list[int]]:
    """Return the peers a new worker may link to, and those it must link to at once."""
    with group.lock:
        existing = [m for m in group.members.values() if m.state == "connected"]
    if group.topology == "master_worker":
        return [], []
    if group.topology == "custom":
        wanted = set(getattr(config, "connect_idents", None) or [])
        chosen = [m for m in existing if getattr(m.config, "ident", None) in wanted]
        peers = [PeerAddress(m.pid, m.host, m.port) for m in chosen]
        return peers, [p.pid for p in peers]
    peers = [PeerAddress(m.pid, m.host, m.port) for m in existing]
    return peers, ([] if group.lazy else [p.pid for p in peers if p.pid < pid])


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
    config.host = config.host or host
    config.bind_addr, config.port = host, port
    config.connect_at = (host, port)
    host = _connect_with_fallback(group, manager, config, pid, host, port, timeout)
    config.bind_addr = host
    config.connect_at = (host, port)
    peers, connect_now = peers_for(group, pid, config)
    request = JoinRequest(pid, group.topology, group.lazy, peers, connect_now,
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
    with group.lock:
        group.members[pid] = Member(pid, host, port, config=config, manager=manager,
                                    ospid=reply.ospid, cpu_threads=reply.cpu_threads)
    log.info("worker %d joined from %s:%d (os pid %d)", pid, host, port, reply.ospid)
    return pid
