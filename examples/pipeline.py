"""Hash every file under a directory in a pipeline of tasks connected by RemoteChannels.

    producer (first worker)       hashers (every worker)           consumer (last worker)
    list files ──put──> paths ──take──> sha256 of file ──put──> digests ──take──> summary
                                                                                     │
    master: creates both channels and starts the tasks, waits for the producer and   │
            the hashers, closes digests, fetches the summary <───────────────────────┘

Both channels are owned by the master and hold at most ``CHANNEL_SIZE`` items, so a
fast producer waits for the hashers instead of filling memory. The producer walks the
directory on a worker and the hashers open the files there, so the directory must be at
the same path on every machine (a shared file system).

End of stream, in order:

1. The producer puts every path, then closes ``paths``. A closed channel still hands
   out the items it holds, and iteration ends when it is closed and empty.
2. Each hasher takes paths until that iteration ends and returns how many it hashed.
3. When the producer and every hasher have returned, no task puts into ``digests`` any
   more, so the master closes it. The consumer takes what is left and returns.
4. The master checks that the producer's count, the sum of the hashers' counts and the
   consumer's count are equal, so a lost item fails the run instead of changing the
   digest unnoticed.

When a task fails or ``--timeout`` passes, the master closes both channels. That
makes every blocked ``put`` raise and ends every iteration, so no task waits for an item
that will never come. The master then raises the error and removes the workers.

Every file costs four remote calls (two puts and two takes on channels owned by the
master), so on files in the page cache this pipeline is slower than ``--serial``. It
shows how tasks hand work to each other. For throughput, hand out batches of paths, as
``wordcount.py`` does with ``pmap``.

The files are the regular files under the directory, without following symbolic links
and without ``__pycache__`` directories, whose bytecode the interpreter may rewrite
during the run. The default directory is this interpreter's standard library without
its ``site-packages``. The combined digest is the sha256 of the lines
``<sha256>  <path>`` in the format of ``sha256sum``, with paths relative to the
directory and sorted by their bytes. For file names without backslashes or newlines it
equals the output of the command below (for the default directory, also prune
``./site-packages``)::

    cd DIR && find . -name __pycache__ -prune -o -type f -printf '%P\\0' \\
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum

Files that cannot be read are counted and left out of the digest. Every output line
except the ones starting with ``time:`` is the same for a parallel and a ``--serial``
run over an unchanged directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import queue
import sys
import sysconfig
import time
from typing import Iterable

READ_CHUNK_BYTES = 1 << 20
# Maximum number of items in each channel. A put on a full channel waits for a take.
CHANNEL_SIZE = 64


@dataclasses.dataclass(frozen=True)
class FileDigest:
    """The sha256 of one file, or the error that stopped reading it."""

    path: str  # relative to the hashed directory
    size: int
    sha256: str | None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Summary:
    """Counts and combined digest of a whole directory."""

    files: int
    unreadable_files: int
    bytes: int
    combined_sha256: str


def list_files(directory: str, excluded: set[str]) -> list[str]:
    """List the regular files under ``directory`` relative to it, sorted.

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
                found.append(os.path.relpath(entry.path, directory))
    found.sort(key=os.fsencode)
    return found


