"""pyaddprocs: worker processes on this machine or over SSH, and remote calls to them.

    from pyaddprocs import addprocs, remotecall_fetch, pmap, rmprocs
    pids = addprocs(4)
    remotecall_fetch(lambda x: x + 1, pids[0], 41)      # -> 42
    pmap(lambda x: x * x, range(100))
    rmprocs(*pids)
"""

from .cluster import (
    addprocs, cluster_cookie, connected_peers, interrupt, myid, myrole, nprocs, nworkers, procs, rmprocs, workers,
)
from .errors import (
    ChannelClosedError, LaunchError, PeerNotConnectedError, ProcessExitedError, RemoteException,
    WorkerTimeoutError,
)
from .future import Future
from .managers import ClusterManager, LocalManager, SSHManager, WorkerConfig
from .pool import CachingPool, WorkerPool, default_worker_pool, distributed_reduce, pmap
from .refs import Channel
from .remote import everywhere, fetch, remote_do, remotecall, remotecall_fetch, remotecall_wait, spawnat
from .remote_channel import RemoteChannel
from .settings import worker_timeout

__version__ = "0.1.0"

__all__ = [
    "CachingPool", "Channel", "ChannelClosedError", "ClusterManager", "Future", "LaunchError",
    "LocalManager", "PeerNotConnectedError", "ProcessExitedError", "RemoteChannel",
    "RemoteException", "SSHManager", "WorkerConfig", "WorkerPool", "WorkerTimeoutError",
    "addprocs", "cluster_cookie", "connected_peers", "default_worker_pool", "distributed_reduce", "everywhere",
    "fetch", "interrupt", "myid", "myrole", "nprocs", "nworkers", "pmap", "procs",
    "remote_do", "remotecall", "remotecall_fetch", "remotecall_wait", "rmprocs", "spawnat",
    "worker_timeout", "workers",
]
