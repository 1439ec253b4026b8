"""The static-file handler: a request in, a response out, whose body may be a region of a file.

What this module knows: the filesystem under one directory (the "document root") and the HTTP
semantics of serving it: mapping a request-target to a file, MIME types, validators (ETag,
Last-Modified), conditional requests, byte ranges, redirects and directory listings. Two helpers
keep it readable: ``evserver.static_conditions`` (the pure RFC 9110 13/14 rules on header values)
and ``evserver.static_listing`` (scanning a directory and rendering its HTML page).
What it must not know: sockets, connections, keep-alive, the ``Date`` and ``Server`` fields (the
protocol adds the status line, ``Date``, ``Server`` and ``Connection``). It never sends a
file: a large body is a :class:`~evserver.bodies.FileRegion` that the transport
sends with ``os.sendfile``.

Invariants:

- It never raises for a client mistake. Bad paths, bad ranges, bad dates all give a response;
  an exception means a bug (the protocol turns it into 500).
- It never serves a byte outside the root. Every path is checked before it is opened; the cache
  (below) only holds paths that passed the check, and re-verifies the file's identity before use.
- It never leaks a descriptor: each ``os.open`` is closed on every path, unless the descriptor
  leaves inside a ``FileRegion`` with ``close_after=True`` (then the consumer releases it).
- Open first, then ``fstat``, then decide, with one errno table (:data:`_STATUS_FOR_ERRNO`).
  Files are opened with ``O_NONBLOCK`` so a FIFO in the tree cannot hang the server (it is then
  refused: not a regular file).

Decisions on request-targets (RFC 9110 4.2 and 7.1, RFC 9112 3.2 leave them to the server):

- Origin-form and absolute-form (``http``/``https``, non-empty authority) are served; the path is
  taken and the query dropped. ``*`` is only meaningful for OPTIONS (204); with GET/HEAD, it and
  the authority-form are 400. Methods other than GET, HEAD, OPTIONS get 405 with ``Allow``.
- The path is split on ``/`` and each segment percent-decoded ONCE as UTF-8. "Malformed" is 400:
  an invalid %-escape, invalid UTF-8 (including overlong forms like ``%c0%ae``), a NUL (raw or
  ``%00``: POSIX names cannot hold it), a ``#``. "A name that cannot be served" is 404: a ``.`` or
  ``..`` segment (raw or encoded: never normalised, never silently dropped as ``http.server``
  does), an encoded slash ``%2F`` (a name never contains "/"), a backslash (raw or ``%5C``:
  a Windows separator, refused so ``..\\`` tricks mean nothing), an empty segment (``//``) other
  than the final one. So a path never reaches a file by normalisation (``a/../b``, ``a//b``); the
  cache is keyed by the raw path, so ``/%69ndex.html`` and ``/index.html`` are two entries for one
  file (bounded like every entry).
  Double encoding stays literal: ``%252e%252e`` names a file called ``%2e%2e``.
- Symlinks: without ``follow_symlinks`` a path whose fully resolved location lies outside the root
  is 404 (as if absent: the client learns nothing about the outside); symlinks that stay inside
  are served. With ``follow_symlinks`` every symlink is followed. The check resolves the path
  (``os.path.realpath``) and opens the resolved path with ``O_NOFOLLOW``; it defends against
  clients, not against a local user swapping directories for symlinks between the two calls.
- Dotfiles are served and listed (like ``http.server``); hiding them is the operator's job.
- A directory without a trailing slash: 301 to the same path plus ``/`` and the original query,
  an absolute path re-encoded with ``urllib.parse.quote`` (RFC 9110 10.2.2 allows a relative
  reference). With the slash: the first existing name of ``index_names``, else a listing, else
  (listing off) 403 as nginx does. A regular file with a trailing slash is 404.
- OPTIONS on any target is 204 with ``Allow`` and no Content-Length (RFC 9110 8.6, 9.3.7).
- Range is honoured for GET only (RFC 9110 14.2: a server MUST ignore it for other methods), so
  HEAD with Range answers as a HEAD without Range (200).
- Error pages are tiny HTML documents; a HEAD gets their fields without the body.
- Field lines are built by ``evserver.http.response.serialize_fields``, which refuses CR, LF and
  NUL in a value: the last line of defence against header injection (names only ever reach
  ``Location`` percent-encoded, so it never fires for a client's input).

Speed (issue 7): a plain ``GET`` or ``HEAD`` of a cached small file costs one dictionary lookup,
one ``os.stat`` compared with the entry's signature (or, when the driver groups requests into
rounds, one such check per round: :attr:`StaticHandler.check_round`), and one set test proving
the request has no conditional or Range field; the answer is then a ``Response`` built once per
cache entry and shared by every request (nobody mutates a ``Response``: the protocol only reads
it). No path parsing, no open, no descriptor, no allocation. See :class:`_FileEntry` for why
that stays correct when files change.
"""

