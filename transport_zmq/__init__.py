"""ZeroMQ transport for pyaddprocs: sockets, framing, topology and liveness.

This package moves frames between processes and knows nothing about Python calls; it
never imports ``pyaddprocs``.
"""

from .framing import COPY_THRESHOLD, NO_REF, PROTOCOL_VERSION, Header, MessageKind, RefId, ResultFlag
from .node import MessageHandler, Node
from .sockets import format_endpoint
from .topology import MASTER_PID, TOPOLOGIES, LinkState, PeerLostError, PeerNotConnectedError, TopologyTable

__all__ = [
    "COPY_THRESHOLD", "MASTER_PID", "NO_REF", "PROTOCOL_VERSION", "TOPOLOGIES",
    "Header", "LinkState", "MessageHandler", "MessageKind", "Node", "PeerLostError",
    "PeerNotConnectedError", "RefId", "ResultFlag", "TopologyTable", "format_endpoint",
]
