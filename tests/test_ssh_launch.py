"""addprocs(machines, ...) against a real OpenSSH server on 127.0.0.1.

The module starts one sshd (key-only, started by the test itself) and a few accounts:
one with tcsh as login shell, one whose login prints a banner and rc-file noise, and a
password-only one. Workers run this test's own interpreter (an absolute ``exename``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import pyaddprocs
from pyaddprocs import LaunchError, addprocs, remotecall_fetch, rmprocs, workers
from tests.sshd import SSHServer, LoginAccount, free_port, require_ssh
from tests.support import process_state

PYTHON = sys.executable
# Every launch failure must be reported within this many seconds.
FAILURE_DEADLINE = 10.0


def worker_facts():
    """Run on a worker: what the test checks about its process."""
    import os

    return {"pid": os.getpid(), "cwd": os.getcwd(), "argv": open(f"/proc/{os.getpid()}/cmdline", "rb").read().split(b"\0"),
            "env": dict(os.environ)}


def is_gone(ospid: int) -> bool:
    state = process_state(ospid)
    return state is None or state == "Z"


def wait_gone(ospids, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(is_gone(p) for p in ospids):
            return True
        time.sleep(0.1)
    return all(is_gone(p) for p in ospids)


def ssh_children() -> set[int]:
    """Return the OS pids of ssh clients that are children of this process."""
    me = str(os.getpid())
    result = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if command == "ssh" and stat.rsplit(")", 1)[1].split()[1] == me:
            result.add(int(entry.name))
    return result


@pytest.fixture(scope="module")
def sshd():
    require_ssh()
    banner = tempfile.NamedTemporaryFile("w", prefix="pyaddprocs-banner-", delete=False)
    banner.write("This is the test sshd's banner.\n")
    banner.close()
    server = SSHServer(extra_config=f"Banner {banner.name}\n").start()
    try:
        yield server
    finally:
        server.stop()
        os.unlink(banner.name)


@pytest.fixture(scope="module")
def accounts(sshd):
    require_ssh()
    made = {}
    try:
        # A random suffix keeps the names apart from accounts a crashed run left behind.
        suffix = secrets.token_hex(3)
        made["tcsh"] = LoginAccount(f"pyap-tcsh-{suffix}", shell=shutil.which("tcsh") or "/usr/bin/tcsh")
        made["noisy"] = LoginAccount(f"pyap-noisy-{suffix}", shell="/bin/bash")
        made["password"] = LoginAccount(f"pyap-pw-{suffix}", shell="/bin/bash", root_alias=False)
        made["password"].set_password("not-a-key-3141")
        for name in ("tcsh", "noisy"):
            sshd.authorize(made[name].name)
        noisy_home = made["noisy"].home
        (noisy_home / ".bashrc").write_text("echo 'rc file says: hello'\n")
        (noisy_home / ".profile").write_text("echo 'Welcome to the noisy host'\necho 'profile line two'\n")
        yield made
    finally:
        for account in made.values():
            account.remove()


@pytest.fixture
def cleanup_workers():
    """Remove every worker a test added, also when it fails."""
    before = set(pyaddprocs.procs())
    yield
    extra = [p for p in pyaddprocs.workers() if p not in before and p != 1]
    if extra:
        rmprocs(*extra, waitfor=20)


REPO = str(Path(__file__).resolve().parent.parent)


def ssh_addprocs(server: SSHServer, machines, **kwargs):
    """addprocs over SSH with this server's flags; workers can import the tests package."""
    kwargs.setdefault("sshflags", server.client_flags)
    kwargs.setdefault("exename", PYTHON)
    env = kwargs.setdefault("env", {})
    env.setdefault("PYTHONPATH", REPO)
    return addprocs(machines, **kwargs)


def test_ssh_worker_runs_calls(sshd, cleanup_workers, capfd):
    [pid] = ssh_addprocs(sshd, [sshd.spec()])
    assert remotecall_fetch(lambda x: x * 2, pid, 21) == 42
    facts = remotecall_fetch(worker_facts, pid)
    assert facts["env"]["SSH_CONNECTION"].split()[2] == "127.0.0.1"
    pyaddprocs.remote_do(print, pid, "printed over ssh")
    deadline = time.monotonic() + 5
    seen = ""
    while time.monotonic() < deadline and "printed over ssh" not in seen:
        time.sleep(0.1)
        seen += capfd.readouterr().out
    assert f"From worker {pid}:\tprinted over ssh" in seen


