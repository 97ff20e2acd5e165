"""Machine specs: ``"[user@]host[:port] [bind_addr[:port]]"``, alone or as ``(spec, count)``.

``host`` and ``bind_addr`` may be IPv6 literals in brackets (``"user@[::1]:2222
[::1]:9300"``). ``count`` is a positive int or ``"auto"`` (as many workers as the
remote process may use CPUs). The same spec given several times adds up: ``["h", "h"]``
is two workers on h, and ``[("h", "auto"), "h"]`` is one more than h's CPU count.

Everything is checked before any ssh runs; an invalid spec raises ValueError that
names it. Differences from Julia's parser, on purpose: ``user@[v6]`` works, a bind
address may be IPv6, and specs keep the order of the list.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable

AUTO = "auto"


@dataclass(frozen=True)
class Endpoint:
    """A host (name or literal address) and an optional port."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass
class MachineSpec:
    """One machine to start workers on: where to log in, where workers bind, how many."""

    spec: str
    user: str | None
    ssh: Endpoint
    bind: Endpoint | None
    count: int = 1           # workers beyond the automatic ones
    auto: bool = False       # start one worker per usable CPU as well

    @property
    def destination(self) -> str:
        """Return the ssh destination: ``user@host`` or ``host`` (IPv6 without brackets)."""
        return f"{self.user}@{self.ssh.host}" if self.user else self.ssh.host


def _parse_port(text: str, spec: str) -> int:
    if not text.isdigit():
        raise ValueError(f"invalid port {text!r} in machine spec {spec!r}: expected a number 1..65535")
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port} in machine spec {spec!r}: expected 1..65535")
    return port


def parse_endpoint(text: str, spec: str) -> Endpoint:
    """Parse ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if not text:
        raise ValueError(f"invalid machine spec {spec!r}: empty host")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"invalid machine spec {spec!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid machine spec {spec!r}: {host!r} in brackets is not an IPv6 address") from None
        if not rest:
            return Endpoint(host)
        if not rest.startswith(":") or ":" in rest[1:]:
            raise ValueError(f"invalid machine spec {spec!r}: unexpected {rest!r} after ']'")
        return Endpoint(host, _parse_port(rest[1:], spec))
    if "]" in text:
        raise ValueError(f"invalid machine spec {spec!r}: ']' without '['")
    parts = text.split(":")
    if len(parts) > 2:
        raise ValueError(
            f"invalid machine spec {spec!r}: too many ':'; put IPv6 addresses in brackets, as in [::1]:22"
        )
    if not parts[0]:
        raise ValueError(f"invalid machine spec {spec!r}: empty host")
    return Endpoint(parts[0], _parse_port(parts[1], spec) if len(parts) == 2 else None)


def parse_spec(spec: str) -> MachineSpec:
    """Parse one spec string (count 1)."""
    if not isinstance(spec, str):
        raise ValueError(f"invalid machine spec {spec!r}: expected a string")
    words = spec.split()
    if not words:
        raise ValueError(f"invalid machine spec {spec!r}: empty")
    if len(words) > 2:
        raise ValueError(f"invalid machine spec {spec!r}: expected '[user@]host[:port] [bind_addr[:port]]'")
    login = words[0]
    user = None
    if "@" in login:
        user, _, login = login.rpartition("@")
        if not user:
            raise ValueError(f"invalid machine spec {spec!r}: empty user name before '@'")
    ssh = parse_endpoint(login, spec)
    bind = None
    if len(words) == 2:
        bind = parse_endpoint(words[1], spec)
        try:
            ipaddress.ip_address(bind.host)
        except ValueError:
            raise ValueError(
                f"invalid machine spec {spec!r}: bind address {bind.host!r} must be an IP address"
            ) from None
    return MachineSpec(spec, user, ssh, bind)


def _parse_count(count: Any, spec: str) -> tuple[int, bool]:
    if count == AUTO:
        return 0, True
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"invalid count {count!r} for machine spec {spec!r}: expected a positive int or 'auto'")
    return count, False


def parse_machines(machines: Iterable[Any]) -> list[MachineSpec]:
    """Parse a machine list into specs, merging repeated specs; raise ValueError on any error."""
    if isinstance(machines, (str, bytes)):
        raise ValueError(f"machines must be a list of specs, not the single string {machines!r}")
    merged: dict[str, MachineSpec] = {}
    for entry in machines:
        if isinstance(entry, tuple):
            if len(entry) != 2:
                raise ValueError(f"invalid machine entry {entry!r}: expected (spec, count)")
            spec, count_value = entry
        else:
            spec, count_value = entry, 1
        parsed = parse_spec(spec)
        count, auto = _parse_count(count_value, spec)
        key = " ".join(spec.split())
        if key in merged:
            merged[key].count += count
            merged[key].auto = merged[key].auto or auto
        else:
            parsed.count, parsed.auto = count, auto
            merged[key] = parsed
    if not merged:
        raise ValueError("the machine list is empty")
    return list(merged.values())