from __future__ import annotations

import errno
import html
import logging
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from mimetypes import MimeTypes
from typing import Final
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes

from evserver.bodies import FileRegion, Item, Response
from evserver.http.dates import format_http_date
from evserver.http.errorpage import error_page
from evserver.http.events import Request
from evserver.http.response import serialize_fields
from evserver.static_conditions import (
    evaluate_preconditions,
    if_range_holds,
    parse_byte_ranges,
)
from evserver.static_listing import listing_page

_log = logging.getLogger("evserver.static")

SMALL_FILE_CACHE_LIMIT: Final = 64 * 1024
"""Files up to this size are kept in memory: one send carries head and body, no descriptor."""

CACHE_MAX_ENTRIES: Final = 1024
"""Entries in the path cache; a site's hot set is small, and a flood of distinct URLs only
evicts (each entry is a few hundred bytes plus its data)."""

CACHE_MAX_BYTES: Final = 32 * 1024 * 1024
"""File data held by the cache in total, so memory stays bounded whatever the tree holds."""

RACY_WINDOW_SECONDS: Final = 2.0
"""A file changed less than this long ago is not cached: filesystem timestamps are coarse (a
kernel tick), so two writes within one tick can leave the same (size, mtime, ctime) behind. This
is git's "racily clean" rule."""

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
"""O_NONBLOCK: opening a FIFO for reading must not wait for a writer (it is then refused)."""

_ALLOW: Final = "GET, HEAD, OPTIONS"
_NANOSECONDS: Final = 1_000_000_000

_STATUS_FOR_ERRNO: Final = {
    errno.ENOENT: 404,
    errno.ENOTDIR: 404,
    errno.ENAMETOOLONG: 404,
    errno.ENXIO: 404,  # a socket file, or a device without a driver: not a regular file anyway
    errno.EACCES: 403,
    errno.EPERM: 403,
    errno.ELOOP: 403,  # a symlink loop, or O_NOFOLLOW meeting a symlink
    # Out of descriptors or memory: the server is overloaded, not broken, and the client may
    # retry (RFC 9110 15.6.4). No log line per request: the accept loop already says it once.
    errno.EMFILE: 503,
    errno.ENFILE: 503,
    errno.ENOMEM: 503,
}
"""The one errno -> status table (nginx's static module). Anything else is 500 plus a log line."""

_TEXT_LIKE_TYPES: Final = frozenset(
    {"application/javascript", "application/json", "application/xml"}
)
"""Types that are text and get ``charset=utf-8`` like every ``text/*`` type."""

_COMPRESSED_TYPES: Final = {
    ".gz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".br": "application/x-brotli",
    ".z": "application/x-compress",
}
"""mimetypes treats these as content *encodings* of the inner type; a static server sends the
file as it is, so it is its own type (no Content-Encoding is ever added)."""


def _build_content_types() -> dict[str, str]:
    """Extension (lower case) -> Content-Type value, from Python's built-in table only.

    A private ``MimeTypes`` starts from the built-in defaults and ignores /etc/mime.types, so the
    answers are the same on every machine (and in tests).
    """
    table = MimeTypes()
    types = dict(table.types_map[False])  # non-strict: common extras such as .jpg, .rtf
    types.update(table.types_map[True])
    types.update(_COMPRESSED_TYPES)
    result = {}
    for extension, media_type in types.items():
        if media_type.startswith("text/") or media_type in _TEXT_LIKE_TYPES:
            media_type += "; charset=utf-8"
        result[extension.lower()] = media_type
    return result


_CONTENT_TYPES: Final = _build_content_types()
_DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"