def test_cookie_travels_on_stdin_by_default(sshd, cleanup_workers):
    cookie = pyaddprocs.cluster_cookie()
    [pid] = ssh_addprocs(sshd, [sshd.spec()])
    argv = remotecall_fetch(worker_facts, pid)["argv"]
    assert all(cookie.encode() not in arg for arg in argv)
    assert b"--worker" in argv


def test_cmdline_cookie_puts_cookie_in_argv(sshd, cleanup_workers):
    cookie = pyaddprocs.cluster_cookie()
    [pid] = ssh_addprocs(sshd, [sshd.spec()], cmdline_cookie=True)
    argv = remotecall_fetch(worker_facts, pid)["argv"]
    assert f"--worker={cookie}".encode() in argv


def test_paramiko_launch_runs_calls(sshd, cleanup_workers):
    [pid] = ssh_addprocs(sshd, [sshd.spec()], ssh="paramiko")
    assert remotecall_fetch(os.getpid, pid) != os.getpid()


def test_paramiko_rejects_unknown_host_key(sshd, cleanup_workers):
    flags = ["-i", str(sshd.client_key), "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=/dev/null"]
    started = time.monotonic()
    with pytest.raises(LaunchError, match="paramiko could not run the worker"):
        ssh_addprocs(sshd, [sshd.spec()], ssh="paramiko", sshflags=flags)
    assert time.monotonic() - started < FAILURE_DEADLINE


def test_count_starts_separate_workers(sshd, cleanup_workers, capfd):
    pids = ssh_addprocs(sshd, [(sshd.spec(), 3)])
    assert len(pids) == 3
    ospids = {remotecall_fetch(os.getpid, p) for p in pids}
    assert len(ospids) == 3
    for pid in pids:
        pyaddprocs.remote_do(print, pid, f"line from {pid}")
    deadline = time.monotonic() + 5
    seen = ""
    while time.monotonic() < deadline and not all(f"line from {p}" in seen for p in pids):
        time.sleep(0.1)
        seen += capfd.readouterr().out
    for pid in pids:
        assert f"From worker {pid}:\tline from {pid}" in seen


def test_auto_count_follows_cpu_affinity(sshd, cleanup_workers, scratch_dir):
    wrapper = scratch_dir / "python-on-one-cpu"
    wrapper.write_text(f"#!/bin/sh\nexec taskset -c 0 {PYTHON} \"$@\"\n")
    wrapper.chmod(0o755)
    pids = ssh_addprocs(sshd, [(sshd.spec(), "auto")], exename=str(wrapper))
    assert len(pids) == 1
    assert remotecall_fetch(lambda: len(os.sched_getaffinity(0)), pids[0]) == 1


def test_repeated_specs_add_workers(sshd, cleanup_workers):
    pids = ssh_addprocs(sshd, [sshd.spec(), (sshd.spec(), 2)])
    assert len(pids) == 3


def test_max_parallel_caps_logins(cleanup_workers):
    require_ssh()
    # This sshd drops connections beyond 3 that have not authenticated yet.
    strict = SSHServer(extra_config="MaxStartups 3\n").start()
    try:
        pids = ssh_addprocs(strict, [(strict.spec(), 20)], max_parallel=3)
        assert len(pids) == 20
        assert sorted(remotecall_fetch(pyaddprocs.myid, p) for p in pids) == sorted(pids)
        rmprocs(*pids, waitfor=30)
    finally:
        strict.stop()


def test_env_and_dir_reach_worker(sshd, cleanup_workers, scratch_dir):
    directory = scratch_dir / "work dir"
    directory.mkdir()
    env = {"PLAIN": "x", "TRICKY": "a 'b' \"c\" $HOME `id` $(id)\nsecond line"}
    [pid] = ssh_addprocs(sshd, [sshd.spec()], env=env, dir=str(directory))
    facts = remotecall_fetch(worker_facts, pid)
    assert facts["cwd"] == str(directory)
    assert facts["env"]["PLAIN"] == "x"
    assert facts["env"]["TRICKY"] == env["TRICKY"]
    assert facts["env"]["OPENBLAS_NUM_THREADS"] == "1"


