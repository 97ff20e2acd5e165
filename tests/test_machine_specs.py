"""Machine specs are parsed, merged and rejected before any ssh runs."""

from __future__ import annotations

import pytest

from pyaddprocs.managers.machines import Endpoint, parse_machines, parse_spec


@pytest.mark.parametrize("spec, user, host, port, bind", [
    ("127.0.0.1", None, "127.0.0.1", None, None),
    ("127.0.0.1:80", None, "127.0.0.1", 80, None),
    ("host:1", None, "host", 1, None),
    ("host:65535", None, "host", 65535, None),
    ("alice@host", "alice", "host", None, None),
    ("alice@host:2222 10.1.2.3", "alice", "host", 2222, Endpoint("10.1.2.3")),
    ("alice@host:2222 10.1.2.3:9300", "alice", "host", 2222, Endpoint("10.1.2.3", 9300)),
    ("[2001:db8::1]", None, "2001:db8::1", None, None),
    ("[2001:db8::1]:443", None, "2001:db8::1", 443, None),
    ("[::1]:2222", None, "::1", 2222, None),
    ("user@[::1]:2222 [::1]:9300", "user", "::1", 2222, Endpoint("::1", 9300)),
    ("  host   127.0.0.1  ", None, "host", None, Endpoint("127.0.0.1")),
])
def test_valid_spec_parses(spec, user, host, port, bind):
    parsed = parse_spec(spec)
    assert parsed.user == user
    assert parsed.ssh == Endpoint(host, port)
    assert parsed.bind == bind


@pytest.mark.parametrize("spec, fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("host:0", "invalid port 0"),
    ("host:65536", "invalid port 65536"),
    ("host:-1", "invalid port '-1'"),
    ("host:http", "invalid port 'http'"),
    ("[2001:db8::1", "missing ']'"),
    ("[2001:db8::1]:443:888", "unexpected"),
    ("2001:db8::1", "too many ':'"),
    ("a:b:c", "too many ':'"),
    ("@host", "empty user"),
    ("host bind.example.org", "must be an IP address"),
    ("host 10.0.0.1:99999", "invalid port 99999"),
    ("host 10.0.0.1 extra", "expected"),
    ("[not-v6]:22", "not an IPv6 address"),
])
def test_invalid_spec_raises_naming_it(spec, fragment):
    with pytest.raises(ValueError) as raised:
        parse_machines([spec])
    assert fragment in str(raised.value)
    assert repr(spec) in str(raised.value)


@pytest.mark.parametrize("count", [0, -2, 1.5, "4", "all", True, None])
def test_invalid_count_raises(count):
    with pytest.raises(ValueError, match="invalid count"):
        parse_machines([("host", count)])


def test_repeated_specs_add_up():
    specs = parse_machines(["a", "b", ("a", 3), "a  ", ("b", "auto")])
    assert [(s.ssh.host, s.count, s.auto) for s in specs] == [("a", 5, False), ("b", 1, True)]


def test_spec_order_is_kept():
    specs = parse_machines(["z", "a", "m"])
    assert [s.ssh.host for s in specs] == ["z", "a", "m"]


def test_single_string_is_not_a_machine_list():
    with pytest.raises(ValueError, match="list of specs"):
        parse_machines("host")


def test_ipv6_destination_has_no_brackets():
    assert parse_spec("me@[::1]:22").destination == "me@::1"
    assert str(parse_spec("[::1]:22").ssh) == "[::1]:22"
