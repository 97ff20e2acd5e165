"""The peers the suite compares, in report order, and how to tell whether each one is installed.

Adapter modules import their library only inside their methods, so loading an
adapter class here is cheap and never imports dask or ipyparallel.
"""

from __future__ import annotations

import importlib
import importlib.util

from benchmarks.peers.base import Peer

# "module:Class" under benchmarks.peers, in the order of the report's rows.
ADAPTERS = (
    "pyaddprocs_peer:PyaddprocsPeer",
    "stdlib:PyaddprocsPoolPeer",
    "stdlib:PyaddprocsExecutorPeer",
    "raw:RawZmqPeer",
    "raw:RawSocketPeer",
    "stdlib:MultiprocessingPoolPeer",
    "stdlib:ProcessPoolExecutorPeer",
    "loky_peer:LokyPeer",
    "ipyparallel_peer:IpyparallelPeer",
    "dask_peer:DaskPeer",
    "execnet_peer:ExecnetPeer",
)

# Report text for a pyaddprocs front end that does not exist yet.
NOT_BUILT = "not built yet"


def load_adapter(path: str) -> type[Peer]:
    """Import and return the adapter class at ``path`` ("module:Class")."""
    module_name, class_name = path.split(":")
    module = importlib.import_module(f"benchmarks.peers.{module_name}")
    return getattr(module, class_name)


def adapter_path(key: str) -> str:
    """Return the ADAPTERS entry of the peer with this key; raise KeyError for an unknown key."""
    for path in ADAPTERS:
        if load_adapter(path).key == key:
            return path
    raise KeyError(key)


def unavailable_reason(peer: type[Peer]) -> str | None:
    """Return why the peer cannot run here, or None when it can.

    Checks importability with ``find_spec``, which does not run the module. Only for a
    pyaddprocs front end is pyaddprocs imported, to look for the front end's class.
    """
    for name in peer.modules:
        if importlib.util.find_spec(name) is None:
            return f"not installed (no module named {name!r})"
    if peer.front_end is not None:
        package = importlib.import_module("pyaddprocs")
        if not hasattr(package, peer.front_end):
            return f"{NOT_BUILT} (pyaddprocs has no {peer.front_end})"
    return None
