"""Count the words in every text file under a directory with pmap on pyaddprocs workers.

    master: list files ──> batches of about equal cost ──pmap──> worker: read files,
            merge Counters <──────── one BatchCount per batch <─────  count words

The master lists the files and their sizes, cuts the list into batches of roughly equal
cost and hands them out with ``pmap``. ``pmap`` gives the next batch to whichever worker
finishes first, so a few large files do not leave the other workers idle. Each worker
reads its files itself, so the directory must be at the same path on every machine
(a shared file system), and returns one ``collections.Counter`` per batch. The master
adds the Counters and prints the 20 most frequent words. ``--serial`` runs the same
batches in this process, without workers, and prints the same report.

What is counted:

- The default directory is this interpreter's standard library
  (``sysconfig.get_paths()["stdlib"]``) without its ``site-packages`` directories, so the
  result does not change when packages are installed.
- Only regular files count. Symbolic links are not followed, and ``__pycache__``
  directories are skipped because they contain compiled bytecode, which the interpreter
  may rewrite during the run.
- A file with a NUL byte in its first 8000 bytes is treated as binary and skipped, the
  same test that git uses. A file that cannot be opened or read is skipped too. The
  report gives the number of both.
- Files are read as bytes and never decoded. A word is a maximal run of ASCII letters,
  digits and underscores that does not start with a digit (``if``, ``__init__``,
  ``utf8``; not ``3rd``), lowercased. Any other byte ends a word, so invalid UTF-8 cannot
  fail the count, but words in non-ASCII scripts are not counted.

Every output line except the ones starting with ``time:`` is the same for a parallel
and a ``--serial`` run over an unchanged directory. Words with equal counts are sorted
by the word.

Usage::

    python examples/wordcount.py                 # stdlib, one worker per CPU
    python examples/wordcount.py --workers 2 /usr/share/doc
    python examples/wordcount.py --serial
    python examples/wordcount.py --machines root@127.0.0.1:2222 --workers 2 \\
        --sshflags "-i ~/.ssh/id_ed25519 -o StrictHostKeyChecking=no"
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import heapq
import os
import re
import sys
import sysconfig
import time
from typing import BinaryIO

# Lowercased ASCII identifiers. The lookbehind keeps a match from starting inside a run
# of word bytes, so "3rd" yields nothing instead of "rd".
WORD_PATTERN = re.compile(rb"(?<![a-z0-9_])[a-z_][a-z0-9_]*")
WORD_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789_"

BINARY_SNIFF_BYTES = 8000
READ_CHUNK_BYTES = 1 << 20
TOP_WORDS = 20

# A batch costs its bytes plus this much per file, so that a batch of many small files
# (each an open() and a stat()) does not count as nearly free. An estimate, not measured.
PER_FILE_COST_BYTES = 4096
# Batches per worker. More batches balance better, but every batch is one remote call
# and one Counter sent back.
BATCHES_PER_WORKER = 8


@dataclasses.dataclass
class BatchCount:
    """Word counts and file statistics of one batch of files."""

    words: collections.Counter
    files: int = 0
    bytes: int = 0
    binary_files: int = 0
    unreadable_files: int = 0

    def add(self, other: BatchCount) -> None:
        self.words.update(other.words)
        self.files += other.files
        self.bytes += other.bytes
        self.binary_files += other.binary_files
        self.unreadable_files += other.unreadable_files


def list_files(directory: str, excluded: set[str]) -> list[tuple[str, int]]:
    """List the regular files under ``directory`` as (path, size) pairs, sorted by path.

    Directories named ``__pycache__`` and the directories in ``excluded`` are skipped.
    Symbolic links are not followed.
    """
    found = []
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as err:
            print(f"warning: skipped directory {current}: {err}", file=sys.stderr)
            continue

        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__" and entry.path not in excluded:
                    pending.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                try:
                    found.append((entry.path, entry.stat(follow_symlinks=False).st_size))
                except OSError:
                    # The size only weighs the batch. Reading the file reports the error.
                    found.append((entry.path, 0))
    found.sort()
    return found


def split_into_batches(files: list[tuple[str, int]], batch_count: int) -> list[list[str]]:
    """Split the files, in order, into about ``batch_count`` batches of similar cost.

    A file larger than the target cost gets a batch of its own.
    """
    total_cost = sum(size + PER_FILE_COST_BYTES for _, size in files)
    target_cost = max(1, total_cost // max(1, batch_count))

    batches: list[list[str]] = []
    batch: list[str] = []
    batch_cost = 0
    for path, size in files:
        batch.append(path)
        batch_cost += size + PER_FILE_COST_BYTES
        if batch_cost >= target_cost:
            batches.append(batch)
            batch = []
            batch_cost = 0
    if batch:
        batches.append(batch)
    return batches


def count_words_in_file(file: BinaryIO) -> tuple[collections.Counter, int] | None:
    """Count the words of a file opened in binary mode and return them with its size.

    Returns None for a binary file. Reading raises OSError as ``read`` does.
    """
    chunk = file.read(READ_CHUNK_BYTES)
    if b"\0" in chunk[:BINARY_SNIFF_BYTES]:
        return None

    counts: collections.Counter = collections.Counter()
    size = 0
    carry = b""
    while chunk:
        size += len(chunk)
        text = carry + chunk.lower()
        # A word may continue in the next chunk, so the trailing run of word bytes
        # waits for the next chunk or the end of the file.
        complete = text.rstrip(WORD_BYTES)
        carry = text[len(complete):]
        counts.update(WORD_PATTERN.findall(complete))
        chunk = file.read(READ_CHUNK_BYTES)
    counts.update(WORD_PATTERN.findall(carry))
    return counts, size


def count_words_in_files(paths: list[str]) -> BatchCount:
    """Count the words in each file of one batch, on a worker or with --serial locally."""
    counts: collections.Counter = collections.Counter()
    result = BatchCount(words=collections.Counter())
    for path in paths:
        try:
            with open(path, "rb") as file:
                file_result = count_words_in_file(file)
        except OSError:
            result.unreadable_files += 1
            continue

        if file_result is None:
            result.binary_files += 1
            continue
        file_counts, size = file_result
        counts.update(file_counts)
        result.files += 1
        result.bytes += size

    # Every word is ASCII, so decoding cannot fail. str keys read better in the report.
    result.words = collections.Counter({word.decode("ascii"): n for word, n in counts.items()})
    return result


def count_batches_serially(batches: list[list[str]]) -> BatchCount:
    total = BatchCount(words=collections.Counter())
    for batch in batches:
        total.add(count_words_in_files(batch))
    return total


def count_batches_on_workers(batches: list[list[str]]) -> BatchCount:
    from pyaddprocs import pmap

    total = BatchCount(words=collections.Counter())
    # Each item already is a batch of files, so pmap sends one item per call.
    for result in pmap(count_words_in_files, batches, batch_size=1):
        total.add(result)
    return total


def default_directory() -> tuple[str, set[str]]:
    """Return the standard library directory and its site-packages directories."""
    paths = sysconfig.get_paths()
    stdlib = os.path.normpath(paths["stdlib"])
    excluded = {os.path.normpath(paths[key]) for key in ("purelib", "platlib")}
    # In a virtual environment purelib names the environment's own directory, but the
    # base interpreter's site-packages still lies inside stdlib.
    excluded.add(os.path.join(stdlib, "site-packages"))
    return stdlib, excluded


def print_report(directory: str, total: BatchCount) -> None:
    top = heapq.nsmallest(TOP_WORDS, total.words.items(), key=lambda item: (-item[1], item[0]))
    print(f"directory: {directory}")
    print(
        f"files: {total.files} counted, {total.binary_files} binary skipped, "
        f"{total.unreadable_files} unreadable skipped"
    )
    print(f"bytes: {total.bytes}")
    print(f"words: {sum(total.words.values())} total, {len(total.words)} distinct")
    print(f"top {len(top)} words:")
    width = max((len(word) for word, _ in top), default=0)
    for rank, (word, count) in enumerate(top, start=1):
        print(f"{rank:4d}  {word:<{width}}  {count:>10d}")


def print_timing(total: BatchCount, seconds: float, mode: str) -> None:
    # 1 MB = 10**6 bytes. A run too short for the clock reports 0.
    mb_per_second = total.bytes / seconds / 1e6 if seconds > 0 else 0.0
    files_per_second = total.files / seconds if seconds > 0 else 0.0
    print(
        f"time: {seconds:.3f} s counting {mode}, "
        f"{mb_per_second:.1f} MB/s, {files_per_second:.0f} files/s"
    )


def format_worker_count(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Count the words in the text files under a directory on pyaddprocs workers.",
    )
    parser.add_argument(
        "directory", nargs="?",
        help="directory to count (default: the Python standard library without site-packages)",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N",
        help="number of local workers (default: the CPU count), or with --machines the "
             "number of workers per machine (default: 1)",
    )
    parser.add_argument(
        "--machines", nargs="+", metavar="SPEC",
        help="start the workers over SSH on these machines, given as [user@]host[:port]. "
             "The directory must exist at the same path there.",
    )
    parser.add_argument(
        "--sshflags", default="", metavar="FLAGS",
        help="extra ssh options for --machines, as one string, e.g. \"-i KEY -o StrictHostKeyChecking=no\"",
    )
    parser.add_argument(
        "--serial", action="store_true",
        help="count in this process without starting workers",
    )
    args = parser.parse_args(argv)

    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.serial and args.machines:
        parser.error("--serial cannot be combined with --machines")
    if args.directory is not None and not os.path.isdir(args.directory):
        parser.error(f"directory not found: {args.directory}")
    return args


def start_workers(args: argparse.Namespace) -> list[int]:
    from pyaddprocs import addprocs

    if args.machines:
        per_machine = args.workers or 1
        return addprocs([(spec, per_machine) for spec in args.machines], sshflags=args.sshflags)
    return addprocs(args.workers or os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.directory is None:
        directory, excluded = default_directory()
    else:
        directory, excluded = os.path.normpath(os.path.abspath(args.directory)), set()

    files = list_files(directory, excluded)

    if args.serial:
        batches = split_into_batches(files, BATCHES_PER_WORKER)
        started = time.perf_counter()
        total = count_batches_serially(batches)
        elapsed = time.perf_counter() - started
        print_report(directory, total)
        print_timing(total, elapsed, "in one process")
        return 0

    from pyaddprocs import LaunchError, rmprocs

    launch_started = time.perf_counter()
    try:
        pids = start_workers(args)
    except LaunchError as err:
        print(f"wordcount: could not start the workers: {err}", file=sys.stderr)
        return 1
    launch_seconds = time.perf_counter() - launch_started
    try:
        batches = split_into_batches(files, BATCHES_PER_WORKER * len(pids))
        started = time.perf_counter()
        total = count_batches_on_workers(batches)
        elapsed = time.perf_counter() - started
    finally:
        rmprocs(*pids)

    print_report(directory, total)
    print_timing(total, elapsed, f"on {format_worker_count(len(pids))}")
    print(f"time: {launch_seconds:.3f} s starting {format_worker_count(len(pids))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