def test_worker_timeout_is_forwarded(sshd, cleanup_workers, monkeypatch):
    monkeypatch.setenv("PYADDPROCS_WORKER_TIMEOUT", "37")
    [pid] = ssh_addprocs(sshd, [sshd.spec()])
    assert remotecall_fetch(worker_facts, pid)["env"]["PYADDPROCS_WORKER_TIMEOUT"] == "37"
    [other] = ssh_addprocs(sshd, [sshd.spec()], env={"PYADDPROCS_WORKER_TIMEOUT": "45"})
    assert remotecall_fetch(worker_facts, other)["env"]["PYADDPROCS_WORKER_TIMEOUT"] == "45"


def test_invalid_env_name_rejected_before_ssh(sshd, cleanup_workers):
    before = ssh_children()
    with pytest.raises(ValueError, match="invalid environment variable name"):
        ssh_addprocs(sshd, [sshd.spec()], env={"BAD-NAME": "x"})
    assert ssh_children() <= before


def test_tcsh_login_shell_with_csh_commands(sshd, accounts, cleanup_workers, scratch_dir):
    directory = scratch_dir / "csh dir"
    directory.mkdir()
    env = {"TRICKY": "bang! $HOME `id` 'q' \"d\"\nline"}
    [pid] = ssh_addprocs(sshd, [sshd.spec(user=accounts["tcsh"].name)], shell="csh", env=env, dir=str(directory))
    facts = remotecall_fetch(worker_facts, pid)
    assert facts["env"]["TRICKY"] == env["TRICKY"]
    assert facts["cwd"] == str(directory)


def test_tilde_dir_is_remote_home(sshd, accounts, cleanup_workers):
    account = accounts["tcsh"]
    (account.home / "jobs").mkdir(exist_ok=True)
    [pid] = ssh_addprocs(sshd, [sshd.spec(user=account.name)], shell="csh", dir="~/jobs")
    assert remotecall_fetch(worker_facts, pid)["cwd"] == str(account.home / "jobs")


def test_login_noise_does_not_break_handshake(sshd, accounts, cleanup_workers, capfd):
    # Without LogLevel=ERROR, so that ssh prints the server's banner.
    flags = sshd.client_flags
    assert flags[-2:] == ["-o", "LogLevel=ERROR"]
    flags = flags[:-2]
    [pid] = ssh_addprocs(sshd, [sshd.spec(user=accounts["noisy"].name)], sshflags=flags)
    assert remotecall_fetch(pyaddprocs.myid, pid) == pid
    output = capfd.readouterr().out
    for line in ("This is the test sshd's banner.", "rc file says: hello",
                 "Welcome to the noisy host", "profile line two"):
        assert output.count(f"From worker startup:\t{line}\n") == 1, line


def test_bind_port_given_in_spec(sshd, cleanup_workers):
    first = free_port()
    pids = ssh_addprocs(sshd, [(sshd.spec(bind=f"127.0.0.1:{first}"), 2)])
    configs = [pyaddprocs.process_group.get_group().members[p] for p in pids]
    ports = sorted(member.port for member in configs)
    assert ports[0] >= first
    assert len(set(ports)) == 2


# -- failures ---------------------------------------------------------------------------


def assert_fails_fast(sshd, machines, fragment, **kwargs):
    before_workers = set(workers())
    before_ssh = ssh_children()
    started = time.monotonic()
    with pytest.raises(LaunchError) as raised:
        ssh_addprocs(sshd, machines, **kwargs)
    elapsed = time.monotonic() - started
    assert elapsed < FAILURE_DEADLINE, f"took {elapsed:.1f} s"
    assert fragment in str(raised.value)
    assert set(workers()) == before_workers
    assert wait_gone(ssh_children() - before_ssh, timeout=5)
    return raised.value


def test_refused_port_fails_fast(sshd, cleanup_workers):
    closed = free_port()
    assert_fails_fast(sshd, [f"root@127.0.0.1:{closed}"], "Connection refused")


