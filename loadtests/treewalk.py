"""What a load test can ask a server for: the files and pages of the folder it serves.

What this module knows: HTTP GET and HEAD through ``urllib``, links in HTML (``html.parser``),
and the ``manifest.json`` that ``tools/docroot.py`` writes. What it must not know: Locust (it
is imported by the locustfile, and by tests that must not load gevent) or which server answers.

How it finds files: it asks for ``/`` (a page: an index file or the folder's listing); if the
server has a ``/manifest.json`` in the docroot format, that lists every file with its size;
otherwise it follows the links of ``/`` and of every folder listing below it (links that end in
``/``), and asks each linked file's size with a ``HEAD`` request. That works with any server
that lists folders (evserver, ``python -m http.server``, nginx with ``autoindex``) and with a
site whose index page links its files.

Invariants: the walk is bounded (``MAX_PAGES`` pages, ``MAX_FILES`` files, ``MAX_DEPTH`` folder
levels, ``WALK_SECONDS`` in all) and stays on the server it was given (no other host, no query
strings, which listings use for sorting); every size is what the server itself announced; a
failure is never raised -- it becomes ``Tree.problem``, one line for the user.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

MAX_PAGES = 200
"""Pages (listings) read at most: a big folder tree is sampled, not crawled whole."""

MAX_FILES = 1000
"""Files sized at most (one HEAD each): plenty of variety for a load test."""

MAX_DEPTH = 8
"""Folder levels followed below ``/``: guards against symlink loops and deep trees."""

WALK_SECONDS = 30.0
"""The whole walk stops after this long and uses what it found."""

REQUEST_TIMEOUT = 5.0
"""Seconds for one request of the walk (a busy iterative server may be slow to answer)."""

MAX_PAGE_BYTES = 4 * 1024 * 1024
"""A page larger than this is not searched for links (a listing of 4 MiB is ~20,000 files)."""

MANIFEST_PATH = "/manifest.json"


@dataclass(frozen=True)
class Entry:
    path: str
    size: int


@dataclass
class Tree:
    """What the walk found on ``host``. ``source``: "manifest", "links" or "" (nothing)."""

    host: str
    source: str = ""
    pages: list[Entry] = field(default_factory=list)
    files: list[Entry] = field(default_factory=list)
    folders: int = 0
    problem: str = ""
    truncated: bool = False

    def files_between(self, low: int, high: int) -> list[Entry]:
        return [entry for entry in self.files if low <= entry.size <= high]

    def describe(self, small: int, large: int) -> str:
        """One line: where the files came from and how many of each kind there are."""
        if self.problem:
            return self.problem
        how = ("from its manifest.json" if self.source == "manifest" else
               f"in {self.folders} folder{'s' if self.folders != 1 else ''} of its listings")
        more = " (the walk stopped there)" if self.truncated else ""
        return (f"{self.host} has {len(self.files)} files {how}{more}: "
                f"{len(self.files_between(0, small))} up to {_size(small)}, "
                f"{len(self.files_between(large, 1 << 62))} of {_size(large)} or more")


def _size(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB" if size >= 1024 * 1024 else f"{size // 1024} KiB"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value for name, value in attrs if name == "href" and value)


def _request(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method,
                                     headers={"User-Agent": "evserver-treewalk"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            body = response.read(MAX_PAGE_BYTES) if method == "GET" else b""
            return response.status, dict(response.headers.items()), body
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), b""


def _length(headers: dict[str, str], body: bytes) -> int:
    """The body's size as announced (a page over MAX_PAGE_BYTES was read only in part)."""
    announced = headers.get("Content-Length", "")
    return int(announced) if announced.isdigit() else len(body)


def _manifest_files(host: str) -> list[Entry] | None:
    """The files of a docroot manifest, or None when there is none (or it is someone else's)."""
    try:
        status, _, body = _request(host + MANIFEST_PATH)
        data = json.loads(body) if status == 200 else None
    except (OSError, ValueError):
        return None
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        return None  # e.g. a web app's manifest.json: not ours, walk the links instead
    files = []
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and entry["path"].startswith("/") and isinstance(entry.get("size"), int)):
            return None
        files.append(Entry(entry["path"], entry["size"]))
    return files


def _same_server_path(base: str, page_url: str, href: str) -> str | None:
    """The path a link names on the same server, or None for elsewhere or a query link."""
    target = urlsplit(urljoin(page_url, href))
    origin = urlsplit(base)
    if (target.scheme, target.netloc) != (origin.scheme, origin.netloc) or target.query:
        return None
    return target.path or "/"


def walk(host: str) -> Tree:
    """Find the pages and files ``host`` serves (see the module docstring); never raises."""
    host = host.rstrip("/")
    tree = Tree(host)
    if not host.startswith(("http://", "https://")):
        tree.problem = f"cannot walk {host!r}: give the server as http://HOST:PORT"
        return tree
    try:
        status, headers, body = _request(host + "/")
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        tree.problem = f"cannot reach {host}/: {reason} (is the server running?)"
        return tree
    manifest = _manifest_files(host)
    if status == 200:
        tree.pages.append(Entry("/", _length(headers, body)))
    if manifest is not None:
        tree.source, tree.files = "manifest", manifest
        return tree
    if status != 200:
        tree.problem = (f"{host}/ answered {status}: no page to find files from (serve a folder "
                        f"with listings on, or add a manifest.json; see tools/docroot.py)")
        return tree
    _follow_links(tree, body, headers)
    if not tree.files and not tree.problem:
        tree.problem = f"{host}/ links no file: the served folder is empty (or lists nothing)"
    return tree


def _follow_links(tree: Tree, first_body: bytes, first_headers: dict[str, str]) -> None:
    """Breadth-first over the pages linked from ``/``: folders are read, files sized."""
    deadline = time.monotonic() + WALK_SECONDS
    seen = {"/"}
    pages: deque[tuple[str, int, bytes, dict[str, str]]] = deque(
        [("/", 0, first_body, first_headers)])
    tree.source, tree.folders = "links", 1
    while pages:
        path, depth, body, headers = pages.popleft()
        if "html" not in headers.get("Content-Type", "text/html"):
            continue
        parser = _Links()
        parser.feed(body.decode("utf-8", "replace"))
        for href in parser.links:
            target = _same_server_path(tree.host, tree.host + path, href)
            if target is None or target in seen or target == MANIFEST_PATH:
                continue
            seen.add(target)
            if time.monotonic() > deadline or len(tree.files) >= MAX_FILES:
                tree.truncated = True
                return
            if target.endswith("/"):
                if depth + 1 <= MAX_DEPTH and tree.folders < MAX_PAGES:
                    _read_folder(tree, target, depth + 1, pages)
                else:
                    tree.truncated = True
            else:
                _size_file(tree, target)


def _read_folder(tree: Tree, path: str, depth: int,
                 pages: deque[tuple[str, int, bytes, dict[str, str]]]) -> None:
    try:
        status, headers, body = _request(tree.host + path)
    except (OSError, ValueError):
        return
    if status == 200:
        tree.folders += 1
        tree.pages.append(Entry(path, _length(headers, body)))
        pages.append((path, depth, body, headers))


def _size_file(tree: Tree, path: str) -> None:
    try:
        status, headers, _ = _request(tree.host + path, "HEAD")
    except (OSError, ValueError):
        return
    length = headers.get("Content-Length", "")
    if status == 200 and length.isdigit():
        tree.files.append(Entry(path, int(length)))
