"""The worker process: ``python -m pyaddprocs.worker [--bind-to ADDR[:PORT]] [--worker[=COOKIE]]``.

    launcher ── cookie line on stdin ──> worker binds its ROUTER socket
    launcher <── "pyaddprocs_worker:PORT#ADDR" on stdout ── worker
    master ══ HELLO (cookie), then JOIN ══> worker: now pid N
    master ══ calls ══> I/O loop runs each; a call that blocks gets the loop moved to a new thread
    worker stdout and stderr (fd 1 and 2, so child processes too) ──> master's stdout

The worker exits when:
- the master has not joined it within PYADDPROCS_WORKER_TIMEOUT seconds (default 60);
- the master's connection is lost, or stdin ends (the master or its ssh session died);
- the master tells it to (rmprocs).
On exit it sends SIGTERM to the processes of its own process group (the ones it
started), when it leads that group. A child that ignores SIGTERM or starts a session of
its own survives the worker.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time

log = logging.getLogger("pyaddprocs.worker")

# Without a port in --bind-to, ports are tried upwards from 9000 + (os pid % 1000), as
# Julia's workers do, so firewalls can open one fixed range.
PORT_HINT_BASE = 9000
PORT_TRIES = 100

def choose_bind_address() -> str:
    """Return the first non-link-local IPv4 address of a non-loopback interface.

    Falls back to 127.0.0.1. Reads interface addresses with the Linux SIOCGIFADDR
    ioctl, which sends nothing on the network.
    """
    candidates: list[str] = []
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return "127.0.0.1"
    with probe:
        for _, name in socket.if_nameindex():
            try:
                request = struct.pack("256s", name.encode()[:15])
                reply = fcntl.ioctl(probe.fileno(), 0x8915, request)  # SIOCGIFADDR
            except OSError:
                continue
            address = ipaddress.IPv4Address(reply[20:24])
            if not address.is_loopback:
                candidates.append(str(address))
    for address in candidates:
        if not ipaddress.IPv4Address(address).is_link_local:
            return address
    return candidates[0] if candidates else "127.0.0.1"


def announced_address() -> str:
    """Return the address to announce when listening on every interface.

    Under sshd it is the server address of this SSH connection (from SSH_CONNECTION):
    the master just reached this host there. Otherwise ``choose_bind_address()``.
    """
    fields = os.environ.get("SSH_CONNECTION", "").split()
    if len(fields) == 4:
        try:
            return str(ipaddress.ip_address(fields[2].split("%")[0]))
        except ValueError:
            log.debug("ignoring SSH_CONNECTION %r", fields)
    return choose_bind_address()


def parse_bind_to(text: str | None) -> tuple[str, int | None]:
    """Split ``ADDR[:PORT]`` (IPv6 in brackets) into (address, port or None).

    Without ``--bind-to`` the worker listens on every interface (``*``) and announces
    ``announced_address()``.
    """
    if not text:
        return "*", None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid --bind-to {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1:]
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise ValueError(f"invalid --bind-to {text!r}")
    elif text.count(":") > 1:
        host, port_text = text, None
    else:
        host, _, port_text = text.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port in --bind-to {text!r}: expected 1..65535")
        port = int(port_text)
    ipaddress.ip_address(host)  # a literal address, not a host name
    return host, port


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pyaddprocs.worker", description="A pyaddprocs worker process.")
    parser.add_argument("--bind-to", metavar="ADDR[:PORT]", help="address (and first port) to listen on")
    parser.add_argument("--worker", metavar="COOKIE", nargs="?", const=None, default=None,
                        help="cluster cookie; read from the first line of stdin when absent or empty of value")
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    # "--worker=" (an empty cookie) differs from a bare "--worker" (read stdin).
    args.cookie_given = any(a.startswith("--worker=") for a in raw)
    return args


def _watch_stdin() -> None:
    from .worker_control import request_exit

    # The launcher keeps our stdin open; end of file means it (or its ssh session) died.
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    request_exit(1, "stdin closed: the master is gone")


def _flush_output() -> None:
    from .worker_control import exit_requested

    while not exit_requested.wait(0.2):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def _wait_for_master(group, timeout: float) -> None:
    from .worker_control import exit_requested, request_exit

    if not group.joined.wait(timeout) and not exit_requested.is_set():
        request_exit(1, f"master process (pid 1) did not connect within {timeout:g} seconds")


def _end_process_group() -> None:
    if os.getpgrp() != os.getpid():
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(os.getpid(), signal.SIGTERM)
    except OSError as err:
        log.debug("could not signal the worker's process group: %s", err)


def main(argv: list[str] | None = None) -> int:
    """Run a worker until the master removes it or goes away; return the exit code."""
    from .join import connect_lazily
    from .process_group import ProcessGroup, set_group
    from .settings import worker_timeout
    from .worker_control import exit_requested, request_exit

    logging.basicConfig(level=os.environ.get("PYADDPROCS_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    args = _parse_args(argv)
    timeout = worker_timeout()
    if args.cookie_given:
        cookie = args.worker or ""
        cookie_from_stdin = False
    else:
        cookie = sys.stdin.readline().rstrip("\r\n")
        cookie_from_stdin = True
    host, port = parse_bind_to(args.bind_to)

    group = ProcessGroup("worker", cookie)
    set_group(group)
    if port is None:
        bound = group.node.bind(host, PORT_HINT_BASE + os.getpid() % 1000, port_range=PORT_TRIES)
    else:
        bound = group.node.bind(host, port, port_range=PORT_TRIES)
    group.node.lazy_connector = connect_lazily
    group.on_master_lost = lambda reason: request_exit(1, f"lost the connection to the master: {reason}")
    group.node.start()

    announced = announced_address() if host == "*" else host
    announced_text = f"[{announced}]" if ":" in announced else announced
    sys.stdout.write(f"pyaddprocs_worker:{bound}#{announced_text}\n")
    sys.stdout.flush()
    # From here on, stderr (also of child processes) goes where stdout goes: to the master.
    os.dup2(1, 2)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)

    if cookie_from_stdin:
        threading.Thread(target=_watch_stdin, name="pyaddprocs-stdin", daemon=True).start()
    threading.Thread(target=_flush_output, name="pyaddprocs-flush", daemon=True).start()
    threading.Thread(target=_wait_for_master, args=(group, timeout), name="pyaddprocs-join-timeout", daemon=True).start()
    signal.signal(signal.SIGINT, lambda signum, frame: group.runner.interrupt_all())
    signal.signal(signal.SIGTERM, lambda signum, frame: request_exit(0, "SIGTERM"))

    while not exit_requested.wait(0.5):
        pass
    time.sleep(0.05)  # let a last RESULT leave the I/O thread
    group.node.close()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _end_process_group()
    from . import worker_control
    os._exit(worker_control.exit_code)


if __name__ == "__main__":
    sys.exit(main())