def content_type_for(name: str) -> str:
    """The Content-Type for a file name, from its last extension (case-insensitive)."""
    dot = name.rfind(".")
    if dot <= 0:  # no extension, or a dotfile such as ".bashrc"
        return _DEFAULT_CONTENT_TYPE
    return _CONTENT_TYPES.get(name[dot:].lower(), _DEFAULT_CONTENT_TYPE)


_ALLOW_FIELD: Final = serialize_fields([("Allow", _ALLOW)])

_SPECIAL_FIELDS: Final = frozenset(
    {"if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "range"}
)
"""Fields that can change the answer for a file (RFC 9110 13.1 preconditions, 14.2 Range). A
request with none of them gets the entry's shared 200; ``isdisjoint`` tests them in one C call
(it walks the request's few field names) instead of five ``in`` tests."""


def _error(status: int, head_only: bool, extra_fields: bytes = b"") -> Response:
    fields, body = error_page(status)  # built once per status, shared with the protocol
    if head_only:
        return Response(status, extra_fields + fields)
    return Response(status, extra_fields + fields, (body,), len(body))


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class _FileEntry:
    """What the handler knows about one regular file, reusable while the file is unchanged.

    Why a cached entry stays correct when the file changes: ``signature`` is (st_dev, st_ino,
    st_size, st_mtime_ns, st_ctime_ns) and it is re-read (``os.stat`` of ``fs_path``, or
    ``fstat`` of a fresh descriptor) before the entry is used: on every request, or once per
    round of requests (:attr:`StaticHandler.check_round`). Any write changes
    mtime and ctime (and nobody can set ctime back), a truncation changes the size too, a
    replacement by rename changes the inode, a different filesystem changes the device. The one
    blind spot, two writes within one coarse timestamp tick, is closed by not caching a file
    changed within :data:`RACY_WINDOW_SECONDS`. The remaining window: between our ``stat`` and the
    moment the cached bytes leave, the file may change; we then send the complete previous
    version, as if the request had arrived a moment earlier. Never a mix of the two.

    Why the cache cannot bypass the symlink check: an entry is only created after the full check,
    and the identity in the signature (device and inode) means the path still leads to that very
    file; if a symlink on the way is redirected elsewhere, the inode differs and the request takes
    the full path again.
    """

    __slots__ = (
        "checked_round",
        "content_type",
        "data",
        "etag",
        "fields_200",
        "fs_path",
        "last_modified",
        "modified_second",
        "response_get",
        "response_head",
        "signature",
        "size",
    )

    def __init__(self, fs_path: str, st: os.stat_result, content_type: str) -> None:
        self.fs_path = fs_path
        self.signature = _signature(st)
        self.checked_round: int | None = None
        """The :attr:`StaticHandler.check_round` in which ``signature`` was last verified."""
        self.size = st.st_size
        self.modified_second = st.st_mtime_ns // _NANOSECONDS
        # A strong validator (RFC 9110 8.8.3): it changes whenever the bytes can have changed.
        self.etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        self.last_modified = format_http_date(self.modified_second)
        self.content_type = content_type
        self.fields_200 = serialize_fields(
            [
                ("Content-Type", content_type),
                ("Content-Length", str(st.st_size)),
                ("Last-Modified", self.last_modified),
                ("ETag", self.etag),
                ("Accept-Ranges", "bytes"),
            ]
        )
        self.data: bytes | None = None
        # The plain 200 answers, built once when the bytes are cached (see ``cache_data``).
        self.response_get: Response | None = None
        self.response_head: Response | None = None

    def cache_data(self, data: bytes) -> None:
        """Keep the file's bytes and build the shared plain-200 responses for GET and HEAD."""
        self.data = data
        self.response_head = Response(200, self.fields_200)
        self.response_get = (
            Response(200, self.fields_200, (data,), len(data)) if data else self.response_head
        )

    def validator_fields(self) -> list[tuple[str, str]]:
        return [("Last-Modified", self.last_modified), ("ETag", self.etag)]


def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StaticHandler:
    """Serve the tree under ``root``. Call it with a parsed :class:`Request`.

    Shared by every connection (and, in the threaded server, by every thread): its only mutable
    state is the cache, whose operations are single dictionary calls, each atomic under the GIL;
    a race between two threads at worst drops or recomputes an entry. The byte count beside it
    is not atomic (``+=`` from two threads can lose an update), so it is recounted from the
    entries whenever it says the cache is full, before anything is evicted.
    """

    clock: Callable[[], float] = staticmethod(time.time)
    """The wall clock, only for the racy-window test of the cache; tests replace it."""

    def __init__(
        self,
        root: str,
        *,
        index_names: tuple[str, ...] = ("index.html",),
        listing: bool = True,
        follow_symlinks: bool = False,
    ) -> None:
        self._root = os.path.realpath(root)
        self._root_prefix = self._root.rstrip("/") + "/"
        self._index_names = tuple(index_names)
        self._listing = listing
        self._follow_symlinks = follow_symlinks
        self._cache: OrderedDict[str, _FileEntry] = OrderedDict()
        self._cache_bytes = 0
        self.check_round: int | None = None
        """None (the default): a cached small file is re-verified with ``os.stat`` on every
        request. An int: the driver groups requests into rounds and advances this number between
        them; a cached file is then verified once per round, by its first request, and the
        round's later requests trust that check. The evented server advances it once per loop
        iteration (see its module docstring for why that is as safe as a stat per request); the
        threaded server leaves it None, since its threads have no common rounds."""

    @property
    def root(self) -> str:
        return self._root

    def __call__(self, request: Request) -> Response:
        method = request.method
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":  # RFC 9110 9.3.7; 204 carries no Content-Length (8.6)
                return Response(204, _ALLOW_FIELD)
            return _error(405, False, _ALLOW_FIELD)  # RFC 9110 15.5.6: 405 MUST carry Allow
        target = request.target
        if target[:1] == "/":
            path, _, query = target.partition("?")
        else:
            split = _split_absolute_form(target)
            if split is None:
                return _error(400, method == "HEAD")
            path, query = split
        entry = self._cache.get(path)
        if entry is not None:
            response = self._serve_cached(request, path, entry)
            if response is not None:
                return response
        return self._serve_path(request, path, query)

    # -- the fast path ------------------------------------------------------------------------

    def _serve_cached(self, request: Request, key: str, entry: _FileEntry) -> Response | None:
        """Answer from a cache entry after re-verifying it, or ``None`` (then the full path)."""
        if entry.data is not None:
            check_round = self.check_round
            if check_round is None or entry.checked_round != check_round:
                try:
                    st = os.stat(entry.fs_path)
                except OSError:
                    self._forget(key)
                    return None
                # The signature check of _signature(), written out: it runs per request or round.
                if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) \
                        != entry.signature:
                    self._forget(key)
                    return None
                entry.checked_round = check_round
            try:
                self._cache.move_to_end(key)
            except KeyError:  # another thread evicted it meanwhile; the entry is still valid
                pass
            if _SPECIAL_FIELDS.isdisjoint(request.headers):  # the shared plain 200
                if request.method == "HEAD":
                    return entry.response_head
                return entry.response_get
            return self._respond_with_file(request, entry, None)
        # A large file: a descriptor is needed anyway; open the path (following symlinks) and
        # check that the descriptor is the verified file itself, which makes the check race-free.
        try:
            fd = os.open(entry.fs_path, _OPEN_FLAGS)
        except OSError:
            self._forget(key)
            return None
        try:
            same = _signature(os.fstat(fd)) == entry.signature
        except OSError:
            same = False
        if not same:
            _close_quietly(fd)
            self._forget(key)
            return None
        return self._respond_with_file(request, entry, fd)

    def _remember(self, key: str, entry: _FileEntry) -> None:
        size = len(entry.data) if entry.data is not None else 0
        if size > CACHE_MAX_BYTES:
            return
        self._forget(key)
        self._cache[key] = entry
        self._cache_bytes += size
        if self._cache_bytes > CACHE_MAX_BYTES:  # rare: recount, so a lost update cannot stick
            self._cache_bytes = sum(len(e.data) for e in list(self._cache.values())
                                    if e.data is not None)
        try:
            while len(self._cache) > CACHE_MAX_ENTRIES or self._cache_bytes > CACHE_MAX_BYTES:
                _, evicted = self._cache.popitem(last=False)
                self._cache_bytes -= len(evicted.data) if evicted.data is not None else 0
        except KeyError:  # emptied by another thread
            pass

    def _forget(self, key: str) -> None:
        evicted = self._cache.pop(key, None)
        if evicted is not None and evicted.data is not None:
            self._cache_bytes -= len(evicted.data)

    # -- the full path ------------------------------------------------------------------------

    def _serve_path(self, request: Request, path: str, query: str) -> Response:
        head_only = request.method == "HEAD"
        names = _decode_path(path)
        if isinstance(names, int):
            return _error(names, head_only)
        trailing_slash = names[-1] == ""
        fs_path = self._root_prefix + "/".join(names)
        opened = self._open_inside_root(fs_path)
        if isinstance(opened, int):
            return _error(opened, head_only)
        fd, st = opened
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            _close_quietly(fd)
            if not trailing_slash:
                return _redirect_to_directory(names, query, head_only)
            return self._serve_directory(request, path, fs_path, names)
        if not stat.S_ISREG(mode) or trailing_slash:
            _close_quietly(fd)
            return _error(404, head_only)
        return self._serve_opened_file(request, path, fs_path, fd, st, names[-1], cacheable=True)

    def _open_inside_root(self, fs_path: str) -> tuple[int, os.stat_result] | int:
        """Open ``fs_path`` if it lies inside the root: ``(fd, fstat)`` or an error status."""
        open_path = fs_path
        flags = _OPEN_FLAGS
        try:
            if not self._follow_symlinks:
                open_path = os.path.realpath(fs_path)
                if open_path != self._root and not open_path.startswith(self._root_prefix):
                    return 404  # a symlink leads out of the root: as if it did not exist
                flags |= os.O_NOFOLLOW  # the resolved path has no symlink left to follow
            fd = os.open(open_path, flags)
        except OSError as error:
            return _status_for_os_error(error, fs_path)
        try:
            return fd, os.fstat(fd)
        except OSError as error:
            _close_quietly(fd)
            return _status_for_os_error(error, fs_path)

    def _serve_opened_file(
        self,
        request: Request,
        key: str,
        fs_path: str,
        fd: int,
        st: os.stat_result,
        name: str,
        *,
        cacheable: bool,
    ) -> Response:
        """Build the entry for a freshly opened regular file (reading it if small), answer."""
        try:
            entry = _FileEntry(fs_path, st, content_type_for(name))
            if st.st_size <= SMALL_FILE_CACHE_LIMIT:
                data = _read_exactly(fd, st.st_size)
                if data is not None and _signature(os.fstat(fd)) == entry.signature:
                    entry.cache_data(data)
                    _close_quietly(fd)
                    fd = -1
                else:
                    cacheable = False  # changing under us: send it as a region, never cache
            if cacheable and self._settled(st):
                self._remember(key, entry)
            return self._respond_with_file(request, entry, None if fd < 0 else fd)
        except OSError as error:
            if fd >= 0:
                _close_quietly(fd)
            return _error(_status_for_os_error(error, fs_path), request.method == "HEAD")
        except BaseException:
            if fd >= 0:
                _close_quietly(fd)
            raise

    def _settled(self, st: os.stat_result) -> bool:
        last_change = max(st.st_mtime_ns, st.st_ctime_ns) / _NANOSECONDS
        return self.clock() - last_change >= RACY_WINDOW_SECONDS

    # -- directories ----------------------------------------------------------------------------

    def _serve_directory(
        self, request: Request, key: str, dir_fs_path: str, names: list[str]
    ) -> Response:
        """A directory with a trailing slash: its index file, its listing, or 403."""
        head_only = request.method == "HEAD"
        for index_name in self._index_names:
            opened = self._open_inside_root(dir_fs_path + index_name)
            if opened == 404:
                continue
            if isinstance(opened, int):
                return _error(opened, head_only)  # e.g. an unreadable index.html: 403
            fd, st = opened
            if not stat.S_ISREG(st.st_mode):
                _close_quietly(fd)
                continue
            # Only the first index name is cached under the directory's URL: if a later one were
            # cached, creating an earlier one would not be noticed by the signature check.
            return self._serve_opened_file(
                request,
                key,
                dir_fs_path + index_name,
                fd,
                st,
                index_name,
                cacheable=index_name == self._index_names[0],
            )
        if not self._listing:
            return _error(403, head_only)
        try:
            real_dir = dir_fs_path if self._follow_symlinks else os.path.realpath(dir_fs_path)
            url_path = "/" + "".join(name + "/" for name in names if name)
            body = listing_page(
                real_dir, url_path, self._root, follow_symlinks=self._follow_symlinks
            )
        except OSError as error:
            return _error(_status_for_os_error(error, dir_fs_path), head_only)
        fields = serialize_fields(
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
        )
        if head_only:
            return Response(200, fields)
        return Response(200, fields, (body,), len(body))

    # -- answering for a regular file ----------------------------------------------------------

    def _respond_with_file(self, request: Request, entry: _FileEntry, fd: int | None) -> Response:
        """The 200, 206, 304, 412 or 416 for ``entry``. ``fd`` is consumed (closed or handed on).

        ``fd`` is ``None`` when the bytes are in ``entry.data``.
        """
        try:
            headers = request.headers
            method = request.method
            head_only = method == "HEAD"
            if (
                "if-match" in headers
                or "if-none-match" in headers
                or "if-modified-since" in headers
                or "if-unmodified-since" in headers
            ):
                outcome = evaluate_preconditions(
                    headers, entry.etag, entry.modified_second, safe_method=True
                )
                if outcome == 304:  # RFC 9110 15.4.5: no body; the validators are sent
                    return Response(304, serialize_fields(entry.validator_fields()))
                if outcome == 412:
                    return _error(412, head_only)
            if not head_only and "range" in headers:  # RFC 9110 14.2: GET only
                response = self._ranged_response(headers, entry, fd)
                if response is not None:
                    fd = None  # consumed
                    return response
            if head_only or entry.size == 0:
                return Response(200, entry.fields_200)
            if entry.data is not None:
                return Response(200, entry.fields_200, (entry.data,), entry.size)
            assert fd is not None
            region = FileRegion(fd, 0, entry.size, close_after=True)
            fd = None  # the region owns it now
            return Response(200, entry.fields_200, (region,), entry.size)
        finally:
            if fd is not None:
                _close_quietly(fd)

    def _ranged_response(
        self, headers: dict[str, str], entry: _FileEntry, fd: int | None
    ) -> Response | None:
        """206 or 416 for a Range header, consuming ``fd``; ``None`` to send the whole file."""
        if_range = headers.get("if-range")
        if if_range is not None and not if_range_holds(
            if_range, entry.etag, entry.modified_second
        ):
            return None  # RFC 9110 13.1.5: the validator failed, send the whole representation
        ranges = parse_byte_ranges(headers["range"], entry.size)
        if ranges is None:
            return None
        if not ranges:  # RFC 9110 15.5.17
            if fd is not None:
                _close_quietly(fd)
            content_range = serialize_fields([("Content-Range", f"bytes */{entry.size}")])
            return _error(416, False, content_range)
        if len(ranges) == 1:
            first, last = ranges[0]
            count = last - first + 1
            fields = serialize_fields(
                [
                    ("Content-Type", entry.content_type),
                    ("Content-Length", str(count)),
                    ("Content-Range", f"bytes {first}-{last}/{entry.size}"),
                    ("Accept-Ranges", "bytes"),
                    *entry.validator_fields(),
                ]
            )
            piece = _piece(entry, fd, first, count, owns_fd=True)
            return Response(206, fields, (piece,), count)
        return _multipart_response(entry, fd, ranges)


