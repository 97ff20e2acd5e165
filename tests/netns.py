"""Extra hosts for tests: network namespaces on a private bridge, each with its own sshd.

    root namespace: bridge pyapbrXXXX  10.213.0.1/24  fd00:213::1/64
        ├─ veth ── namespace pyap-XXXX-1: eth0 10.213.0.11  fd00:213::11  sshd :22
        ├─ veth ── namespace pyap-XXXX-2: eth0 10.213.0.12  fd00:213::12  sshd :22
        └─ ...

The subnet is private to these tests and the bridge routes nowhere else, so all traffic
stays on this machine. Each sshd runs under ``unshare --uts`` with its own hostname.
``stop()`` removes the sshds, the namespaces and the bridge, also after a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.sshd import SSHServer, end_processes

SUBNET_V4 = "10.213.0"
SUBNET_V6 = "fd00:213:"


def netns_possible() -> str | None:
    """Return why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip netns) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"ip netns does not work here: {probe.stderr.strip()}"
    return None


def require_netns() -> None:
    """Skip the calling test when namespaces cannot be made, except under CI where that fails."""
    import pytest

    reason = netns_possible()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"namespace tests must run in CI: {reason}")
    pytest.skip(reason)


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


@dataclass
class NamespaceHost:
    """One test host: its namespace, addresses and sshd."""

    name: str
    hostname: str
    ipv4: str
    ipv6: str
    sshd: SSHServer | None = None

    def run(self, *command: str) -> subprocess.CompletedProcess:
        """Run a command inside the namespace."""
        return subprocess.run(["ip", "netns", "exec", self.name, *command], capture_output=True, text=True)


class TestNetwork:
    """A bridge and ``count`` namespace hosts with sshd; see the module docstring."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, count: int) -> None:
        tag = secrets.token_hex(2)
        self.bridge = f"pyapbr{tag}"
        self.hosts = [
            NamespaceHost(f"pyap-{tag}-{index}", f"pyaphost{index}", f"{SUBNET_V4}.{10 + index}",
                          f"{SUBNET_V6}:{10 + index}")
            for index in range(1, count + 1)
        ]
        self._made_bridge = False
        self._made: list[NamespaceHost] = []
        self.key_directory = Path(tempfile.mkdtemp(prefix="pyaddprocs-netkey-"))
        self.client_key = self.key_directory / "client_ed25519"

    @property
    def client_flags(self) -> list[str]:
        """ssh options that log in to every host of this network without prompts."""
        return ["-i", str(self.client_key), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

    def start(self) -> "TestNetwork":
        """Create the bridge, the namespaces and their sshds."""
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key)], check=True)
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        _run("ip", "addr", "add", f"{SUBNET_V4}.1/24", "dev", self.bridge)
        _run("ip", "-6", "addr", "add", f"{SUBNET_V6}:1/64", "dev", self.bridge, "nodad")
        _run("ip", "link", "set", self.bridge, "up")
        for index, host in enumerate(self.hosts, start=1):
            self._add_host(host, index)
        return self

    def _add_host(self, host: NamespaceHost, index: int) -> None:
        outside, inside = f"{self.bridge}v{index}", f"{self.bridge}i{index}"
        _run("ip", "netns", "add", host.name)
        self._made.append(host)
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        _run("ip", "link", "set", inside, "netns", host.name)
        _run("ip", "link", "set", outside, "master", self.bridge, "up")
        inner = ["ip", "netns", "exec", host.name]
        _run(*inner, "ip", "link", "set", "lo", "up")
        _run(*inner, "ip", "link", "set", inside, "name", "eth0")
        _run(*inner, "ip", "addr", "add", f"{host.ipv4}/24", "dev", "eth0")
        _run(*inner, "ip", "-6", "addr", "add", f"{host.ipv6}/64", "dev", "eth0", "nodad")
        _run(*inner, "ip", "link", "set", "eth0", "up")
        host.sshd = SSHServer(address=host.ipv4, port=22, netns=host.name, hostname=host.hostname,
                              extra_addresses=[host.ipv6], client_key=self.client_key).start()

    def block(self, first: NamespaceHost, second: NamespaceHost) -> None:
        """Cut the two hosts off from each other in both directions (a firewall between them).

        A ``prohibit`` route inside each namespace makes connects to the other host's
        IPv4 address fail; both still reach the master's bridge address.
        """
        for source, target in ((first, second), (second, first)):
            _run("ip", "netns", "exec", source.name, "ip", "route", "add", "prohibit", f"{target.ipv4}/32")

    def stop(self) -> None:
        """Stop every sshd and remove the namespaces and the bridge."""
        for host in self._made:
            if host.sshd is not None:
                host.sshd.stop()
            # Whatever still runs inside (workers of a failed test) would keep the
            # namespace, and its veth pair, alive after "ip netns del".
            listed = subprocess.run(["ip", "netns", "pids", host.name], capture_output=True, text=True)
            end_processes([int(pid) for pid in listed.stdout.split()])
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)
        for index in range(1, len(self.hosts) + 1):
            subprocess.run(["ip", "link", "del", f"{self.bridge}v{index}"], capture_output=True)
        if self._made_bridge:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.key_directory, ignore_errors=True)
