"""Topologies on local workers: lazy and eager all_to_all, master_worker and custom.

A cluster has one topology for its lifetime, and the test session already has workers,
so each test runs its own master in a subprocess and that script makes the checks.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support import script_env

MASTER_TIMEOUT = 150

PRELUDE = textwrap.dedent("""
    import itertools, os, random, sys, threading, time
    import pyaddprocs
    from pyaddprocs import *
    from pyaddprocs.errors import PeerNotConnectedError

    def call_peer(peer):
        from pyaddprocs import myid, remotecall_fetch
        return myid(), remotecall_fetch(myid, peer)

    def links_of(pid):
        return connected_peers(pid)

    def socket_links(pid):
        def here():
            from pyaddprocs.process_group import get_group
            return get_group().node.socket_links()
        return remotecall_fetch(here, pid)

    def total_links(pids):
        return sum(len(links_of(p)) for p in pids)

    def assert_no_duplicate_sockets(pids):
        for pid in pids:
            counts = socket_links(pid)
            assert all(n == 1 for n in counts.values()), (pid, counts)
            assert sorted(counts) == links_of(pid), (pid, counts, links_of(pid))
""")


def run_master(body: str) -> str:
    """Run a master script (the prelude, then ``body``) and return its stdout; it must print OK."""
    script = PRELUDE + textwrap.dedent(body) + "\nprint('OK')\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=MASTER_TIMEOUT, env=script_env())
    assert result.returncode == 0, f"master script failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.rstrip().endswith("OK"), result.stdout
    return result.stdout


def test_lazy_links_grow_two_per_pair():
    run_master("""
        pids = addprocs(8)
        assert total_links(pids) == 8
        assert all(links_of(p) == [1] for p in pids)
        pairs = random.Random(7).sample(list(itertools.combinations(pids, 2)), 10)
        for count, (a, b) in enumerate(pairs, start=1):
            assert remotecall_fetch(call_peer, a, b) == (a, b)
            assert total_links(pids) == 8 + 2 * count
        assert_no_duplicate_sockets(pids)
        rmprocs(pids)
    """)


def test_eager_links_connect_everyone():
    run_master("""
        pids = addprocs(8, lazy=False)
        assert total_links(pids) == 64
        for pid in pids:
            assert links_of(pid) == sorted([1] + [p for p in pids if p != pid])
        assert_no_duplicate_sockets(pids)
        more = addprocs(1, lazy=False)
        assert links_of(more[0]) == sorted([1] + pids)
        rmprocs(pids + more)
    """)


def test_simultaneous_first_calls_while_busy():
    run_master("""
        pids = addprocs(6)
        # Keep every worker busy in a long call while the first calls arrive.
        busy = [remotecall(time.sleep, p, 3) for p in pids]
        pairs = [(a, b) for a in pids for b in pids if a != b][:30]
        assert len(pairs) == 30
        futures = [remotecall(call_peer, a, b) for a, b in pairs]
        assert [f.fetch(timeout=60) for f in futures] == pairs
        for f in busy:
            f.wait(timeout=30)
        linked_pairs = {tuple(sorted(p)) for p in pairs}
        assert total_links(pids) == 6 + 2 * len(linked_pairs)
        assert_no_duplicate_sockets(pids)
        rmprocs(pids)
    """)


def test_master_worker_rejects_peer_send():
    run_master("""
        pids = addprocs(3, topology="master_worker")
        a, b, c = pids
        started = time.monotonic()
        try:
            remotecall_fetch(call_peer, a, b)
        except RemoteException as err:
            assert isinstance(err.exc, PeerNotConnectedError), repr(err.exc)
            assert str(err.exc) == f"peer {b} is not connected to {a} (topology: master_worker)", str(err.exc)
        else:
            raise AssertionError("worker-to-worker call succeeded under master_worker")
        assert time.monotonic() - started < 5
        assert [remotecall_fetch(myid, p) for p in pids] == pids
        assert all(links_of(p) == [1] for p in pids)
        assert remotecall_fetch(workers, c) == pids
        rmprocs(pids)
    """)


def test_custom_links_even_and_odd():
    run_master("""
        class IdentManager(LocalManager):
            # Local workers with ident = launch order (1..8); each lists ident+2, ident+4, ...
            def launch(self, params, launched):
                staged = __import__("queue").Queue()
                super().launch(params, staged)
                for ident in range(1, self.np + 1):
                    config = staged.get()
                    config.ident = ident
                    config.connect_idents = list(range(ident + 2, self.np + 1, 2))
                    launched.put(config)

        registered = {}
        class RecordingManager(IdentManager):
            def manage(self, pid, config, op):
                if op == "register":
                    registered[pid] = (config.ident, config.connect_idents)
                super().manage(pid, config, op)

        pids = addprocs(RecordingManager(8), topology="custom")
        ident_of = {pid: registered[pid][0] for pid in pids}
        assert sorted(ident_of.values()) == list(range(1, 9))
        for a in pids:
            for b in pids:
                if a == b:
                    continue
                same_parity = ident_of[a] % 2 == ident_of[b] % 2
                try:
                    assert remotecall_fetch(call_peer, a, b) == (a, b)
                    assert same_parity, (a, b)
                except RemoteException as err:
                    assert not same_parity, (a, b, err)
                    assert isinstance(err.exc, PeerNotConnectedError), repr(err.exc)
        for pid in pids:
            expected = sorted([1] + [p for p in pids if p != pid and ident_of[p] % 2 == ident_of[pid] % 2])
            assert links_of(pid) == expected, (pid, links_of(pid), expected)
        rmprocs(pids)
    """)


def test_mixing_topologies_is_rejected():
    run_master("""
        pids = addprocs(2)
        for kwargs, text in (({"topology": "master_worker"}, "Workers with topology all_to_all already exist"),
                             ({"lazy": False}, "Active workers with lazy=True. Cannot set lazy=False")):
            try:
                addprocs(1, **kwargs)
            except ValueError as err:
                assert text in str(err), str(err)
            else:
                raise AssertionError(f"addprocs with {kwargs} was accepted")
        assert workers() == pids
        rmprocs(pids)
        pids = addprocs(1, topology="master_worker")
        assert remotecall_fetch(lambda: pyaddprocs.process_group.get_group().topology, pids[0]) == "master_worker"
        rmprocs(pids)
    """)


def test_membership_same_on_workers():
    run_master("""
        first = addprocs(3)
        later = addprocs(2)
        everyone = first + later
        for pid in everyone:
            assert remotecall_fetch(procs, pid) == procs()
            assert remotecall_fetch(workers, pid) == workers()
            assert remotecall_fetch(nprocs, pid) == nprocs() == 6
            assert remotecall_fetch(nworkers, pid) == nworkers() == 5
        assert remotecall_fetch(call_peer, later[1], first[0]) == (later[1], first[0])
        assert remotecall_fetch(call_peer, first[0], later[1]) == (first[0], later[1])
        gone = first[1]
        rmprocs(gone)
        rest = [p for p in everyone if p != gone]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(remotecall_fetch(workers, p) != rest for p in rest):
            time.sleep(0.1)
        for pid in rest:
            assert remotecall_fetch(workers, pid) == rest
            assert gone not in links_of(pid)
        try:
            remotecall_fetch(call_peer, first[0], gone)
        except RemoteException as err:
            assert isinstance(err.exc, ProcessExitedError), repr(err.exc)
        else:
            raise AssertionError("a call to a removed worker succeeded")
        rmprocs(rest)
    """)


def test_nested_calls_do_not_deadlock():
    run_master("""
        a, b = addprocs(2)
        def hop(path):
            from pyaddprocs import myid, remotecall_fetch
            if not path:
                return [myid()]
            return [myid()] + remotecall_fetch(hop, path[0], path[1:])
        assert remotecall_fetch(hop, a, [b, a]) == [a, b, a]
        channel = RemoteChannel(a, 4)
        remotecall_fetch(lambda ch: [ch.put(i) for i in range(3)], b, channel)
        assert remotecall_fetch(lambda ch: [ch.take() for _ in range(3)], b, channel) == [0, 1, 2]
        rmprocs([a, b])
    """)