def _piece(entry: _FileEntry, fd: int | None, first: int, count: int, *, owns_fd: bool) -> Item:
    if entry.data is not None:
        return entry.data[first : first + count]
    assert fd is not None
    return FileRegion(fd, first, count, close_after=owns_fd)


def _multipart_response(
    entry: _FileEntry, fd: int | None, ranges: list[tuple[int, int]]
) -> Response:
    """RFC 9110 14.6: ``multipart/byteranges``; parts share ``fd``, only the last one owns it."""
    # A random boundary per response cannot occur in the file by accident (RFC 2046 5.1.1).
    boundary = secrets.token_hex(16)
    body: list[Item] = []
    length = 0
    last_index = len(ranges) - 1
    for index, (first, last) in enumerate(ranges):
        part_head = (
            f"\r\n--{boundary}\r\nContent-Type: {entry.content_type}\r\n"
            f"Content-Range: bytes {first}-{last}/{entry.size}\r\n\r\n"
        ).encode("ascii")
        count = last - first + 1
        body.append(part_head)
        body.append(_piece(entry, fd, first, count, owns_fd=index == last_index))
        length += len(part_head) + count
    closing = f"\r\n--{boundary}--\r\n".encode("ascii")
    body.append(closing)
    length += len(closing)
    fields = serialize_fields(
        [
            ("Content-Type", f"multipart/byteranges; boundary={boundary}"),
            ("Content-Length", str(length)),
            ("Accept-Ranges", "bytes"),
            *entry.validator_fields(),
        ]
    )
    return Response(206, fields, tuple(body), length)


