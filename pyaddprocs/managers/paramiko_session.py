"""A worker's SSH session through paramiko, for ``addprocs(machines, ssh="paramiko")``.

It reads what OpenSSH would: ``~/.ssh/config`` (or ``-F FILE`` from ``sshflags``) for
HostName, User, Port and IdentityFile; the agent and the default keys; and
``-i``, ``-p``, ``-l`` and ``-o StrictHostKeyChecking=`` / ``-o UserKnownHostsFile=``
from ``sshflags``. Host keys are checked as ``StrictHostKeyChecking`` says: ``no``,
``off`` and ``accept-new`` accept an unknown host key, anything else rejects it (there
is no prompt, as with OpenSSH's BatchMode).
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time

import paramiko

from ..errors import LaunchError
from .machines import MachineSpec

log = logging.getLogger(__name__)


def _flag_value(flags: list[str], name: str) -> list[str]:
    values = []
    for index, flag in enumerate(flags):
        if flag == name and index + 1 < len(flags):
            values.append(flags[index + 1])
        elif flag.startswith(name) and len(flag) > len(name):
            values.append(flag[len(name):])
    return values


def _options(flags: list[str]) -> dict[str, str]:
    options = {}
    for value in _flag_value(flags, "-o"):
        key, _, setting = value.partition("=")
        options[key.strip().lower()] = setting.strip()
    return options


def _load_config(flags: list[str]) -> paramiko.SSHConfig:
    files = _flag_value(flags, "-F") or [os.path.expanduser("~/.ssh/config")]
    path = files[-1]
    if path != "none" and os.path.exists(path):
        return paramiko.SSHConfig.from_path(path)
    return paramiko.SSHConfig()


class ParamikoSession:
    """One remote command run through a paramiko SSHClient; stdout carries stderr too."""

    def __init__(self, sshflags: list[str], spec: MachineSpec, command: str, connect_timeout: float) -> None:
        options = _options(sshflags)
        host_config = _load_config(sshflags).lookup(spec.ssh.host)
        hostname = host_config.get("hostname", spec.ssh.host)
        ports = _flag_value(sshflags, "-p")
        port = spec.ssh.port or (int(ports[-1]) if ports else int(host_config.get("port", 22)))
        users = _flag_value(sshflags, "-l")
        user = spec.user or (users[-1] if users else host_config.get("user") or getpass.getuser())
        keys = [os.path.expanduser(k) for k in host_config.get("identityfile", [])] + _flag_value(sshflags, "-i")
        strict = options.get("stricthostkeychecking", host_config.get("stricthostkeychecking", "ask")).lower()
        known_hosts = options.get("userknownhostsfile", host_config.get("userknownhostsfile", ""))

        client = paramiko.SSHClient()
        if known_hosts != "/dev/null":
            client.load_system_host_keys()
            if known_hosts and os.path.exists(os.path.expanduser(known_hosts)):
                client.load_host_keys(os.path.expanduser(known_hosts))
        if strict in ("no", "off", "accept-new"):
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                hostname, port, username=user, key_filename=[k for k in keys if os.path.exists(k)] or None,
                timeout=connect_timeout, banner_timeout=connect_timeout, auth_timeout=connect_timeout,
                allow_agent=True, look_for_keys=True,
            )
            channel = client.get_transport().open_session()
            channel.set_combine_stderr(True)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, socket.error, EOFError) as err:
            client.close()
            raise LaunchError(f"paramiko could not run the worker on {user}@{hostname}:{port}: {type(err).__name__}: {err}") from err
        self.client = client
        self.channel = channel
        self.stdout = channel.makefile("rb")
        self._stdin = channel.makefile_stdin("wb")
        self.pid = None

    def write_line(self, text: str) -> None:
        """Send one line to the remote command's stdin."""
        try:
            self._stdin.write(text.encode() + b"\n")
            self._stdin.flush()
        except (OSError, paramiko.SSHException) as err:
            log.debug("could not write to the paramiko channel: %s", err)

    def read_all(self, timeout: float) -> str:
        """Read the command's output until it exits or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        chunks = []
        self.channel.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data = self.channel.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def poll(self) -> int | None:
        """Return the exit status once the remote command has ended, else None."""
        return self.channel.recv_exit_status() if self.channel.exit_status_ready() else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds for the remote command to end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.channel.exit_status_ready():
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return self.channel.recv_exit_status()

    def kill(self) -> None:
        """Close the session, which ends the remote worker (its stdin ends)."""
        self.close()

    def finish(self, grace: float) -> None:
        """Wait ``grace`` seconds for the command to end, then close the session."""
        if self.wait(grace) is None:
            log.warning("paramiko session still open after %g s; closing it", grace)
        self.close()

    def close(self) -> None:
        """Close the channel and the connection."""
        try:
            self.channel.close()
        finally:
            self.client.close()
