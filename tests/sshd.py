"""A real OpenSSH server for the SSH tests, started by the tests themselves.

``SSHServer`` runs ``/usr/sbin/sshd -D`` as root on 127.0.0.1 (or inside a network
namespace) with a fresh host key and a fresh client key in a temporary directory:
key-only authentication, ``UsePAM no``, ``StrictModes no``. ``client_flags`` are the
ssh options a test passes as ``sshflags``. The server and its files go away in
``stop()``, which the fixtures call also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support import descendant_pids, wait_until_exited

SSHD = "/usr/sbin/sshd"


def ssh_tests_possible() -> str | None:
    """Return why SSH tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "SSH tests start sshd as root; run them as root"
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        return "openssh-server and openssh-client are not installed"
    return None


def require_ssh() -> None:
    """Skip the calling test when SSH tests cannot run, except under CI where that fails."""
    reason = ssh_tests_possible()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"SSH tests must run in CI: {reason}")
    pytest.skip(reason)


def end_processes(ospids: list[int], grace: float = 3.0) -> None:
    """Send SIGTERM to processes the tests started, then SIGKILL to those still running."""
    for ospid in ospids:
        try:
            os.kill(ospid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for ospid in wait_until_exited(ospids, timeout=grace):
        try:
            os.kill(ospid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class SSHServer:
    """One sshd with its own keys and configuration in a temporary directory."""

    def __init__(self, address: str = "127.0.0.1", port: int | None = None, extra_config: str = "",
                 netns: str | None = None, hostname: str | None = None,
                 extra_addresses: list[str] | None = None, client_key: Path | None = None) -> None:
        self.address = address
        self.hostname = hostname
        self.extra_addresses = list(extra_addresses or [])
        self.port = port or free_port(address) if netns is None else (port or 22)
        self.netns = netns
        self.directory = Path(tempfile.mkdtemp(prefix="pyaddprocs-sshd-"))
        os.chmod(self.directory, 0o755)
        self.host_key = self.directory / "host_ed25519"
        # A shared client key lets one set of ssh flags log in to several servers.
        self.own_client_key = client_key is None
        self.client_key = client_key or self.directory / "client_ed25519"
        self.keys_dir = self.directory / "authorized"
        self.keys_dir.mkdir()
        os.chmod(self.keys_dir, 0o755)
        self.log = self.directory / "sshd.log"
        self.extra_config = extra_config
        self.process: subprocess.Popen | None = None

    @property
    def client_flags(self) -> list[str]:
        """The ssh options that log in to this server without prompts."""
        return ["-i", str(self.client_key), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

    def authorize(self, user: str, key: Path | None = None) -> None:
        """Let ``user`` log in with the client key (or ``key``)."""
        public = Path(str(key or self.client_key) + ".pub").read_text()
        path = self.keys_dir / user
        path.write_text(public)
        os.chmod(path, 0o644)

    def start(self) -> "SSHServer":
        """Generate keys, write the configuration and start sshd; wait until it accepts."""
        for key in (self.host_key, self.client_key) if self.own_client_key else (self.host_key,):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.authorize("root")
        config = self.directory / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            + "".join(f"ListenAddress {a}\n" for a in [self.address, *self.extra_addresses]) +
            f"HostKey {self.host_key}\n"
            f"PidFile {self.directory / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.keys_dir}/%u\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            "LogLevel ERROR\n"
            + self.extra_config
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        command = [SSHD, "-D", "-e", "-f", str(config)]
        if self.hostname:
            # A UTS namespace of its own, so the host reports its own hostname.
            command = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *command]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=open(self.log, "wb"), start_new_session=True)
        self._wait_until_listening()
        return self

    def _wait_until_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited at start: {self.log.read_text()}")
            if self.netns is None:
                try:
                    with socket.create_connection((self.address, self.port), timeout=0.5):
                        return
                except OSError:
                    pass
            else:
                probe = subprocess.run(["ip", "netns", "exec", self.netns, "ss", "-ltn", f"sport = :{self.port}"],
                                       capture_output=True, text=True)
                if f":{self.port}" in probe.stdout:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.address}:{self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop sshd and the sessions it started, and delete its files."""
        if self.process is not None and self.process.poll() is None:
            # Session processes outlive the listener, so note them before it goes.
            sessions = descendant_pids(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            end_processes(sessions)
        shutil.rmtree(self.directory, ignore_errors=True)

    def spec(self, user: str = "root", bind: str | None = "127.0.0.1") -> str:
        """Return a machine spec for this server; workers bind to ``bind`` when given."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        text = f"{user}@{host}:{self.port}"
        return f"{text} {bind}" if bind else text


class LoginAccount:
    """A login account made for one test module and removed afterwards.

    ``root_alias=True`` makes a second name for uid 0 (``useradd -o -u 0``) with its own
    login shell and home directory, so the account can run the Python under /root,
    which other users cannot read.
    """

    def __init__(self, name: str, shell: str = "/bin/bash", root_alias: bool = True) -> None:
        self.name = name
        self.shell = shell
        self.home = Path(tempfile.mkdtemp(prefix=f"pyaddprocs-home-{name}-"))
        os.chmod(self.home, 0o755)
        command = ["useradd", "-M", "-d", str(self.home), "-s", shell]
        if root_alias:
            command += ["-o", "-u", "0", "-g", "0"]
        try:
            subprocess.run([*command, name], check=True, capture_output=True)
        except subprocess.CalledProcessError as err:
            shutil.rmtree(self.home, ignore_errors=True)
            raise RuntimeError(f"useradd {name} failed: {err.stderr.decode(errors='replace').strip()}") from err
        # useradd leaves the account locked, which sshd refuses without PAM.
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)

    def set_password(self, password: str) -> None:
        """Give the account a password (for a password-only login)."""
        subprocess.run(["chpasswd"], input=f"{self.name}:{password}\n", text=True, check=True)

    def remove(self) -> None:
        """Delete the account and its home directory."""
        subprocess.run(["userdel", "-f", self.name], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)