def hash_file(directory: str, path: str) -> FileDigest:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(os.path.join(directory, path), "rb") as file:
            while chunk := file.read(READ_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except OSError as err:
        return FileDigest(path, 0, None, error=str(err))
    return FileDigest(path, size, digest.hexdigest())


def summarize(digests: Iterable[FileDigest]) -> Summary:
    """Combine file digests, in any order, into the counts and one sha256."""
    lines = []
    unreadable_files = 0
    total_bytes = 0
    for item in digests:
        if item.sha256 is None:
            unreadable_files += 1
            continue
        lines.append((os.fsencode(item.path), item.sha256))
        total_bytes += item.size

    lines.sort()
    combined = hashlib.sha256()
    for path, sha256 in lines:
        combined.update(sha256.encode("ascii") + b"  " + path + b"\n")
    return Summary(len(lines), unreadable_files, total_bytes, combined.hexdigest())


def produce_paths(directory: str, excluded: set[str], paths) -> int:
    """Put the path of every file into ``paths``, close it and return the number of paths."""
    count = 0
    try:
        for path in list_files(directory, excluded):
            paths.put(path)
            count += 1
    finally:
        # Also on an error, so that the hashers stop instead of waiting.
        paths.close()
    return count


def hash_paths(directory: str, paths, digests) -> int:
    """Hash the files named in ``paths`` until it is closed and empty, putting the results
    into ``digests``. Returns the number of files hashed."""
    count = 0
    for path in paths:
        digests.put(hash_file(directory, path))
        count += 1
    return count


def wait_for_all(futures: list, deadline: float) -> list:
    """Wait for every future and return their values in order.

    Raises the first task error as soon as it arrives, whichever future it belongs to,
    and TimeoutError when ``deadline`` (a ``time.monotonic()`` value) passes first.
    Waiting on the futures in order would instead sit on a blocked producer while a
    failed hasher's error is already there.
    """
    finished: queue.SimpleQueue = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(finished.put)

    for _ in futures:
        try:
            future = finished.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("timed out waiting for the pipeline tasks") from None
        future.result()  # raises the task's error
    return [future.result() for future in futures]


def run_pipeline(directory: str, excluded: set[str], pids: list[int], timeout: float):
    """Run producer, hashers and consumer on ``pids`` and return the summary and the
    number of files each worker hashed."""
    from pyaddprocs import RemoteChannel, remotecall

    deadline = time.monotonic() + timeout
    paths = RemoteChannel(maxsize=CHANNEL_SIZE)
    digests = RemoteChannel(maxsize=CHANNEL_SIZE)
    try:
        producer = remotecall(produce_paths, pids[0], directory, excluded, paths)
        hashers = [remotecall(hash_paths, pid, directory, paths, digests) for pid in pids]
        consumer = remotecall(summarize, pids[-1], digests)

        produced, *hashed_counts = wait_for_all([producer, *hashers], deadline)
        digests.close()
        (summary,) = wait_for_all([consumer], deadline)
    except TimeoutError:
        paths.close()
        digests.close()
        raise TimeoutError(
            f"the pipeline did not finish within {timeout:g} seconds. "
            "Use --timeout to allow more time for a large directory."
        ) from None
    except BaseException:
        paths.close()
        digests.close()
        raise

    hashed = dict(zip(pids, hashed_counts))
    received = summary.files + summary.unreadable_files
    if not produced == sum(hashed_counts) == received:
        raise RuntimeError(
            f"pipeline lost items: the producer sent {produced} paths, the hashers "
            f"hashed {sum(hashed_counts)} files and the consumer received {received}"
        )
    return summary, hashed


def default_directory() -> tuple[str, set[str]]:
    """Return the standard library directory and its site-packages directories."""
    paths = sysconfig.get_paths()
    stdlib = os.path.normpath(paths["stdlib"])
    excluded = {os.path.normpath(paths[key]) for key in ("purelib", "platlib")}
    # In a virtual environment purelib names the environment's own directory, but the
    # base interpreter's site-packages still lies inside stdlib.
    excluded.add(os.path.join(stdlib, "site-packages"))
    return stdlib, excluded


def print_summary(directory: str, summary: Summary) -> None:
    print(f"directory: {directory}")
    print(f"files: {summary.files} hashed, {summary.unreadable_files} unreadable")
    print(f"bytes: {summary.bytes}")
    print(f"combined sha256: {summary.combined_sha256}")


def print_timing(summary: Summary, seconds: float, mode: str) -> None:
    # 1 MB = 10**6 bytes. A run too short for the clock reports 0.
    mb_per_second = summary.bytes / seconds / 1e6 if seconds > 0 else 0.0
    files_per_second = summary.files / seconds if seconds > 0 else 0.0
    print(
        f"time: {seconds:.3f} s hashing {mode}, "
        f"{mb_per_second:.1f} MB/s, {files_per_second:.0f} files/s"
    )


def format_worker_count(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Hash every file under a directory with a pipeline of pyaddprocs workers.",
    )
    parser.add_argument(
        "directory", nargs="?",
        help="directory to hash (default: the Python standard library without site-packages)",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N",
        help="number of local workers (default: the CPU count)",
    )
    parser.add_argument(
        "--serial", action="store_true",
        help="hash in this process without starting workers",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS",
        help="maximum time to wait for the pipeline after the workers started, "
             "in seconds (default: 600)",
    )
    args = parser.parse_args(argv)

    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    if args.directory is not None and not os.path.isdir(args.directory):
        parser.error(f"directory not found: {args.directory}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if args.directory is None:
        directory, excluded = default_directory()
    else:
        directory, excluded = os.path.normpath(os.path.abspath(args.directory)), set()

    if args.serial:
        started = time.perf_counter()
        summary = summarize(hash_file(directory, path) for path in list_files(directory, excluded))
        elapsed = time.perf_counter() - started
        print_summary(directory, summary)
        print_timing(summary, elapsed, "in one process")
        return 0

    from pyaddprocs import addprocs, rmprocs

    pids = addprocs(args.workers or os.cpu_count() or 1)
    try:
        started = time.perf_counter()
        summary, hashed = run_pipeline(directory, excluded, pids, args.timeout)
        elapsed = time.perf_counter() - started
    except TimeoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        rmprocs(*pids)

    print_summary(directory, summary)
    print_timing(summary, elapsed, f"on {format_worker_count(len(pids))}")
    per_worker = ", ".join(f"worker {pid}: {count}" for pid, count in sorted(hashed.items()))
    print(f"time: files hashed per worker: {per_worker}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
