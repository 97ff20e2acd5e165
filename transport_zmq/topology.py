"""The topology table: which peers a node may talk to, and the state of each link.

Three topologies exist, with the names Julia's Distributed uses:

- ``all_to_all``: every process may talk to every other one. With ``lazy=True`` a link
  between two workers is made on first use; the higher pid always connects to the
  lower one, so a pair never ends up with two connections.
- ``master_worker``: workers talk only to pid 1.
- ``custom``: exactly the links a ``ClusterManager`` asked for, plus pid 1.

A send to a peer the topology does not link raises ``PeerNotConnectedError`` at once;
it never waits and never routes through pid 1.
"""

from __future__ import annotations

import enum
import threading

MASTER_PID = 1
TOPOLOGIES = ("all_to_all", "master_worker", "custom")


class PeerNotConnectedError(ConnectionError):
    """A send to a peer that the cluster's topology does not connect to this process."""

    def __init__(self, peer: int, me: int, topology: str) -> None:
        super().__init__(f"peer {peer} is not connected to {me} (topology: {topology})")
        self.peer = peer
        self.me = me
        self.topology = topology

    def __reduce__(self):  # keep the arguments when the error crosses processes
        return (type(self), (self.peer, self.me, self.topology))


class PeerLostError(ConnectionError):
    """The peer's connection is gone: its process exited, was removed or became unreachable."""

    def __init__(self, peer: int, reason: str = "") -> None:
        message = f"peer {peer} is gone" + (f": {reason}" if reason else "")
        super().__init__(message)
        self.peer = peer
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.peer, self.reason))


class LinkState(enum.Enum):
    """State of the link from this node to one peer."""

    FORBIDDEN = "forbidden"    # the topology does not connect the two
    LAZY = "lazy"              # allowed, not connected yet; connect on first send
    CONNECTING = "connecting"  # a connection attempt is under way
    CONNECTED = "connected"
    CLOSED = "closed"          # the peer is gone; sends fail with PeerLostError


class TopologyTable:
    """Link states of one node, guarded by one lock.

    Peers not in the table are treated by the topology's rule: under ``all_to_all``
    an unknown peer is LAZY, otherwise FORBIDDEN (pid 1 is always allowed).
    """

    def __init__(self, kind: str = "all_to_all", lazy: bool = True) -> None:
        self.configure(kind, lazy)
        self.me = 0
        self._states: dict[int, LinkState] = {}
        self._errors: dict[int, BaseException] = {}
        self.changed = threading.Condition(threading.RLock())

    def configure(self, kind: str, lazy: bool) -> None:
        """Set the topology kind; ``lazy`` only applies to ``all_to_all``."""
        if kind not in TOPOLOGIES:
            raise ValueError(f"invalid topology {kind!r}; expected one of {', '.join(TOPOLOGIES)}")
        self.kind = kind
        self.lazy = bool(lazy) and kind == "all_to_all"

    def state(self, peer: int) -> LinkState:
        """Return the state of the link to ``peer``."""
        with self.changed:
            state = self._states.get(peer)
        if state is not None:
            return state
        if self.kind == "all_to_all" or peer == MASTER_PID or self.me == MASTER_PID:
            return LinkState.LAZY
        return LinkState.FORBIDDEN

    def set_state(self, peer: int, state: LinkState, error: BaseException | None = None) -> None:
        """Record a new state for ``peer`` and wake threads waiting for a change."""
        with self.changed:
            self._states[peer] = state
            if error is not None:
                self._errors[peer] = error
            else:
                self._errors.pop(peer, None)
            self.changed.notify_all()

    def claim(self, peer: int) -> bool:
        """Move a LAZY link to CONNECTING; return False when another thread got there first."""
        with self.changed:
            if self.state(peer) is not LinkState.LAZY:
                return False
            self._states[peer] = LinkState.CONNECTING
            self._errors.pop(peer, None)
            return True

    def forget(self, peer: int) -> None:
        """Drop ``peer`` from the table, so its link falls back to the topology's rule."""
        with self.changed:
            self._states.pop(peer, None)
            self._errors.pop(peer, None)
            self.changed.notify_all()

    def error(self, peer: int) -> BaseException | None:
        """Return the error recorded with the peer's last state change, if any."""
        with self.changed:
            return self._errors.get(peer)

    def connected_peers(self) -> list[int]:
        """Return the pids with a CONNECTED link, sorted."""
        with self.changed:
            return sorted(p for p, s in self._states.items() if s is LinkState.CONNECTED)

    def not_connected(self, peer: int) -> PeerNotConnectedError:
        """Build the error for a send to ``peer`` that the topology forbids."""
        return PeerNotConnectedError(peer, self.me, self.kind)
