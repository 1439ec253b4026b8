"""The tree and helpers shared by the static handler's tests (no tests of its own).

Each test module defines its own two-line ``root`` and ``handler`` fixtures from
:func:`make_tree`, so no fixture is imported (which linters read as a redefinition).

The tree, under ``tmp_path``::

    root/        small.txt  large.bin (> SMALL_FILE_CACHE_LIMIT)  empty.txt  page.html
                 names with a space, UTF-8, a quote, < and >, '#', '%', CR/LF, a dotfile, '...'
                 sub/index.html     noindex/{file.txt, nested/}     unreadable.txt (mode 000)
                 link_in -> small.txt      dirlink_in -> sub        (inside the root)
                 link_out -> ../outside/secret.txt   dirlink_out -> ../outside   (outside)
                 dangling -> nowhere   loop -> loop   fifo
    outside/     secret.txt ("TOP SECRET")
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from evserver.bodies import FileRegion, Response
from evserver.http.events import Request
from evserver.static import SMALL_FILE_CACHE_LIMIT

SMALL = b"hello, static world\n"
LARGE = random.Random(7).randbytes(3 * SMALL_FILE_CACHE_LIMIT + 123)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def make_tree(base: Path) -> Path:
    root = base / "root"
    outside = base / "outside"
    root.mkdir()
    outside.mkdir()
    _write(outside / "secret.txt", b"TOP SECRET\n")
    _write(root / "small.txt", SMALL)
    _write(root / "large.bin", LARGE)
    _write(root / "empty.txt", b"")
    _write(root / "page.html", b"<!DOCTYPE html><p>page</p>\n")
    for name in ("with space.txt", "été.txt", 'quo"te.txt', "lt<gt>.txt", "hash#.txt",
                 "%literal", ".hidden", "...", "trailing."):
        _write(root / name, f"content of {name}\n".encode())
    try:
        _write(root / "cr\r\nlf.txt", b"crlf\n")
        (root / "dir\r\nSet-Cookie: x=1").mkdir()
    except OSError:
        pass
    (root / "sub").mkdir()
    _write(root / "sub" / "index.html", b"<p>sub index</p>\n")
    (root / "noindex").mkdir()
    (root / "noindex" / "nested").mkdir()
    _write(root / "noindex" / "file.txt", b"file in noindex\n")
    _write(root / "unreadable.txt", b"you should not read this\n")
    os.chmod(root / "unreadable.txt", 0)
    os.symlink("small.txt", root / "link_in")
    os.symlink("sub", root / "dirlink_in")
    os.symlink("../outside/secret.txt", root / "link_out")
    os.symlink("../outside", root / "dirlink_out")
    os.symlink("nowhere", root / "dangling")
    os.symlink("loop", root / "loop")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "fifo")
    return root


def request(target: str, method: str = "GET", **fields: str) -> Request:
    """A parsed request; keyword names use ``_`` for ``-`` (``if_none_match=...``)."""
    headers = {"host": "example.com"}
    for name, value in fields.items():
        headers[name.replace("_", "-")] = value
    raw = [(name, value) for name, value in headers.items()]
    return Request(method, target, "1.1", headers, raw, keep_alive=True)


def fields_of(response: Response) -> dict[str, str]:
    """The response's header lines as a dict with lower-case names (each name at most once)."""
    assert response.fields.endswith(b"\r\n") or response.fields == b""
    result = {}
    for line in response.fields.split(b"\r\n")[:-1]:
        name, _, value = line.decode("latin-1").partition(": ")
        assert name.lower() not in result, f"duplicate field {name}"
        result[name.lower()] = value
    return result


def field(response: Response, name: str) -> str:
    return fields_of(response)[name]


def body_of(response: Response) -> bytes:
    """Everything the body would send, read the way the transport would; releases descriptors."""
    pieces = []
    try:
        for item in response.body:
            if isinstance(item, FileRegion):
                pieces.append(os.pread(item.fd, item.count, item.offset))
            else:
                pieces.append(bytes(item))
    finally:
        response.release()
    body = b"".join(pieces)
    assert len(body) == response.body_length
    return body

