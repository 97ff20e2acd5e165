"""SSHManager: workers on other machines, started over SSH.

    addprocs(["user@host:22", ("host2", 4), ("host3", "auto")], ...)
      parse every spec (ValueError before any ssh runs)
      per machine, in parallel:
        count "auto": one login runs python to count the CPUs it may use
        per worker, at most `max_parallel` logins to the host at a time:
          ssh ... host "sh -l -c 'cd ...; export ...; exec python -m pyaddprocs.worker'"
          write the cookie to ssh's stdin (unless cmdline_cookie=True)
          read the announcement line; the login is done, the next one may start
      each worker is one ssh session; its output comes back on ssh's stdout

ssh runs with ``-T -a -x -o ClearAllForwardings=yes -o BatchMode=yes`` and a
ConnectTimeout: no terminal, no agent or X11 forwarding, no forwards from ssh_config,
and a host that asks for a password fails at once instead of waiting on a prompt.
``ssh="paramiko"`` does the same in process with paramiko, reading ~/.ssh/config, the
agent and the default keys.

Deviations from Julia's SSHManager, on purpose: ``max_parallel`` caps the logins
(Julia only caps tunnels); ``dir=None`` starts in the remote home directory instead of
the master's working directory, which rarely exists on another machine; a failed
``cd`` fails the launch instead of starting elsewhere.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any

from transport_zmq.tunnel import (
    open_multiplexed_tunnel, open_openssh_tunnel, open_paramiko_tunnel, short_control_path,
)

from ..errors import LaunchError
from .base import ClusterManager, WorkerConfig
from .local import BLAS_THREAD_VARIABLES, EXIT_GRACE, TERM_GRACE
from .machines import MachineSpec, parse_machines
from .shell_commands import SHELLS, quote_posix, remote_command, split_flags

log = logging.getLogger(__name__)

# Seconds ssh may take to open the TCP connection to a host.
CONNECT_TIMEOUT = 5

BASE_SSH_OPTIONS = ["-T", "-a", "-x", "-o", "ClearAllForwardings=yes", "-o", "BatchMode=yes",
                    "-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]

# A login that sshd dropped before the key exchange (MaxStartups) is tried again this
# many times, after LOGIN_RETRY_DELAY seconds, doubling each time.
LOGIN_RETRIES = 4
LOGIN_RETRY_DELAY = 0.25

_CPU_PROBE = "import os; print('pyaddprocs_cpus:%d' % len(os.sched_getaffinity(0)))"


class SSHManager(ClusterManager):
    """Starts workers on the machines of ``machines`` over SSH (see the module docstring)."""

    def __init__(self, machines: list[Any]) -> None:
        self.machines = list(machines)
        self.specs: list[MachineSpec] = parse_machines(self.machines)
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self._control_directory: str | None = None

    def _control_path(self) -> str:
        """Return the ControlPath for multiplex=True, in a private directory of this manager."""
        with self._lock:
            if self._control_directory is None:
                # Short and private: a Unix socket path has a limit of about 100 bytes.
                self._control_directory = tempfile.mkdtemp(prefix="pyap-ssh-")
            return short_control_path(self._control_directory)

    def __repr__(self) -> str:
        return f"SSHManager(machines={self.machines!r})"

    def default_params(self) -> dict[str, Any]:
        """Return SSHManager's own keywords with their defaults."""
        return {
            "tunnel": False, "multiplex": False, "ssh": "ssh", "sshflags": (), "max_parallel": 10,
            "shell": "posix", "cmdline_cookie": False,
        }

    # -- launching ---------------------------------------------------------------------

    def launch(self, params: dict[str, Any], launched: "queue.Queue[WorkerConfig]") -> None:
        """Start the workers of every machine; raise LaunchError naming the machines that failed."""
        self.check_params(params)
        errors: list[tuple[MachineSpec, BaseException]] = []
        threads = []
        for spec in self.specs:
            thread = threading.Thread(target=self._launch_machine, args=(spec, params, launched, errors),
                                      name=f"pyaddprocs-ssh-{spec.ssh.host}", daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        if errors:
            spec, first = errors[0]
            text, output = _split_error(first)
            message = f"could not start workers on {spec.spec!r}: {text}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more failures on " + ", ".join(repr(s.spec) for s, _ in errors[1:]) + ")"
            raise LaunchError(message, output) from first

    def check_params(self, params: dict[str, Any]) -> None:
        """Validate SSHManager's keywords (ValueError or TypeError naming the value)."""
        if params["shell"] not in SHELLS:
            raise ValueError(f"invalid shell {params['shell']!r}: expected one of {', '.join(SHELLS)}")
        parallel = params["max_parallel"]
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"invalid max_parallel {parallel!r}: expected a positive int")
        if not isinstance(params["ssh"], str) or not params["ssh"]:
            raise TypeError(f"ssh must be the ssh executable or 'paramiko', not {params['ssh']!r}")
        params["sshflags"] = split_flags(params["sshflags"], "sshflags")
        if params["multiplex"] and params["ssh"] == "paramiko":
            raise ValueError("multiplex=True shares one OpenSSH login through a ControlMaster; "
                             "it does not work with ssh='paramiko'")

    def _semaphore(self, spec: MachineSpec, limit: int) -> threading.BoundedSemaphore:
        key = f"{spec.ssh.host}:{spec.ssh.port}"
        with self._lock:
            if key not in self._semaphores:
                self._semaphores[key] = threading.BoundedSemaphore(limit)
            return self._semaphores[key]

    def _launch_machine(self, spec: MachineSpec, params: dict, launched: queue.Queue, errors: list) -> None:
        try:
            logins = self._semaphore(spec, params["max_parallel"])
            count = spec.count
            if spec.auto:
                with logins:
                    count += self._probe_cpus(spec, params)
            failures: list[BaseException] = []
            threads = [
                threading.Thread(target=self._launch_worker_guarded,
                                 args=(spec, index, count, params, launched, logins, failures), daemon=True)
                for index in range(count)
            ]
            if params["multiplex"] and threads:
                # The first login becomes the ControlMaster; logins started at the same
                # time would each try to, and all but one would go without it.
                threads[0].start()
                threads[0].join()
            for thread in threads:
                if not thread.is_alive() and thread.ident is None:
                    thread.start()
            for thread in threads:
                thread.join()
            if failures:
                first = failures[0]
                if len(failures) > 1:
                    text, output = _split_error(first)
                    raise LaunchError(f"{len(failures)} of {count} workers failed; the first: {text}", output) from first
                raise first
        except BaseException as err:
            log.info("launch on %s failed: %s", spec.spec, err)
            errors.append((spec, err))

    def _launch_worker_guarded(self, spec, index, count, params, launched, logins, failures) -> None:
        try:
            with logins:
                config = self._launch_worker(spec, index, count, params)
            launched.put(config)
        except BaseException as err:
            failures.append(err)

    def _program(self, spec: MachineSpec, index: int, params: dict, cookie: str) -> list[str]:
        program = [params["exename"], *params["exeflags"], "-m", "pyaddprocs.worker"]
        if spec.bind is not None:
            host = f"[{spec.bind.host}]" if ":" in spec.bind.host else spec.bind.host
            bind = host if spec.bind.port is None else f"{host}:{min(spec.bind.port + index, 65535)}"
            program += ["--bind-to", bind]
        program.append(f"--worker={cookie}" if params["cmdline_cookie"] else "--worker")
        return program

    @staticmethod
    def _environment(params: dict) -> dict[str, str]:
        env = dict(params["env"])
        timeout = os.environ.get("PYADDPROCS_WORKER_TIMEOUT")
        if timeout and "PYADDPROCS_WORKER_TIMEOUT" not in env:
            env["PYADDPROCS_WORKER_TIMEOUT"] = timeout
        if not params["enable_threaded_blas"]:
            for name in BLAS_THREAD_VARIABLES:
                env.setdefault(name, "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _launch_worker(self, spec: MachineSpec, index: int, count: int, params: dict) -> WorkerConfig:
        # sshd drops connections beyond its MaxStartups before the key exchange; such a
        # login is retried after a short pause instead of failing the worker.
        for attempt in range(LOGIN_RETRIES + 1):
            try:
                return self._launch_worker_once(spec, index, count, params)
            except LaunchError as err:
                if attempt == LOGIN_RETRIES or not _dropped_before_login(err.output):
                    raise
                delay = LOGIN_RETRY_DELAY * 2 ** attempt
                log.warning("sshd on %s dropped a login before key exchange (%s); retrying in %.1f s",
                            spec.spec, err.output.strip().splitlines()[-1], delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _launch_worker_once(self, spec: MachineSpec, index: int, count: int, params: dict) -> WorkerConfig:
        from ..process_group import get_group
        from ..settings import worker_timeout

        cookie = get_group().cookie
        program = self._program(spec, index, params, cookie)
        command = remote_command(params["shell"], program, params["dir"], self._environment(params))
        session = _open_session(params["ssh"], self._session_flags(params), spec, command)
        if not params["cmdline_cookie"]:
            session.write_line(cookie)
        config = WorkerConfig(
            io=session.stdout, host=spec.destination, count=count, exename=params["exename"],
            exeflags=list(params["exeflags"]), sshflags=self._session_flags(params),
            max_parallel=params["max_parallel"], enable_threaded_blas=params["enable_threaded_blas"],
            process=session, tunnel=params["tunnel"], multiplex=params["multiplex"],
        )
        config.environ["spec"] = spec
        config.environ["ssh"] = params["ssh"]
        from ..launch import OutputForwarder

        config.output = OutputForwarder(session.stdout, f"{spec.ssh.host}#{index}")
        try:
            host, port = config.output.read_announcement(worker_timeout())
        except LaunchError as err:
            session.close()
            raise _explain(err, spec, params) from None
        config.bind_addr, config.port = host, port
        config.environ["ssh_host"] = spec.ssh.host
        log.info("worker %d of %d on %s announced %s:%d", index + 1, count, spec.spec, host, port)
        return config

    def _probe_cpus(self, spec: MachineSpec, params: dict) -> int:
        command = remote_command(params["shell"], [params["exename"], "-c", _CPU_PROBE], None, {})
        session = _open_session(params["ssh"], params["sshflags"], spec, command)
        try:
            output = session.read_all(timeout=CONNECT_TIMEOUT * 4)
        finally:
            session.close()
        match = re.search(r"pyaddprocs_cpus:(\d+)", output)
        if match is None:
            raise LaunchError(f"could not count the CPUs on {spec.spec!r} for count='auto'", output)
        return int(match.group(1))

    # -- the rest of the ClusterManager interface --------------------------------------

    def _session_flags(self, params: dict) -> list[str]:
        flags = list(params["sshflags"])
        if params["multiplex"]:
            # The first login to a host becomes the ControlMaster, later logins and the
            # tunnels reuse it; it ends with the last session (ControlPersist=no).
            flags += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control_path()}",
                      "-o", "ControlPersist=no"]
        return flags

    def connect(self, pid: int, config: WorkerConfig) -> tuple[str, int]:
        """Return the address to connect to: the announced one, or a local tunnel end."""
        if not config.tunnel:
            return config.bind_addr, int(config.port)
        spec: MachineSpec = config.environ["spec"]
        host, port = config.bind_addr, int(config.port)
        if config.environ["ssh"] == "paramiko":
            tunnel = open_paramiko_tunnel(config.process.client.get_transport(), host, port)
        elif config.multiplex:
            flags = [*config.sshflags, *(["-p", str(spec.ssh.port)] if spec.ssh.port else [])]
            tunnel = open_multiplexed_tunnel(config.environ["ssh"], flags, spec.destination, host, port)
        else:
            with self._semaphore(spec, config.max_parallel or 10):
                tunnel = open_openssh_tunnel(config.environ["ssh"], config.sshflags, spec.destination,
                                             spec.ssh.port, host, port)
        config.environ["tunnel"] = tunnel
        config.forward = f"{tunnel.local_port}:{host}:{port}"
        return "127.0.0.1", tunnel.local_port

    def fallback_address(self, config: WorkerConfig) -> str | None:
        """Return the address used for SSH, tried when the announced one cannot be reached."""
        host = config.environ.get("ssh_host")
        if config.tunnel or not host or host == config.bind_addr:
            return None
        return host

    def manage(self, pid: int, config: WorkerConfig, op: str) -> None:
        """Interrupt running calls through the cluster connection (no extra login); close
        the tunnel of a worker that is gone."""
        if op == "deregister":
            self.manage_deregister(config)
        if op == "interrupt":
            from transport_zmq import MessageKind

            from ..process_group import get_group
            from ..worker_control import interrupt_calls

            try:
                get_group().start_call(MessageKind.REMOTE_DO, pid, interrupt_calls, (), {})
            except ConnectionError as err:
                log.info("could not interrupt worker %d: %s", pid, err)

    def kill(self, pid: int, config: WorkerConfig) -> None:
        """Ask the worker to exit, then end its ssh session (which ends the worker too)."""
        super().kill(pid, config)
        session = config.process
        if session is not None:
            session.finish(EXIT_GRACE)
        self._close_tunnel(config)

    def manage_deregister(self, config: WorkerConfig) -> None:
        """Close what belongs to a worker that is gone."""
        self._close_tunnel(config)

    def _close_tunnel(self, config: WorkerConfig) -> None:
        tunnel = config.environ.pop("tunnel", None)
        if tunnel is not None:
            try:
                tunnel.close()
            except Exception as err:
                log.warning("could not close the tunnel %r: %s", tunnel, err)
        if self._control_directory is not None:
            try:
                os.rmdir(self._control_directory)  # succeeds once the last control socket is gone
            except OSError:
                pass


