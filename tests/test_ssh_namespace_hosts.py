"""SSH workers on several hosts: network namespaces on a private bridge, each with sshd.

Covers bind addresses from the machine spec (IPv4 and IPv6, consecutive ports, ports in
use), the fallback to the SSH address when the announced one cannot be reached, and
workers on four hosts calling each other.
"""

from __future__ import annotations

import glob
import logging
import os
import time
import socket
import sys
from pathlib import Path

import pytest

import pyaddprocs
from pyaddprocs import addprocs, everywhere, remotecall_fetch, rmprocs
from tests.netns import TestNetwork, require_netns
from tests.sshd import require_ssh

PYTHON = sys.executable
REPO = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def network():
    require_ssh()
    require_netns()
    net = TestNetwork(4)
    try:
        net.start()
        yield net
    finally:
        net.stop()


@pytest.fixture
def cleanup_workers():
    before = set(pyaddprocs.procs())
    yield
    extra = [p for p in pyaddprocs.workers() if p not in before and p != 1]
    if extra:
        rmprocs(*extra, waitfor=20)


def host_addprocs(network, machines, **kwargs):
    kwargs.setdefault("sshflags", network.client_flags)
    kwargs.setdefault("exename", PYTHON)
    kwargs.setdefault("env", {"PYTHONPATH": REPO})
    return addprocs(machines, **kwargs)


def listening_address(pid):
    """The (address, port) the master connected to for worker ``pid``."""
    member = pyaddprocs.process_group.get_group().members[pid]
    return member.host, member.port


def worker_hostname():
    return socket.gethostname()


def call_peer(peer):
    from pyaddprocs import myid, remotecall_fetch

    return myid(), remotecall_fetch(myid, peer)


def test_workers_on_four_hosts_call_each_other(network, cleanup_workers):
    machines = [(f"root@{host.ipv4}", 2) for host in network.hosts]
    pids = host_addprocs(network, machines)
    assert len(pids) == 8
    names = everywhere(worker_hostname, procs=pids)
    assert sorted(set(names)) == sorted(host.hostname for host in network.hosts)
    pairs = list(zip(pids, pids[1:] + pids[:1]))
    assert [remotecall_fetch(call_peer, a, b) for a, b in pairs] == pairs


def test_bind_address_and_consecutive_ports(network, cleanup_workers):
    host = network.hosts[0]
    pids = host_addprocs(network, [(f"root@{host.ipv4} {host.ipv4}:9300", 2)])
    addresses = sorted(listening_address(pid) for pid in pids)
    assert addresses == [(host.ipv4, 9300), (host.ipv4, 9301)]


def test_bind_port_in_use_is_skipped(network, cleanup_workers):
    host = network.hosts[1]
    spec = f"root@{host.ipv4} {host.ipv4}:9350"
    [first] = host_addprocs(network, [spec])
    [second] = host_addprocs(network, [spec])
    assert listening_address(first) == (host.ipv4, 9350)
    assert listening_address(second) == (host.ipv4, 9351)


def test_ipv6_spec_with_bind_address(network, cleanup_workers):
    host = network.hosts[2]
    [pid] = host_addprocs(network, [f"root@[{host.ipv6}]:22 [{host.ipv6}]:9400"])
    assert listening_address(pid) == (host.ipv6, 9400)
    assert remotecall_fetch(worker_hostname, pid) == host.hostname


def test_unreachable_announcement_falls_back(network, cleanup_workers, caplog):
    host = network.hosts[3]
    # The worker announces the server address of SSH_CONNECTION; this one is in the test
    # subnet but belongs to no host, so the master cannot reach it there.
    missing = "10.213.0.250"
    env = {"PYTHONPATH": REPO, "SSH_CONNECTION": f"10.213.0.1 40000 {missing} 22"}
    with caplog.at_level(logging.WARNING, logger="pyaddprocs.join"):
        [pid] = host_addprocs(network, [f"root@{host.ipv4}"], env=env)
    assert listening_address(pid)[0] == host.ipv4
    assert remotecall_fetch(worker_hostname, pid) == host.hostname
    assert any(missing in record.getMessage() and "SSH" in record.getMessage() for record in caplog.records)


def control_sockets(config) -> list[str]:
    """Return the ControlMaster sockets in the directory this worker's ssh flags name."""
    paths = [flag.split("=", 1)[1] for flag in config.sshflags if flag.startswith("ControlPath=")]
    return glob.glob(os.path.join(os.path.dirname(paths[0]), "*")) if paths else []


@pytest.mark.parametrize("options", [
    {"tunnel": True},
    {"tunnel": True, "multiplex": True},
    {"tunnel": True, "ssh": "paramiko"},
], ids=["openssh", "multiplexed", "paramiko"])
def test_tunnel_reaches_host_local_worker(network, cleanup_workers, options):
    host = network.hosts[0]
    # Bound to the namespace's own 127.0.0.1, the workers are out of the master's reach
    # except through SSH.
    pids = host_addprocs(network, [(f"root@{host.ipv4} 127.0.0.1", 2)], **options)
    members = pyaddprocs.process_group.get_group().members
    for pid in pids:
        assert members[pid].config.forward.endswith(f":127.0.0.1:{members[pid].port}")
        assert remotecall_fetch(worker_hostname, pid) == host.hostname
    assert remotecall_fetch(call_peer, pids[1], pids[0]) == (pids[1], pids[0])
    config = members[pids[0]].config
    if options.get("multiplex"):
        assert control_sockets(config)
    rmprocs(*pids)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and control_sockets(config):
        time.sleep(0.1)
    assert control_sockets(config) == []


def test_multiplex_needs_openssh(network, cleanup_workers):
    with pytest.raises(ValueError, match="does not work with ssh='paramiko'"):
        host_addprocs(network, [f"root@{network.hosts[0].ipv4}"], multiplex=True, ssh="paramiko")
