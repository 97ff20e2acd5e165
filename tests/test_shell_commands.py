"""Remote command lines, run through real local shells the way sshd runs them (SHELL -c)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyaddprocs.managers.shell_commands import (
    check_env_name, escape_wincmd, quote_windows_argument, remote_command,
)

TRICKY_ENV = {
    "PLAIN": "plain",
    "SPACES": "with  two spaces",
    "QUOTES": "it's \"quoted\"",
    "DOLLAR": "$HOME ${PATH} $(touch {marker}) `touch {marker}`",
    "NEWLINES": "line one\nline two\n",
    "BANG": "bang! !! !$",
    "BACKSLASH": "back\\slash \\n \\",
    "EMPTY": "",
}

SHELLS = [("posix", "sh"), ("posix", "bash"), ("posix", "dash"), ("csh", "tcsh"), ("csh", "csh")]


def print_env_program(names):
    code = "import json, os; print(json.dumps([os.getcwd(), {n: os.environ.get(n) for n in %r}]))" % (names,)
    return [sys.executable, "-c", code]


@pytest.mark.parametrize("kind, shell", SHELLS)
def test_env_and_dir_arrive_unchanged(kind, shell, scratch_dir):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    marker = scratch_dir / "executed"
    env = {name: value.replace("{marker}", str(marker)) for name, value in TRICKY_ENV.items()}
    directory = scratch_dir / "dir with spaces 'and quotes'"
    directory.mkdir()
    command = remote_command(kind, print_env_program(list(env)), str(directory), env)

    result = subprocess.run([shell, "-c", command], capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    cwd, seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert cwd == str(directory)
    assert seen == env
    assert not marker.exists()


@pytest.mark.parametrize("kind, shell", [("posix", "sh"), ("csh", "tcsh")])
def test_tilde_dir_is_remote_home(kind, shell, scratch_dir):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    home = scratch_dir / "home"
    (home / "sub dir").mkdir(parents=True)
    command = remote_command(kind, print_env_program([]), "~/sub dir", {})

    result = subprocess.run([shell, "-c", command], capture_output=True, text=True, timeout=30,
                            env={"HOME": str(home), "PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])[0] == str(home / "sub dir")


def test_missing_dir_fails_loudly(scratch_dir):
    command = remote_command("posix", print_env_program([]), str(scratch_dir / "missing"), {})
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "cannot change to directory" in result.stderr


def test_exename_with_spaces_runs(scratch_dir):
    link_dir = scratch_dir / "python dir"
    link_dir.mkdir()
    (link_dir / "my python").symlink_to(Path(sys.executable))
    program = [str(link_dir / "my python"), "-c", "print('ran')"]
    for kind, shell in (("posix", "sh"), ("csh", "tcsh")):
        if shutil.which(shell) is None:
            continue
        result = subprocess.run([shell, "-c", remote_command(kind, program, None, {})],
                                capture_output=True, text=True, timeout=30)
        assert result.stdout.strip() == "ran", result.stderr


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A=B", "Ä", "A;rm"])
def test_invalid_env_name_rejected(name):
    with pytest.raises(ValueError, match="invalid environment variable name"):
        check_env_name(name)
    for kind in ("posix", "csh", "wincmd"):
        with pytest.raises(ValueError):
            remote_command(kind, ["python"], None, {name: "x"})


def test_unknown_shell_rejected():
    with pytest.raises(ValueError, match="invalid shell 'fish'"):
        remote_command("fish", ["python"], None, {})


@pytest.mark.parametrize("argument, quoted", [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("C:\\path with\\", '"C:\\path with\\\\"'),
    ("", '""'),
])
def test_windows_argument_quoting(argument, quoted):
    assert quote_windows_argument(argument) == quoted


def test_wincmd_command_shape():
    command = remote_command(
        "wincmd", ["C:\\Python 3\\python.exe", "-m", "pyaddprocs.worker", "--worker"],
        "C:\\work dir", {"A": "x&y", "B": "100%"},
    )
    assert command == ('pushd "C:\\work dir" && set A=x^&y&& set B=100^%&& '
                       '"C:\\Python 3\\python.exe" -m pyaddprocs.worker --worker')


def test_wincmd_rejects_line_breaks_and_quotes():
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        escape_wincmd("a\nb")
    with pytest.raises(ValueError, match="cannot contain"):
        remote_command("wincmd", ['C:\\"odd"\\python.exe'], None, {})
    with pytest.raises(ValueError, match="cannot contain"):
        remote_command("wincmd", ["python"], 'C:\\"dir"', {})
