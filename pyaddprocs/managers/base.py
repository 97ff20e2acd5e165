"""The ClusterManager interface and WorkerConfig, as in Julia's Distributed.

A manager starts worker processes and tells the cluster how to reach them:

    addprocs(manager, **params)
      └─ manager.launch(params, launched)     starts workers, puts one WorkerConfig per
           │                                  worker into `launched`, then returns
           └─ for each config: manager.connect(pid, config) -> (host, port)
                               manager.manage(pid, config, "register")
    rmprocs(pid)       -> manager.kill(pid, config)
    interrupt(pid)     -> manager.manage(pid, config, "interrupt")
    worker gone        -> manager.manage(pid, config, "deregister")
"""

from __future__ import annotations

import abc
import logging
import queue
from dataclasses import dataclass, field
from typing import IO, Any

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    """What a manager knows about one worker; Julia's fields, all optional.

    ``io`` is the stream the announcement line is read from (later the worker's
    output). ``ident`` and ``connect_idents`` describe the links of
    ``topology="custom"``: this worker links to the workers whose ``ident`` is listed.
    """

    io: IO[bytes] | None = None
    host: str | None = None
    port: int | None = None
    count: int | str | None = None
    exename: str | None = None
    exeflags: list[str] = field(default_factory=list)
    userdata: Any = None
    tunnel: bool = False
    multiplex: bool = False
    forward: str | None = None
    bind_addr: str | None = None
    sshflags: list[str] = field(default_factory=list)
    max_parallel: int | None = None
    connect_at: tuple[str, int] | None = None
    process: Any = None
    ospid: int | None = None
    environ: dict[str, Any] = field(default_factory=dict)
    ident: Any = None
    connect_idents: list[Any] | None = None
    enable_threaded_blas: bool = False
    output: Any = None   # the OutputForwarder reading ``io``


class ClusterManager(abc.ABC):
    """Starts and stops workers for ``addprocs``; subclass it for a new kind of launch."""

    def default_params(self) -> dict[str, Any]:
        """Return the keyword arguments this manager accepts, with their defaults."""
        return {}

    def check_params(self, params: dict[str, Any]) -> None:
        """Validate the merged keyword arguments before anything starts; the default accepts all."""

    @abc.abstractmethod
    def launch(self, params: dict[str, Any], launched: "queue.Queue[WorkerConfig]") -> None:
        """Start the workers, put one WorkerConfig per worker into ``launched``, then return."""

    @abc.abstractmethod
    def manage(self, pid: int, config: WorkerConfig, op: str) -> None:
        """React to ``op`` for worker ``pid``: register, deregister, interrupt or finalize."""

    def connect(self, pid: int, config: WorkerConfig) -> tuple[str, int]:
        """Return the (address, port) the master connects to for worker ``pid``.

        The default reads the announcement line from ``config.io``, or uses
        ``config.bind_addr`` (or ``config.host``) and ``config.port`` when ``io`` is None.
        """
        from ..launch import OutputForwarder
        from ..settings import worker_timeout

        if config.io is None:
            host = config.bind_addr or config.host
            if not host or not config.port:
                raise ValueError(f"WorkerConfig for worker {pid} has neither io nor host and port")
            return host, int(config.port)
        if config.output is None:
            config.output = OutputForwarder(config.io, str(pid))
        return config.output.read_announcement(worker_timeout())

    def kill(self, pid: int, config: WorkerConfig) -> None:
        """Stop worker ``pid``; the default sends it an exit request."""
        from transport_zmq import MessageKind

        from ..process_group import get_group
        from ..worker_control import exit_worker

        try:
            get_group().start_call(MessageKind.REMOTE_DO, pid, exit_worker, (), {})
        except ConnectionError as err:
            log.debug("worker %d was already gone: %s", pid, err)
