"""Document roots for tests and tools: the standard tree, and big files with their digests.

What this module knows: file names and contents. What it must not know: servers or HTTP; it
imports only the standard library, so tools (``tools/fuzz_server.py``) build the same tree as the
tests. The load experiments' deterministic tree is another thing, ``tools/docroot.py``.

The standard tree (every end-to-end, hostile and fuzzing test names these files)::

    index.html  small.txt ("hello, world\\n")  kib.bin (bytes 0..255, four times)
    medium.bin (300,000 random bytes)  sub/a.txt  noindex/x.css  "with space é.txt"
    big.bin (BIG_FILE_SIZE random bytes, only when asked for)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

BIG_FILE_SIZE = 20 * 1024 * 1024
"""Large enough that sendfile runs many partial rounds through a small socket buffer."""

BIG_FILE_BLOCK = 1024 * 1024
"""The random block a big file repeats with a counter: 20 MiB cost only 1 MiB of urandom."""


def make_docroot(root: Path, big: bool = False) -> Path:
    """The standard tree the end-to-end tests use."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text("<!DOCTYPE html><title>home</title><p>evserver test root\n")
    (root / "small.txt").write_text("hello, world\n")
    (root / "kib.bin").write_bytes(bytes(range(256)) * 4)
    (root / "medium.bin").write_bytes(os.urandom(300_000))
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "a.txt").write_text("in a folder\n")
    (root / "noindex").mkdir(exist_ok=True)
    (root / "noindex" / "x.css").write_text("p { color: red }\n")
    (root / "with space é.txt").write_text("spaces and UTF-8\n")
    if big:
        make_big_file(root / "big.bin")
    return root


def make_big_file(path: Path, size: int = BIG_FILE_SIZE) -> str:
    """Write a file of pseudo-random bytes (cheaply: a 1 MiB block repeated with a counter).

    Returns the file's SHA-256 in hex.
    """
    block = os.urandom(BIG_FILE_BLOCK)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for n in range(size // len(block)):
            piece = n.to_bytes(8, "big") + block[8:]
            f.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