def test_invalid_host_name_fails_fast(sshd, cleanup_workers):
    # A name ssh rejects itself, so no DNS query leaves this machine.
    assert_fails_fast(sshd, ["root@bad!host"], "bad!host")


def test_wrong_key_fails_fast(sshd, cleanup_workers, scratch_dir):
    key = scratch_dir / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    flags = ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null"]
    assert_fails_fast(sshd, [sshd.spec()], "Permission denied", sshflags=flags)


def test_password_only_account_fails_fast(sshd, accounts, cleanup_workers):
    assert_fails_fast(sshd, [sshd.spec(user=accounts["password"].name)], "Permission denied")


def test_missing_interpreter_fails_fast(sshd, cleanup_workers):
    error = assert_fails_fast(sshd, [sshd.spec()], "exename=", exename="/nonexistent/bin/python3")
    assert "/nonexistent/bin/python3" in str(error)


def test_python_without_pyaddprocs_fails_fast(sshd, cleanup_workers):
    # -S skips site-packages, where pyaddprocs and its dependencies are installed.
    assert_fails_fast(sshd, [sshd.spec()], "No module named", exeflags=["-S"], env={"PYTHONPATH": ""})


def other_minor_python() -> str | None:
    for version in ("3.12", "3.13", "3.10"):
        for candidate in sorted(Path("/root/.pyenv/versions").glob(f"{version}.*")):
            python = candidate / "bin" / "python3"
            if not python.exists():
                continue
            probe = subprocess.run([str(python), "-c", "import zmq, cloudpickle"], capture_output=True)
            if probe.returncode == 0:
                return str(python)
    return None


def test_other_minor_python_fails_fast(sshd, cleanup_workers):
    python = other_minor_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide a Python of another minor version with pyzmq and cloudpickle")
        pytest.skip("no Python of another minor version with pyzmq and cloudpickle")
    assert_fails_fast(sshd, [sshd.spec()], "exename=", exename=python, env={"PYTHONPATH": REPO})


def test_failure_keeps_other_hosts_workers(sshd, cleanup_workers):
    closed = free_port()
    with pytest.raises(LaunchError) as raised:
        ssh_addprocs(sshd, [sshd.spec(), f"root@127.0.0.1:{closed}"])
    started = raised.value.started_pids
    assert len(started) == 1
    assert remotecall_fetch(pyaddprocs.myid, started[0]) == started[0]


# -- removal ----------------------------------------------------------------------------


def test_rmprocs_ends_remote_worker_and_ssh(sshd, cleanup_workers):
    before_ssh = ssh_children()
    [pid] = ssh_addprocs(sshd, [sshd.spec()])
    ospid = remotecall_fetch(os.getpid, pid)
    new_ssh = ssh_children() - before_ssh
    assert new_ssh
    rmprocs(pid)
    assert wait_gone([ospid, *new_ssh], timeout=10)
    assert pid not in workers()


def test_interrupt_stops_running_call(sshd, cleanup_workers):
    [pid] = ssh_addprocs(sshd, [sshd.spec()])
    future = pyaddprocs.remotecall(lambda: [time.sleep(0.05) for _ in range(400)], pid)
    time.sleep(0.5)
    pyaddprocs.interrupt(pid)
    with pytest.raises(pyaddprocs.RemoteException) as raised:
        future.fetch(timeout=10)
    assert isinstance(raised.value.exc, KeyboardInterrupt)
    assert remotecall_fetch(pyaddprocs.myid, pid) == pid


def test_master_exit_ends_ssh_workers(sshd, scratch_dir):
    script = scratch_dir / "master.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        from pyaddprocs import addprocs, remotecall_fetch
        pids = addprocs([{sshd.spec()!r}], sshflags={sshd.client_flags!r}, exename={PYTHON!r})
        print(remotecall_fetch(os.getpid, pids[0]), flush=True)
        time.sleep(60)
    """))
    master = subprocess.Popen([PYTHON, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": REPO})
    try:
        ospid = int(master.stdout.readline())
        assert not is_gone(ospid)
        master.kill()
        master.wait(timeout=10)
        assert wait_gone([ospid], timeout=10)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(timeout=10)
