"""The transport alone: framing, the topology table, the cookie handshake and liveness.

Two Nodes in this process talk over real TCP on 127.0.0.1.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import zmq

from transport_zmq import (
    Header, LinkState, MessageKind, Node, PeerLostError, PeerNotConnectedError, TopologyTable,
)
from transport_zmq.framing import COPY_THRESHOLD


class Recorder:
    """A MessageHandler that records what the node reports."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, Header, list[bytes]]] = []
        self.lost: list[tuple[int, str]] = []
        self.connected: list[int] = []
        self.failed: list[int] = []
        self.arrived = threading.Event()

    def on_message(self, peer, header, frames):
        self.messages.append((peer, header, [bytes(f.buffer) for f in frames]))
        self.arrived.set()

    def on_peer_connected(self, peer):
        self.connected.append(peer)

    def on_peer_lost(self, peer, reason):
        self.lost.append((peer, reason))
        self.arrived.set()

    def on_send_failed(self, peer, header):
        self.failed.append(peer)
        self.arrived.set()


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def node_pair():
    """A bound node (pid 2) and a connecting node (pid 1), both started."""
    cookie = b"test-cookie-1234"
    server_handler, client_handler = Recorder(), Recorder()
    server = Node(cookie, server_handler, connect_timeout=5)
    server.pid = 2
    port = server.bind("127.0.0.1")
    server.start()
    client = Node(cookie, client_handler, connect_timeout=5)
    client.pid = 1
    client.start()
    try:
        yield server, server_handler, client, client_handler, port
    finally:
        client.close()
        server.close()


def test_header_round_trip():
    header = Header(MessageKind.RESULT, 3, (2, 99), (1, 2**40))
    assert Header.unpack(header.pack()) == header


def test_header_rejects_wrong_size():
    with pytest.raises(ValueError, match="invalid header frame"):
        Header.unpack(b"short")


def test_topology_table_rules():
    table = TopologyTable("master_worker")
    table.me = 3
    assert table.state(1) is LinkState.LAZY
    assert table.state(4) is LinkState.FORBIDDEN
    error = table.not_connected(4)
    assert str(error) == "peer 4 is not connected to 3 (topology: master_worker)"
    table.configure("all_to_all", True)
    assert table.state(4) is LinkState.LAZY
    assert table.claim(4) is True
    assert table.claim(4) is False
    assert table.state(4) is LinkState.CONNECTING


def test_invalid_topology_name_rejected():
    with pytest.raises(ValueError, match="invalid topology 'ring'"):
        TopologyTable("ring")


def test_messages_flow_both_ways(node_pair):
    server, server_handler, client, client_handler, port = node_pair
    client.connect(2, "127.0.0.1", port)
    assert wait_for(lambda: server.topology.state(1) is LinkState.CONNECTED)
    client.send(2, Header(MessageKind.CALL_FETCH, 0, (0, 0), (1, 7)), [b"to server"])
    assert wait_for(lambda: server_handler.messages)
    peer, header, frames = server_handler.messages[0]
    assert peer == 1
    assert header.notify == (1, 7)
    assert frames == [b"to server"]
    big = bytes(range(256)) * (COPY_THRESHOLD // 128)
    server.send(1, Header(MessageKind.RESULT, 0, (1, 7)), [b"small", big])
    assert wait_for(lambda: client_handler.messages)
    assert client_handler.messages[0][2] == [b"small", big]


def test_wrong_cookie_is_rejected_and_node_keeps_working(node_pair):
    server, server_handler, client, client_handler, port = node_pair
    intruder = Node(b"wrong-cookie", Recorder(), connect_timeout=1)
    intruder.pid = 1
    intruder.start()
    try:
        with pytest.raises(ConnectionError, match="did not connect"):
            intruder.connect(2, "127.0.0.1", port, timeout=1)
    finally:
        intruder.close()
    assert server_handler.messages == []
    client.connect(2, "127.0.0.1", port)
    client.send(2, Header(MessageKind.REMOTE_DO), [b"still fine"])
    assert wait_for(lambda: server_handler.messages)
    assert server_handler.messages[0][2] == [b"still fine"]


def test_garbage_bytes_do_not_break_node(node_pair):
    server, server_handler, client, client_handler, port = node_pair
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
        raw.sendall(bytes(range(32)) * 8)
        time.sleep(0.2)
    context = zmq.Context.instance()
    dealer = context.socket(zmq.DEALER)
    try:
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send_multipart([Header(MessageKind.CALL).pack(), b"unauthenticated payload"])
        time.sleep(0.3)
    finally:
        dealer.close(linger=0)
    assert server_handler.messages == []
    client.connect(2, "127.0.0.1", port)
    client.send(2, Header(MessageKind.REMOTE_DO), [b"after garbage"])
    assert wait_for(lambda: server_handler.messages)


def test_closed_peer_is_reported_lost(node_pair):
    server, server_handler, client, client_handler, port = node_pair
    client.connect(2, "127.0.0.1", port)
    assert wait_for(lambda: server.topology.state(1) is LinkState.CONNECTED)
    server.close()
    assert wait_for(lambda: client_handler.lost, timeout=10)
    assert client_handler.lost[0][0] == 2
    with pytest.raises(PeerLostError):
        client.send(2, Header(MessageKind.REMOTE_DO), [b"too late"])


def test_forbidden_peer_raises_at_once(node_pair):
    server, server_handler, client, client_handler, port = node_pair
    server.topology.configure("master_worker", False)
    started = time.monotonic()
    with pytest.raises(PeerNotConnectedError, match="peer 3 is not connected to 2"):
        server.send(3, Header(MessageKind.REMOTE_DO), [b"x"])
    assert time.monotonic() - started < 1.0


def test_unreachable_peer_times_out():
    node = Node(b"cookie", Recorder(), connect_timeout=1)
    node.pid = 1
    node.start()
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        with pytest.raises(ConnectionError, match="did not connect"):
            node.connect(2, "127.0.0.1", free_port, timeout=1)
        assert node.topology.state(2) is not LinkState.CONNECTED
    finally:
        node.close()
