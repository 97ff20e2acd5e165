"""SSH port forwards from the master to workers it cannot reach directly (``tunnel=True``).

    master node ──> 127.0.0.1:LOCAL ══ ssh -L (or a paramiko channel) ══> worker host ──> ADDR:PORT

Three ways to open one forward:

- ``open_openssh_tunnel``: a dedicated ``ssh -N -L`` process (a second login).
- ``open_multiplexed_tunnel``: ``ssh -O forward`` through the ControlMaster socket of the
  worker's own login session (``multiplex=True``), so no second login is needed.
- ``open_paramiko_tunnel``: a local listening socket whose connections are relayed over
  ``direct-tcpip`` channels of an existing paramiko transport.

pyzmq ships ``zmq.ssh.tunnel`` for this, and it is not used. In pyzmq 27.3 its OpenSSH
path needs pexpect (an extra dependency) and answers prompts through it, and it runs
``ssh -f ... -L 127.0.0.1:LPORT:IP:RPORT SERVER sleep TIMEOUT``, so the forward lives only
as long as that ``sleep``. Its free port is picked before ssh binds it, so another
process can take it first. Here the ssh process belongs to the caller and lives until
``close()``. ssh runs with ``BatchMode`` and ``ExitOnForwardFailure``, so it never
prompts and fails when it cannot bind; a port taken in between is retried with another
one, and IPv6 targets are bracketed as ssh expects.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

# A forward whose local port was taken in the meantime is retried this often.
PORT_RETRIES = 5
_SSH_OPTIONS = ["-N", "-T", "-a", "-x", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5"]


class TunnelError(ConnectionError):
    """An SSH forward could not be opened; the message includes ssh's output."""


def _free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _forward_spec(local_port: int, host: str, port: int) -> str:
    target = f"[{host}]" if ":" in host else host
    return f"127.0.0.1:{local_port}:{target}:{port}"


def _wait_listening(port: int, process: subprocess.Popen | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Tunnel:
    """One open forward: connect to ``127.0.0.1:local_port`` to reach the remote address."""

    def __init__(self, local_port: int, description: str) -> None:
        self.local_port = local_port
        self.description = description

    def close(self) -> None:
        """Close the forward."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class _ProcessTunnel(Tunnel):
    def __init__(self, local_port: int, description: str, process: subprocess.Popen) -> None:
        super().__init__(local_port, description)
        self.process = process

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        log.debug("closed %r", self)


def open_openssh_tunnel(ssh: str, sshflags: list[str], destination: str, ssh_port: int | None,
                        host: str, port: int, timeout: float = 15.0) -> Tunnel:
    """Forward a free local port to ``host:port`` as seen from ``destination``, with ``ssh -N -L``."""
    last_output = ""
    for attempt in range(PORT_RETRIES):
        local_port = _free_local_port()
        command = [ssh, *_SSH_OPTIONS, *sshflags]
        if ssh_port is not None:
            command += ["-p", str(ssh_port)]
        command += ["-L", _forward_spec(local_port, host, port), destination]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        if _wait_listening(local_port, process, timeout):
            tunnel = _ProcessTunnel(local_port, f"127.0.0.1:{local_port} -> {destination} -> {host}:{port}", process)
            log.info("opened SSH tunnel %s", tunnel.description)
            return tunnel
        _ProcessTunnel(local_port, "", process).close()
        last_output = process.stdout.read().decode("utf-8", errors="replace") if process.stdout else ""
        if "Address already in use" not in last_output and "cannot listen" not in last_output:
            break
        log.warning("local port %d was taken before ssh could bind it; retrying (%d)", local_port, attempt + 1)
    raise TunnelError(f"could not open an SSH tunnel to {host}:{port} through {destination}: {last_output.strip() or 'timed out'}")


class _MultiplexedTunnel(Tunnel):
    def __init__(self, local_port: int, description: str, cancel_command: list[str]) -> None:
        super().__init__(local_port, description)
        self.cancel_command = cancel_command

    def close(self) -> None:
        result = subprocess.run(self.cancel_command, capture_output=True, text=True, timeout=15)
        if result.returncode != 0:
            log.info("cancelling the forward %s: %s", self.description, result.stderr.strip())


def open_multiplexed_tunnel(ssh: str, sshflags: list[str], destination: str, host: str, port: int,
                            timeout: float = 15.0) -> Tunnel:
    """Add a forward to the ControlMaster session that ``sshflags`` name (``ssh -O forward``).

    ``sshflags`` must carry the same ControlPath (and port) as the login session.
    """
    last_error = ""
    for attempt in range(PORT_RETRIES):
        local_port = _free_local_port()
        spec = _forward_spec(local_port, host, port)
        base = [ssh, *sshflags, "-o", "BatchMode=yes"]
        result = subprocess.run([*base, "-O", "forward", "-L", spec, destination],
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode == 0 and _wait_listening(local_port, None, timeout):
            tunnel = _MultiplexedTunnel(local_port, f"127.0.0.1:{local_port} -> {destination} -> {host}:{port}",
                                        [*base, "-O", "cancel", "-L", spec, destination])
            log.info("opened multiplexed SSH tunnel %s", tunnel.description)
            return tunnel
        last_error = (result.stderr or result.stdout).strip()
        log.warning("ssh -O forward to %s:%d failed (%s); retrying (%d)", host, port, last_error, attempt + 1)
    raise TunnelError(f"could not add a forward to {host}:{port} through the ssh control socket for {destination}: {last_error}")


class _ParamikoTunnel(Tunnel):
    def __init__(self, transport: Any, host: str, port: int) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        super().__init__(self._listener.getsockname()[1], f"127.0.0.1:{self._listener.getsockname()[1]} -> {host}:{port}")
        self._transport = transport
        self._target = (host, port)
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="pyaddprocs-tunnel", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, origin = self._listener.accept()
            except OSError:
                return
            try:
                channel = self._transport.open_channel("direct-tcpip", self._target, origin)
            except Exception as err:
                # Expected while a removed worker's connection retries after its session closed.
                log.info("paramiko could not open a channel to %s:%d: %s", *self._target, err)
                client.close()
                continue
            threading.Thread(target=self._relay, args=(client, channel), name="pyaddprocs-tunnel-relay",
                             daemon=True).start()

    def _relay(self, client: socket.socket, channel: Any) -> None:
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select([client, channel], [], [], 0.5)
                for source, sink in ((client, channel), (channel, client)):
                    if source in readable:
                        data = source.recv(65536)
                        if not data:
                            return
                        sink.sendall(data)
        except OSError as err:
            log.debug("tunnel relay to %s:%d ended: %s", *self._target, err)
        finally:
            client.close()
            channel.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


def open_paramiko_tunnel(transport: Any, host: str, port: int) -> Tunnel:
    """Forward a local port to ``host:port`` over ``direct-tcpip`` channels of ``transport``."""
    tunnel = _ParamikoTunnel(transport, host, port)
    log.info("opened paramiko tunnel %s", tunnel.description)
    return tunnel


def short_control_path(directory: str) -> str:
    """Return a ControlPath template in ``directory`` that stays under the socket path limit."""
    return os.path.join(directory, "%C")
