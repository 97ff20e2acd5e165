"""The example scripts print the same results as a computation in one process.

Each test builds a small directory tree, runs the example with two workers, and
compares its report with a count or digest computed here in the test, written
independently of the example's code, and with the example's own ``--serial`` run.
"""

from __future__ import annotations

import collections
import hashlib
import os
import random
import re
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, run_script

EXAMPLES_DIR = REPO_ROOT / "examples"
SCRIPT_TIMEOUT = 120

VOCABULARY = [
    "alpha", "Beta", "GAMMA", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda_", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon",
    "phi", "chi", "psi", "omega", "__init__", "utf8", "x1", "_private",
]
# Tokens that end words or are not words: digits first, punctuation, non-ASCII letters.
NOISE = ["3rd", "42", "--", "(", ")", "é", "naïve", "ünïcode", "a.b", "c-d", "\t", "\n"]


def write_text_tree(root: Path) -> None:
    """Write a small tree of text files, with the cases the examples must skip or handle."""
    generator = random.Random(20240601)
    # Zipf-like weights make most counts distinct, so the top 20 differ clearly.
    weights = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]
    for directory_index in range(3):
        directory = root / f"part{directory_index}" / "nested"
        directory.mkdir(parents=True)
        for file_index in range(8):
            words = generator.choices(VOCABULARY, weights=weights, k=200 + 50 * file_index)
            noise = generator.choices(NOISE, k=40)
            tokens = words + noise
            generator.shuffle(tokens)
            (directory / f"text{file_index}.txt").write_text(" ".join(tokens), encoding="utf-8")

    # Larger than the examples' 1 MiB read chunk, so a word straddles a chunk boundary.
    big_words = generator.choices(VOCABULARY, weights=weights, k=300_000)
    (root / "big.txt").write_text(" ".join(big_words), encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "binary.dat").write_bytes(b"alpha beta\0gamma" + bytes(range(256)))
    (root / "invalid_utf8.txt").write_bytes(b"omega \xff\xfe omega\n")
    pycache = root / "part0" / "__pycache__"
    pycache.mkdir()
    (pycache / "module.cpython-311.pyc").write_text("alpha " * 1000)
    os.symlink(root / "big.txt", root / "link_to_big.txt")


def regular_files(root: Path) -> list[Path]:
    """Return the regular files under root, skipping symbolic links and __pycache__ directories."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink() and path.is_file():
                found.append(path)
    return found


def expected_wordcount_report(root: Path) -> list[str]:
    words: collections.Counter = collections.Counter()
    counted_files = 0
    binary_files = 0
    total_bytes = 0
    for path in regular_files(root):
        content = path.read_bytes()
        if b"\0" in content[:8000]:
            binary_files += 1
            continue
        counted_files += 1
        total_bytes += len(content)
        for token in re.findall(rb"[a-z0-9_]+", content.lower()):
            if not token[:1].isdigit():
                words[token.decode("ascii")] += 1

    top = sorted(words.items(), key=lambda item: (-item[1], item[0]))[:20]
    width = max(len(word) for word, _ in top)
    return [
        f"directory: {root}",
        f"files: {counted_files} counted, {binary_files} binary skipped, 0 unreadable skipped",
        f"bytes: {total_bytes}",
        f"words: {sum(words.values())} total, {len(words)} distinct",
        f"top {len(top)} words:",
        *(f"{rank:4d}  {word:<{width}}  {count:>10d}" for rank, (word, count) in enumerate(top, start=1)),
    ]


def expected_pipeline_report(root: Path) -> list[str]:
    lines = []
    total_bytes = 0
    for path in regular_files(root):
        content = path.read_bytes()
        total_bytes += len(content)
        relative = os.fsencode(path.relative_to(root))
        lines.append((relative, hashlib.sha256(content).hexdigest()))
    lines.sort()
    listing = b"".join(digest.encode("ascii") + b"  " + relative + b"\n" for relative, digest in lines)
    return [
        f"directory: {root}",
        f"files: {len(lines)} hashed, 0 unreadable",
        f"bytes: {total_bytes}",
        f"combined sha256: {hashlib.sha256(listing).hexdigest()}",
    ]


def report_lines(stdout_lines: list[str]) -> list[str]:
    """Drop the timing lines, which differ between runs."""
    return [line for line in stdout_lines if not line.startswith("time:")]


@pytest.fixture
def text_tree(scratch_dir):
    root = scratch_dir / "texts"
    root.mkdir()
    write_text_tree(root)
    return root


def run_example(name: str, args: list[str], cwd: Path) -> list[str]:
    script = EXAMPLES_DIR / name
    if not script.exists():
        pytest.fail(f"example script {script} not found")
    return run_script(script, timeout=SCRIPT_TIMEOUT, args=args, cwd=cwd).stdout_lines()


def test_wordcount_matches_single_process_count(text_tree, scratch_dir):
    expected = expected_wordcount_report(text_tree)

    parallel = run_example("wordcount.py", ["--workers", "2", str(text_tree)], cwd=scratch_dir)
    serial = run_example("wordcount.py", ["--serial", str(text_tree)], cwd=scratch_dir)

    assert report_lines(parallel) == expected
    assert report_lines(serial) == expected
    assert any(line.startswith("time:") and "MB/s" in line for line in parallel)


def test_pipeline_matches_single_process_digest(text_tree, scratch_dir):
    expected = expected_pipeline_report(text_tree)

    parallel = run_example("pipeline.py", ["--workers", "2", str(text_tree)], cwd=scratch_dir)
    serial = run_example("pipeline.py", ["--serial", str(text_tree)], cwd=scratch_dir)

    assert report_lines(parallel) == expected
    assert report_lines(serial) == expected
    assert any(line.startswith("time:") and "MB/s" in line for line in parallel)


def test_wordcount_over_ssh_matches(text_tree, scratch_dir):
    from tests.sshd import SSHServer, require_ssh

    require_ssh()
    server = SSHServer().start()
    try:
        flags = " ".join(server.client_flags)
        machine = f"root@127.0.0.1:{server.port}"
        over_ssh = run_example("wordcount.py", ["--machines", machine, "--workers", "2", "--sshflags", flags,
                                                str(text_tree)], cwd=scratch_dir)
    finally:
        server.stop()

    assert report_lines(over_ssh) == expected_wordcount_report(text_tree)
    assert any("starting 2 workers" in line for line in over_ssh)
