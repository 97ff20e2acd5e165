"""The process group's public face: adding, removing and listing processes.

    addprocs(n | machines | manager, **params)                    (master only)
      ├─ validate params, fix the topology for the cluster's lifetime
      ├─ launch thread:   manager.launch(params, launched)
      ├─ for each WorkerConfig in `launched`, its own thread:
      │     join.create_worker -> pid; manager.manage(pid, config, "register")
      ├─ send every worker the member list (join.set_members)
      └─ return the new pids, or raise LaunchError naming the pids that did start

Only pid 1 adds and removes workers, and only one ``addprocs`` runs at a time.
A worker that disappears (its connection drops or its process exits) is deregistered:
callers waiting on it get ProcessExitedError, the other workers are told, and its
manager gets ``deregister``.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
from typing import Any, Iterable, Literal, Sequence

from transport_zmq import MASTER_PID, TOPOLOGIES, MessageKind

from . import join
from .errors import LaunchError, WorkerTimeoutError
from .managers import ClusterManager, LocalManager, SSHManager, WorkerConfig
from .managers.shell_commands import check_env_name, split_flags
from .process_group import existing_group, get_group
from .settings import worker_timeout

log = logging.getLogger(__name__)

_addprocs_lock = threading.Lock()

# Seconds to wait for workers to end when the master exits.
EXIT_WAIT = 5.0


def _common_defaults() -> dict[str, Any]:
    return {
        "dir": None, "exename": sys.executable, "exeflags": (), "env": None,
        "topology": "all_to_all", "lazy": True, "enable_threaded_blas": False,
    }


def _require_master(action: str) -> None:
    group = existing_group()
    if group is not None and group.role != "master":
        raise RuntimeError(f"Only process 1 can {action} workers")


def _check_env(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    items = env.items() if isinstance(env, dict) else env
    result: dict[str, str] = {}
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"env must be a dict or a sequence of (name, value) pairs, got {item!r}") from None
        check_env_name(name)
        if not isinstance(value, str):
            raise TypeError(f"env value for {name} must be a str, not {type(value).__name__}")
        if "\0" in value:
            raise ValueError(f"env value for {name} contains a NUL byte, which no environment can hold")
        result[name] = value
    return result


def _validate_params(manager: ClusterManager, kwargs: dict[str, Any]) -> dict[str, Any]:
    params = {**_common_defaults(), **manager.default_params()}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise TypeError(
            f"addprocs() got unexpected keyword argument(s) {', '.join(unknown)} for {manager!r}; "
            f"valid keywords: {', '.join(sorted(params))}"
        )
    params.update(kwargs)
    if params["topology"] not in TOPOLOGIES:
        raise ValueError(f"invalid topology {params['topology']!r}; expected one of {', '.join(TOPOLOGIES)}")
    params["exeflags"] = split_flags(params["exeflags"], "exeflags")
    params["env"] = _check_env(params["env"])
    params["lazy"] = bool(params["lazy"]) and params["topology"] == "all_to_all"
    if params["dir"] is not None:
        if not isinstance(params["dir"], (str, os.PathLike)):
            raise TypeError(f"dir must be a path, not {params['dir']!r}")
        params["dir"] = os.fspath(params["dir"])
    if not isinstance(params["exename"], (str, os.PathLike)):
        raise TypeError(f"exename must be a path, not {params['exename']!r}")
    params["exename"] = os.fspath(params["exename"])
    manager.check_params(params)
    return params


def _manager_for(target: Any, kwargs: dict[str, Any]) -> ClusterManager:
    if isinstance(target, ClusterManager):
        return target
    if target is None or (isinstance(target, int) and not isinstance(target, bool)):
        count = len(os.sched_getaffinity(0)) if target is None else target
        if count < 0:
            raise ValueError(f"invalid number of workers {count}: must be 0 or more")
        return LocalManager(count, kwargs.get("restrict", True))
    if isinstance(target, (list, tuple)):
        return SSHManager(list(target))
    raise TypeError(
        f"addprocs() takes a number of local workers, a list of machine specs or a ClusterManager, not {target!r}"
    )


def _set_topology(params: dict[str, Any]) -> None:
    group = get_group()
    if group.members:
        if params["topology"] != group.topology:
            raise ValueError(
                f"Workers with topology {group.topology} already exist. "
                f"Requested topology {params['topology']} cannot be set."
            )
        if params["lazy"] != group.lazy:
            raise ValueError(f"Active workers with lazy={group.lazy}. Cannot set lazy={params['lazy']}")
    group.topology = params["topology"]
    group.lazy = params["lazy"]
    group.node.topology.configure(group.topology, group.lazy)


def addprocs(target: int | Sequence | ClusterManager | None = None, /, **kwargs: Any) -> list[int]:
    """Start workers and return their pids, sorted.

    ``addprocs(n)`` starts ``n`` local workers (default: the CPUs this process may use);
    ``addprocs(machines)`` starts workers over SSH; ``addprocs(manager)`` uses a custom
    ClusterManager. Keywords: ``dir``, ``exename``, ``exeflags``, ``env``, ``topology``
    (``"all_to_all"``, ``"master_worker"``, ``"custom"``), ``lazy``,
    ``enable_threaded_blas``, and the manager's own (``restrict`` for local workers).
    Raises LaunchError (``.started_pids`` lists the workers that did start).
    """
    for alias in ("n", "np", "machines", "manager"):
        if alias in kwargs:
            if target is not None:
                raise TypeError(f"addprocs() got {alias}= and a positional argument")
            target = kwargs.pop(alias)
    _require_master("add")
    manager = _manager_for(target, kwargs)
    params = _validate_params(manager, kwargs)
    with _addprocs_lock:
        _set_topology(params)
        return _addprocs_locked(manager, params)


def _addprocs_locked(manager: ClusterManager, params: dict[str, Any]) -> list[int]:
    group = get_group()
    group.node.lazy_connector = join.master_connector
    group.on_worker_lost = _on_worker_lost
    launched: "queue.Queue[WorkerConfig]" = queue.Queue()
    launch_errors: list[BaseException] = []

    def run_launch() -> None:
        try:
            manager.launch(params, launched)
        except BaseException as err:  # reported after the started workers are set up
            log.info("launch failed in %r: %s", manager, err)
            launch_errors.append(err)

    launcher = threading.Thread(target=run_launch, name="pyaddprocs-launch", daemon=True)
    launcher.start()
    started: list[int] = []
    failures: list[BaseException] = []
    setups: list[threading.Thread] = []
    while launcher.is_alive() or not launched.empty():
        try:
            config = launched.get(timeout=0.1)
        except queue.Empty:
            continue
        setup = threading.Thread(target=_setup_worker, args=(manager, config, params, started, failures),
                                 name="pyaddprocs-setup", daemon=True)
        setup.start()
        setups.append(setup)
    for setup in setups:
        setup.join()
    _broadcast_members()
    if started:
        try:
            join.link_new_workers(group, sorted(started))
        except ConnectionError as err:
            failures.append(err)
    errors = launch_errors + failures
    if errors:
        _raise_launch_failure(errors, sorted(started), len(setups))
    return sorted(started)


def _setup_worker(manager: ClusterManager, config: WorkerConfig, params: dict, started: list, failures: list) -> None:
    group = get_group()
    try:
        pid = join.create_worker(group, manager, config, params)
    except BaseException as err:
        failures.append(err)
        log.info("a worker did not start: %s", err)
        _discard_failed_worker(manager, config)
        return
    if config.output is not None:
        config.output.set_label(str(pid))
        config.output.on_end = lambda: _on_output_end(pid)
    try:
        manager.manage(pid, config, "register")
    except Exception:
        log.exception("manager.manage(register) failed for worker %d", pid)
    from .pool import default_worker_pool

    default_worker_pool().push(pid)
    started.append(pid)


def _discard_failed_worker(manager: ClusterManager, config: WorkerConfig) -> None:
    process = config.process
    if process is not None and process.poll() is None:
        process.kill()
        try:
            process.wait(timeout=5)
        except Exception as err:
            log.warning("failed worker (os pid %d) did not exit: %s", process.pid, err)


def _raise_launch_failure(errors: list[BaseException], started: list[int], attempted: int) -> None:
    first = errors[0]
    if isinstance(first, LaunchError):
        message, output = str(first).split(LaunchError.OUTPUT_HEADING)[0], first.output
    else:
        message, output = f"{type(first).__name__}: {first}", ""
    if len(errors) > 1:
        message = f"{len(errors)} of {max(attempted, len(errors))} workers did not start; the first error: {message}"
    error_type = WorkerTimeoutError if isinstance(first, WorkerTimeoutError) else LaunchError
    raise error_type(message, output, started) from first


def _broadcast_members() -> None:
    group = get_group()
    with group.lock:
        members = [join.PeerAddress(m.pid, m.host, m.port) for m in group.members.values()]
    for member in members:
        try:
            group.start_call(MessageKind.REMOTE_DO, member.pid, join.set_members, (members,), {})
        except ConnectionError as err:
            log.debug("could not send the member list to %d: %s", member.pid, err)


def _on_output_end(pid: int) -> None:
    # The worker's output ended: it exited. The connection's monitor usually notices
    # first; this covers a worker that exits while its socket lingers.
    group = get_group()
    member = group.members.get(pid)
    if member is None:
        return
    process = getattr(member.config, "process", None)
    code = None
    if process is not None:
        try:
            code = process.wait(timeout=2.0)
        except Exception:
            return
    reason = f"its process exited with code {code}" if code is not None else "its output ended"
    _on_worker_lost(pid, reason)


def _on_worker_lost(pid: int, reason: str) -> None:
    group = get_group()
    member = group.members.get(pid)
    if member is None:
        return
    group.runner.submit(_deregister_worker, pid, reason)


def _deregister_worker(pid: int, reason: str) -> None:
    group = get_group()
    with group.lock:
        member = group.members.get(pid)
        if member is None:
            return
        expected = member.state == "terminating"
        # Removed under the lock, so a second report of the same loss stops above.
        group.mark_removed(pid, "removed by rmprocs" if expected else reason)
    if not expected:
        print(f"Worker {pid} terminated ({reason}).", file=sys.stderr, flush=True)
    log.info("worker %d removed: %s", pid, reason)
    try:
        member.manager.manage(pid, member.config, "deregister")
    except Exception:
        log.exception("manager.manage(deregister) failed for worker %d", pid)
    from .pool import default_worker_pool

    default_worker_pool().discard(pid)
    for other in list(group.members):
        try:
            group.start_call(MessageKind.REMOTE_DO, other, join.member_removed, (pid, reason), {})
        except ConnectionError:
            pass


def _flatten_pids(pids: Iterable[Any]) -> list[int]:
    result: list[int] = []
    for item in pids:
        if isinstance(item, (list, tuple, set, range)):
            result.extend(_flatten_pids(item))
        elif isinstance(item, int) and not isinstance(item, bool):
            result.append(item)
        else:
            raise TypeError(f"pids must be integers, not {item!r}")
    return result


def rmprocs(*pids: int | Iterable[int], waitfor: float | None = None) -> None:
    """Remove workers and wait until their processes have ended.

    ``waitfor`` bounds the wait in seconds (None: until every manager's kill has
    finished); raises TimeoutError naming the pids still running after it.
    """
    _require_master("remove")
    if waitfor is not None and (isinstance(waitfor, bool) or not isinstance(waitfor, (int, float)) or waitfor < 0):
        raise ValueError(f"invalid waitfor {waitfor!r}: expected None or a number of seconds >= 0")
    group = get_group()
    targets = []
    for pid in _flatten_pids(pids):
        if pid == MASTER_PID:
            log.warning("rmprocs: process 1 not removed")
            continue
        member = group.members.get(pid)
        if member is None or member.state != "connected":
            continue
        member.state = "terminating"
        targets.append(member)
    killers = []
    for member in targets:
        killer = threading.Thread(target=_kill_worker, args=(member,), name=f"pyaddprocs-kill-{member.pid}", daemon=True)
        killer.start()
        killers.append(killer)
    deadline = None if waitfor is None else time.monotonic() + waitfor
    for member in targets:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
        member.removed.wait(remaining)
    still = [m.pid for m in targets if not m.removed.is_set()]
    if still:
        raise TimeoutError(f"rmprocs: pids {still} not terminated after {waitfor:g} seconds.")


def _kill_worker(member) -> None:
    try:
        member.manager.kill(member.pid, member.config)
    except Exception:
        log.exception("manager.kill failed for worker %d", member.pid)
    # The manager's kill has returned, so the process is gone or beyond our reach;
    # deregister now rather than wait for the connection to notice.
    _deregister_worker(member.pid, "removed by rmprocs")


def procs(pid: int | None = None) -> list[int]:
    """Return all pids (master first); with ``pid``, those on the same host as ``pid``."""
    group = existing_group()
    if group is None:
        return [MASTER_PID]
    with group.lock:
        members = dict(group.members)
    everyone = sorted({MASTER_PID, group.myid, *members} - {0})
    if pid is None:
        return everyone
    local = {"127.0.0.1", "::1", "localhost", ""}

    def host_of(p: int) -> str:
        if p == MASTER_PID:
            return "local" if group.role == "master" else "master"
        member = members.get(p)
        host = member.host if member is not None else ""
        return "local" if group.role == "master" and host in local else host

    if pid not in everyone:
        raise ValueError(f"no process with id {pid} exists")
    return [p for p in everyone if host_of(p) == host_of(pid)]


def workers() -> list[int]:
    """Return the worker pids, or [1] when there are none."""
    others = [p for p in procs() if p != MASTER_PID]
    return others or [MASTER_PID]


def nprocs() -> int:
    """Return the number of processes, master included."""
    return len(procs())


def nworkers() -> int:
    """Return the number of workers (1 when only the master exists)."""
    count = nprocs()
    return 1 if count == 1 else count - 1


def myid() -> int:
    """Return this process's pid: 1 on the master, 2 and up on workers."""
    group = existing_group()
    return MASTER_PID if group is None else group.myid