def _dropped_before_login(output: str) -> bool:
    """Return True when ssh's output shows sshd closed the connection before the key exchange."""
    return "kex_exchange_identification" in output


def _split_error(error: BaseException) -> tuple[str, str]:
    """Return an error's message without the launch output, and that output."""
    if isinstance(error, LaunchError):
        return str(error).split(LaunchError.OUTPUT_HEADING)[0], error.output
    return f"{type(error).__name__}: {error}", ""


def _explain(error: LaunchError, spec: MachineSpec, params: dict) -> LaunchError:
    message, output = _split_error(error)
    message = f"worker on {spec.spec!r}: {message}"
    lowered = output.lower()
    if params["exename"] in output and ("not found" in lowered or "no such file" in lowered):
        message += f" (the interpreter {params['exename']!r} does not exist there; pass exename= with its path on that host)"
    elif "no module named pyaddprocs" in lowered:
        message += f" (pyaddprocs is not installed for {params['exename']!r} on that host)"
    return type(error)(message, output)


# -- ssh sessions ------------------------------------------------------------------------


class _OpenSSHSession:
    """A worker's ssh client process; stdout carries stderr too."""

    def __init__(self, argv: list[str]) -> None:
        log.debug("running %s", " ".join(quote_posix(a) for a in argv[:-1]))
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.stdout = self.process.stdout
        self.pid = self.process.pid

    def write_line(self, text: str) -> None:
        try:
            self.process.stdin.write(text.encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            log.debug("ssh (os pid %d) exited before reading the cookie", self.process.pid)

    def read_all(self, timeout: float) -> str:
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            output = b""
        return (output or b"").decode("utf-8", errors="replace")

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.close()

    def finish(self, grace: float) -> None:
        """Wait ``grace`` seconds for ssh to end by itself, then terminate it."""
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("ssh session (os pid %d) still open after %g s; terminating it", self.process.pid, grace)
            self.close()
        self._close_stdin()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=TERM_GRACE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=TERM_GRACE)
        self._close_stdin()

    def _close_stdin(self) -> None:
        try:
            self.process.stdin.close()
        except OSError:
            pass


def _open_session(ssh: str, sshflags: list[str], spec: MachineSpec, command: str):
    if ssh == "paramiko":
        from .paramiko_session import ParamikoSession

        return ParamikoSession(sshflags, spec, command, CONNECT_TIMEOUT)
    argv = [ssh, *BASE_SSH_OPTIONS, *sshflags]
    if spec.ssh.port is not None:
        argv += ["-p", str(spec.ssh.port)]
    argv += [spec.destination, command]
    try:
        return _OpenSSHSession(argv)
    except OSError as err:
        raise LaunchError(f"could not run the ssh client {ssh!r}: {err}") from err


__all__ = ["SSHManager", "split_flags"]
