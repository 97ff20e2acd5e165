"""Remote command lines that start a worker through the remote user's shell.

ssh hands the command string to the remote login shell, so every word is quoted for
that shell:

- ``posix``: a script run by ``sh -l -c`` (a login shell, so the profile sets PATH):
  ``cd -- DIR`` (failing loudly), one ``export NAME=VALUE`` per variable, then
  ``exec PYTHON FLAGS -m pyaddprocs.worker ...``. The script is quoted once more for
  the outer shell, which may be any POSIX shell.
- ``csh``: the same steps in csh syntax (``cd``, ``setenv``, ``exec``) for csh and
  tcsh login shells, which cannot run the POSIX script.
- ``wincmd``: a ``cmd.exe`` line (``pushd "DIR" &&``, ``set NAME=VALUE&&``, the
  program with Microsoft C runtime argument quoting).

A ``dir`` that starts with ``~/`` (or is ``~``) is left to the remote shell to expand.
Environment names must be valid shell identifiers; anything else raises ValueError
here, before ssh runs. Values are quoted so that spaces, quotes, ``$``, backticks and
newlines arrive unchanged and run nothing.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

SHELLS = ("posix", "csh", "wincmd")

_SAFE_POSIX = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_flags(value: Any, name: str) -> list[str]:
    """Return ``value`` (a string split as a POSIX shell would, or a sequence) as a list.

    ``name`` is the keyword the value came from, for the error message.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return list(value)
    raise TypeError(f"{name} must be a string or a sequence of strings, not {value!r}")


def check_env_name(name: str) -> None:
    """Raise ValueError unless ``name`` can be set by every supported shell."""
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise ValueError(f"invalid environment variable name {name!r}: use letters, digits and _, not starting with a digit")


def quote_posix(word: str) -> str:
    """Quote ``word`` for a POSIX shell: bare when safe, else in single quotes."""
    if word and _SAFE_POSIX.match(word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


def quote_csh(word: str) -> str:
    """Quote ``word`` for csh and tcsh.

    Single quotes keep ``$`` and backticks literal in csh too; a quote is closed to
    write ``\\'``, ``!`` (history substitution) becomes ``\\!``, and a newline inside
    quotes needs a backslash before it.
    """
    if word and _SAFE_POSIX.match(word):
        return word
    body = word.replace("'", "'\\''").replace("!", "\\!").replace("\n", "\\\n")
    return "'" + body + "'"


def quote_windows_argument(word: str) -> str:
    """Quote one argument by the Microsoft C runtime rules (CommandLineToArgvW)."""
    if word and not re.search(r'[\s"]', word):
        return word
    result, backslashes = ['"'], 0
    for char in word:
        if char == "\\":
            backslashes += 1
            continue
        if char == '"':
            result.append("\\" * (2 * backslashes + 1) + '"')
        else:
            result.append("\\" * backslashes + char)
        backslashes = 0
    result.append("\\" * (2 * backslashes) + '"')
    return "".join(result)


def escape_wincmd(line: str) -> str:
    """Escape cmd.exe's special characters outside double-quoted runs with ``^``."""
    if any(char in line for char in "\r\n\0"):
        raise ValueError(f"a cmd.exe command line cannot contain CR, LF or NUL: {line!r}")
    result, quoted = [], False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "()!^<>&|%":
            result.append("^")
        result.append(char)
    return "".join(result)


def _dir_for_posix(directory: str) -> str:
    if directory == "~":
        return '"$HOME"'
    if directory.startswith("~/"):
        return '"$HOME"/' + quote_posix(directory[2:])
    return quote_posix(directory)


def _dir_for_csh(directory: str) -> str:
    if directory == "~":
        return '"$HOME"'
    if directory.startswith("~/"):
        return '"$HOME"/' + quote_csh(directory[2:])
    return quote_csh(directory)


def posix_command(program: list[str], directory: str | None, env: dict[str, str]) -> str:
    """Build the remote command for a POSIX login shell."""
    lines = []
    if directory:
        target = _dir_for_posix(directory)
        lines.append(f"cd -- {target} || {{ echo \"pyaddprocs: cannot change to directory {quote_posix(directory)[:200]}\" >&2; exit 1; }}")
    for name, value in env.items():
        check_env_name(name)
        lines.append(f"export {name}={quote_posix(value)}")
    lines.append("exec " + " ".join(quote_posix(word) for word in program))
    script = "\n".join(lines)
    return f"sh -l -c {quote_posix(script)}"


def csh_command(program: list[str], directory: str | None, env: dict[str, str]) -> str:
    """Build the remote command for a csh or tcsh login shell."""
    lines = []
    if directory:
        lines.append(f"cd {_dir_for_csh(directory)} || exit 1")
    for name, value in env.items():
        check_env_name(name)
        lines.append(f"setenv {name} {quote_csh(value)}")
    lines.append("exec " + " ".join(quote_csh(word) for word in program))
    return "\n".join(lines)


def wincmd_command(program: list[str], directory: str | None, env: dict[str, str]) -> str:
    """Build the remote command for Windows ``cmd.exe``."""
    if '"' in program[0]:
        raise ValueError(f"exename for shell='wincmd' cannot contain '\"': {program[0]!r}")
    prefix = ""
    if directory:
        if '"' in directory:
            raise ValueError(f"dir for shell='wincmd' cannot contain '\"': {directory!r}")
        prefix = f'pushd "{directory}" && '
    for name, value in env.items():
        check_env_name(name)
        prefix += f"set {name}={escape_wincmd(value)}&& "
    return prefix + escape_wincmd(" ".join(quote_windows_argument(word) for word in program))


def remote_command(shell: str, program: list[str], directory: str | None, env: dict[str, str]) -> str:
    """Build the command string that starts ``program`` in ``directory`` with ``env`` added."""
    if shell == "posix":
        return posix_command(program, directory, env)
    if shell == "csh":
        return csh_command(program, directory, env)
    if shell == "wincmd":
        return wincmd_command(program, directory, env)
    raise ValueError(f"invalid shell {shell!r}: expected one of {', '.join(SHELLS)}")