def _read_exactly(fd: int, size: int) -> bytes | None:
    """The first ``size`` bytes of ``fd``, or ``None`` if the file ended early (it shrank)."""
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            return None
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _status_for_os_error(error: OSError, fs_path: str) -> int:
    status = _STATUS_FOR_ERRNO.get(error.errno or 0)
    if status is None:
        _log.error("cannot serve %r: %s", fs_path, error)
        return 500
    return status


def _split_absolute_form(target: str) -> tuple[str, str] | None:
    """``(path, query)`` of an absolute-form target (RFC 9112 3.2.2), or ``None`` (400)."""
    scheme_end = target.find("://")
    if scheme_end < 0 or target[:scheme_end].lower() not in ("http", "https"):
        return None
    rest = target[scheme_end + 3 :]
    authority_end = len(rest)
    for delimiter in "/?":  # (no "#": the parser rejects a fragment in a request-target)
        found = rest.find(delimiter)
        if 0 <= found < authority_end:
            authority_end = found
    if authority_end == 0:
        return None  # RFC 9110 4.2.1: an http URI with an empty host is invalid
    path, _, query = rest[authority_end:].partition("?")
    return (path or "/"), query


def _decode_path(raw_path: str) -> list[str] | int:
    """The path's segments, each percent-decoded once as UTF-8, or an error status.

    The result is never empty; its last element is ``""`` when the path ends with ``/``. No
    element is ``.`` or ``..``, none holds ``/``, ``\\`` or NUL, and only the last may be empty,
    so joining them under the root cannot leave it lexically.
    """
    names = raw_path[1:].split("/")
    last = len(names) - 1
    for index, raw in enumerate(names):
        if "#" in raw:
            return 400  # a fragment is never part of a request-target (RFC 9112 3.2)
        octets = raw.encode("latin-1")  # the parser's strings map bytes 1:1 to characters
        if "%" in raw:
            if not _percent_escapes_valid(raw):
                return 400
            octets = unquote_to_bytes(octets)
        try:
            name = octets.decode("utf-8")  # strict: overlong forms and surrogates fail
        except UnicodeDecodeError:
            return 400
        if "\0" in name:
            return 400
        if not name:
            if index != last:
                return 404
        elif name == "." or name == ".." or "/" in name or "\\" in name:
            return 404
        names[index] = name
    return names


def _percent_escapes_valid(raw: str) -> bool:
    position = raw.find("%")
    while position >= 0:
        escape = raw[position + 1 : position + 3]
        if len(escape) != 2 or not all(c in "0123456789abcdefABCDEF" for c in escape):
            return False
        position = raw.find("%", position + 3)
    return True


def _redirect_to_directory(names: list[str], query: str, head_only: bool) -> Response:
    """RFC 9110 15.4.2: 301 to the path with a trailing slash, the query kept."""
    location = "/" + "".join(quote(name, safe="") + "/" for name in names)
    if query:
        # The query is passed on as sent; anything not printable ASCII is percent-encoded so
        # the field can never carry a control character.
        location += "?" + quote_from_bytes(query.encode("latin-1"), safe="!$&'()*+,;=:@/?%")
    body = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>301 Moved Permanently</title>'
        f'</head>\n<body><a href="{html.escape(location)}">Moved here</a></body></html>\n'
    ).encode("ascii")
    fields = serialize_fields(
        [
            ("Location", location),
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ]
    )
    if head_only:
        return Response(301, fields)
    return Response(301, fields, (body,), len(body))
