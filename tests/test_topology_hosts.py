"""Topologies across hosts: three namespace hosts, two of which cannot reach each other.

Host A and host B are cut off from each other by a route inside each namespace; both
reach host C and the master. Each test runs its own master in a subprocess, because a
cluster keeps one topology for its lifetime.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.netns import TestNetwork, require_netns
from tests.sshd import require_ssh
from tests.support import REPO_ROOT, script_env

# Seconds a worker tries to reach a peer before the call that needed it fails.
PEER_CONNECT_TIMEOUT = 3
MASTER_TIMEOUT = 150


@pytest.fixture(scope="module")
def blocked_network():
    require_ssh()
    require_netns()
    net = TestNetwork(3)
    try:
        net.start()
        net.block(net.hosts[0], net.hosts[1])
        yield net
    finally:
        net.stop()


def run_master(net: TestNetwork, body: str) -> None:
    """Run a master that starts one SSH worker on each host (pids a, b, c), then ``body``."""
    setup = {
        "flags": net.client_flags,
        "machines": [f"root@{host.ipv4}" for host in net.hosts],
        "python": sys.executable,
        "env": {"PYTHONPATH": str(REPO_ROOT), "PYADDPROCS_CONNECT_TIMEOUT": str(PEER_CONNECT_TIMEOUT)},
    }
    script = textwrap.dedent(f"""
        import json, time
        from pyaddprocs import *
        from pyaddprocs.errors import PeerNotConnectedError
        SETUP = json.loads({json.dumps(json.dumps(setup))})
        HOSTS = SETUP["machines"]

        def call_peer(peer):
            from pyaddprocs import myid, remotecall_fetch
            return myid(), remotecall_fetch(myid, peer)

        def start(topology, manager=None):
            options = dict(sshflags=SETUP["flags"], exename=SETUP["python"], env=SETUP["env"], topology=topology)
            if manager is None:
                return [addprocs([machine], **options)[0] for machine in HOSTS]
            return addprocs(manager, **options)
    """) + textwrap.dedent(body) + "\nprint('OK')\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=MASTER_TIMEOUT, env=script_env())
    assert result.returncode == 0, f"master script failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.rstrip().endswith("OK"), result.stdout


def test_master_worker_works_across_blocked_hosts(blocked_network):
    run_master(blocked_network, """
        a, b, c = start("master_worker")
        assert [remotecall_fetch(myid, p) for p in (a, b, c)] == [a, b, c]
        try:
            remotecall_fetch(call_peer, a, b)
        except RemoteException as err:
            assert isinstance(err.exc, PeerNotConnectedError), repr(err.exc)
        else:
            raise AssertionError("a worker-to-worker call succeeded under master_worker")
        rmprocs([a, b, c])
    """)


def test_all_to_all_names_unreachable_pair(blocked_network):
    host_b = blocked_network.hosts[1].ipv4
    host_a = blocked_network.hosts[0].ipv4
    run_master(blocked_network, f"""
        a, b, c = start("all_to_all")
        assert remotecall_fetch(call_peer, a, c) == (a, c)
        assert remotecall_fetch(call_peer, c, b) == (c, b)
        for caller, callee in ((a, b), (b, a)):
            started = time.monotonic()
            try:
                remotecall_fetch(call_peer, caller, callee)
            except RemoteException as err:
                text = str(err)
            else:
                raise AssertionError(f"{{caller}} reached {{callee}} through the firewall")
            elapsed = time.monotonic() - started
            assert elapsed < {PEER_CONNECT_TIMEOUT} + 10, elapsed
            assert f"could not connect to peer {{min(a, b)}}" in text, text
            assert f"process {{max(a, b)}}" in text, text
            assert ({host_a!r} if min(a, b) == a else {host_b!r}) in text, text
        assert remotecall_fetch(call_peer, a, c) == (a, c)
        rmprocs([a, b, c])
    """)


def test_custom_without_blocked_link_works(blocked_network):
    run_master(blocked_network, """
        import queue

        class HostManager(SSHManager):
            # ident = the host's index in HOSTS; A and B link only to C.
            def launch(self, params, launched):
                staged = queue.Queue()
                super().launch(params, staged)
                while not staged.empty():
                    config = staged.get()
                    config.ident = HOSTS.index(config.host)
                    config.connect_idents = [2] if config.ident < 2 else []
                    launched.put(config)

            def manage(self, pid, config, op):
                if op == "register":
                    pid_of_ident[config.ident] = pid
                super().manage(pid, config, op)

        pid_of_ident = {}
        pids = start("custom", HostManager(HOSTS))
        a, b, c = pid_of_ident[0], pid_of_ident[1], pid_of_ident[2]
        assert remotecall_fetch(call_peer, a, c) == (a, c)
        assert remotecall_fetch(call_peer, b, c) == (b, c)
        assert remotecall_fetch(call_peer, c, a) == (c, a)
        try:
            remotecall_fetch(call_peer, a, b)
        except RemoteException as err:
            assert isinstance(err.exc, PeerNotConnectedError), repr(err.exc)
        else:
            raise AssertionError("custom topology linked a pair it did not list")
        assert connected_peers(c) == sorted([1, a, b])
        rmprocs(pids)
    """)


def test_eager_links_report_blocked_pair(blocked_network):
    run_master(blocked_network, """
        options = dict(sshflags=SETUP["flags"], exename=SETUP["python"], env=SETUP["env"], lazy=False)
        started = time.monotonic()
        try:
            addprocs(HOSTS, **options)
        except LaunchError as err:
            text = str(err)
            pids = err.started_pids
        else:
            raise AssertionError("lazy=False linked two hosts that cannot reach each other")
        assert time.monotonic() - started < 60
        assert len(pids) == 3, pids
        assert "could not open all_to_all links between workers" in text, text
        assert text.count(" could not connect to peer ") == 1, text
        assert [remotecall_fetch(myid, p) for p in pids] == pids
        rmprocs(pids)
    """)