def myrole() -> Literal["master", "worker"]:
    """Return ``"master"`` or ``"worker"``."""
    group = existing_group()
    return "master" if group is None else group.role


def connected_peers(pid: int | None = None) -> list[int]:
    """Return the pids that process ``pid`` (default: this one) has an open link to now.

    A worker always has its link to pid 1; other links follow the topology (with
    ``lazy=True`` they appear on first use). Summed over 8 fresh lazy workers that is 8
    links, and each pair of workers that has talked adds 2.
    """
    if pid is None or pid == myid():
        group = existing_group()
        return [] if group is None else group.node.connected_peers()
    from .remote import remotecall_fetch

    return remotecall_fetch(_connected_peers_here, pid)


def _connected_peers_here() -> list[int]:
    return get_group().node.connected_peers()


def cluster_cookie(cookie: str | None = None) -> str:
    """Return the cluster cookie; with ``cookie``, set it first (only before any worker exists)."""
    group = get_group()
    if cookie is not None:
        if group.role != "master" or group.members:
            raise RuntimeError("the cluster cookie can only be set on the master before workers are added")
        if not isinstance(cookie, str) or not cookie.isascii() or any(c.isspace() for c in cookie):
            raise ValueError("invalid cookie: use printable ASCII without whitespace")
        group.cookie = cookie
        group.node.cookie = cookie.encode()
    return group.cookie


def interrupt(pids: int | Iterable[int] | None = None) -> None:
    """Interrupt the calls running on ``pids`` (default: all workers) through their managers."""
    _require_master("interrupt")
    group = get_group()
    targets = workers() if pids is None else _flatten_pids([pids])
    for pid in targets:
        member = group.members.get(pid)
        if member is None:
            continue
        try:
            member.manager.manage(pid, member.config, "interrupt")
        except Exception:
            log.exception("could not interrupt worker %d", pid)


def _remove_all_at_exit() -> None:
    group = existing_group()
    if group is None or group.role != "master" or not group.members:
        return
    try:
        rmprocs(list(group.members), waitfor=EXIT_WAIT + 5.0)
    except Exception as err:
        log.warning("could not remove every worker at exit: %s", err)
        for member in list(group.members.values()):
            process = getattr(member.config, "process", None)
            if process is not None and process.poll() is None:
                process.kill()


atexit.register(_remove_all_at_exit)

__all__ = [
    "addprocs", "cluster_cookie", "connected_peers", "interrupt", "myid", "myrole", "nprocs", "nworkers",
    "procs", "rmprocs", "worker_timeout", "workers",
]
