"""Creation of every ZeroMQ socket a node uses, with the options set in one place.

Security options (CurveZMQ keys) must be set before a socket binds or connects, so
any socket the transport makes comes from here.
"""

from __future__ import annotations

import zmq

# ZMTP heartbeats: libzmq pings the peer from its own I/O threads, so a busy Python
# process (holding the GIL) still answers. A peer silent for HEARTBEAT_TIMEOUT_MS is
# disconnected, and the monitor reports it.
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 6000

# Messages still queued when a socket closes are dropped after this long.
LINGER_MS = 200


def _common_options(socket: zmq.Socket) -> None:
    socket.setsockopt(zmq.LINGER, LINGER_MS)
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
    # No high-water mark: a message dropped silently would leave a caller waiting.
    socket.setsockopt(zmq.SNDHWM, 0)
    socket.setsockopt(zmq.RCVHWM, 0)
    if hasattr(zmq, "IPV6"):
        socket.setsockopt(zmq.IPV6, 1)


def make_router(context: zmq.Context) -> zmq.Socket:
    """Create the node's ROUTER socket, on which peers connect to it."""
    socket = context.socket(zmq.ROUTER)
    _common_options(socket)
    # Sending to a peer that is gone raises EHOSTUNREACH instead of dropping silently.
    socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
    return socket


def make_dealer(context: zmq.Context, connect_timeout_ms: int) -> zmq.Socket:
    """Create a DEALER socket for one outgoing connection."""
    socket = context.socket(zmq.DEALER)
    _common_options(socket)
    socket.setsockopt(zmq.CONNECT_TIMEOUT, connect_timeout_ms)
    socket.setsockopt(zmq.RECONNECT_IVL, 100)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    return socket


def format_endpoint(host: str, port: int) -> str:
    """Build a tcp endpoint, bracketing IPv6 literals."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{port}"
