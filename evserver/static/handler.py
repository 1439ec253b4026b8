"""The file handler's entry: a request in, a response out; open, ``fstat``, decide.

What this module knows: the document root and how a file under it is opened safely (symlinks,
``O_NOFOLLOW``, ``O_NONBLOCK``), what each method gets, what a directory answers (redirect, index
file, listing, 403) and how a regular file is answered (from the cache, under conditions and
ranges). What it must not know: sockets, connections, keep-alive, the ``Date`` and ``Server``
fields (the protocol adds the status line, ``Date``, ``Server`` and ``Connection``). It never
sends a file: a large body is a :class:`~evserver.bodies.FileRegion` that the transport sends
with ``os.sendfile``.

Invariants:

- It never raises for a client mistake. Bad paths, bad ranges, bad dates all give a response:
  the helpers raise :class:`~evserver.static.refusals.Refusal`, which :meth:`StaticHandler.__call__`
  catches, in that one place, and answers with the error page. Any other exception means a bug
  (the protocol turns it into 500).
- It never serves a byte outside the root. Every path is checked before it is opened; the cache
  only holds paths that passed the check, and re-verifies the file's identity before use.
- It never leaks a descriptor: each ``os.open`` is closed on every path, unless the descriptor
  leaves inside a ``FileRegion`` with ``close_after=True`` (then the consumer releases it).
- Open first, then ``fstat``, then decide, with one errno table (``evserver.static.refusals``).
  Files are opened with ``O_NONBLOCK`` so a FIFO in the tree cannot hang the server (it is then
  refused: not a regular file).

Decisions (RFC 9110 leaves them to the server; those on request-targets are in
``evserver.static.paths``):

- Methods other than GET, HEAD, OPTIONS get 405 with ``Allow``. OPTIONS on any target (``*``
  included) is 204 with ``Allow`` and no Content-Length (RFC 9110 8.6, 9.3.7); with CORS on, a
  preflight gets its ``Access-Control-*`` fields too (``evserver.static.headers``).
- Symlinks: without ``follow_symlinks`` a path whose fully resolved location lies outside the root
  is 404 (as if absent: the client learns nothing about the outside); symlinks that stay inside
  are served. With ``follow_symlinks`` every symlink is followed. The check resolves the path
  (``os.path.realpath``) and opens the resolved path with ``O_NOFOLLOW``; it defends against
  clients, not against a local user swapping directories for symlinks between the two calls.
- Dotfiles are hidden unless ``dotfiles`` is on: a path through a name beginning with a dot is
  404 before any file is opened, and the listing leaves such names out; ``.well-known`` at the
  root is always served (``evserver.static.paths`` says why 404 and not 403).
- A directory without a trailing slash: 301 to the same path plus ``/`` and the original query
  (RFC 9110 15.4.2). With the slash: the first existing name of ``index_names``, else a listing,
  else (listing off) 403 as nginx does. A regular file with a trailing slash is 404.
- A listing is HTML unless ``Accept`` prefers ``application/json`` (``evserver.http.negotiation``),
  sorted as its query string asks (``evserver.static.listing``), with ``Vary: Accept`` and an
  ETag that digests its body (see :meth:`StaticHandler._serve_listing`).
- Range is honoured for GET only (RFC 9110 14.2: a server MUST ignore it for other methods), so
  HEAD with Range answers as a HEAD without Range (200).
- Error pages are tiny HTML documents, or the operator's page for that status
  (``error_pages``: read once at start-up and kept, so a page never fails or changes while the
  server runs; the status is kept); a HEAD gets their fields without the body.
- ``fallback`` (a single-page app's ``index.html``) answers GET and HEAD of a path that names
  nothing (no such file, or a symlink out of the root, which is answered as if absent) with 200
  and that file, served like any file (cached, conditional, ranged, negotiated), so a rebuilt
  app is seen at once. A path that exists and is refused (403, a hidden dotfile, a FIFO, a
  malformed path) keeps its error.
- Content codings (``evserver.static.encodings`` decides which): a file is also sent as its
  precompressed sidecar (``app.js.br``, ``.zst``, ``.gz``; ``precompressed``, on by default) when
  the request accepts that coding, and, with ``gzip``, small text files as gzip made in memory.
  Every answer for a file that has another representation says ``Vary: Accept-Encoding``, the
  identity one included. A sidecar is a file like any other: opened inside the root, answered
  with its own ETag, conditions and ranges over its bytes, sent with ``sendfile`` when large; one
  older than its file (stale) is ignored, and one asked for by its own name is served as itself
  (``application/gzip``...). A GET with Range never gets the gzip made in memory: its range is
  served from the file's own bytes, which stay the same across restarts and zlib versions (a
  resumed download is never a mix of two compressions), and that gzip says no
  ``Accept-Ranges``.
- Field lines are built by ``evserver.http.response.serialize_fields``, which refuses CR, LF and
  NUL in a value: the last line of defence against header injection (names only ever reach
  ``Location`` percent-encoded, so it never fires for a client's input).

Speed: a plain ``GET`` or ``HEAD`` of a cached small file costs one dictionary lookup, one
``os.stat`` compared with the entry's signature (or, when the driver groups requests into rounds,
one such check per round: :attr:`StaticHandler.check_round`), and one set test proving the request
has no field that could change the answer (the entry's ``answer_fields``: the conditional fields
and Range, and ``Accept-Encoding`` only for a file that has another representation); the answer
is then a ``Response`` built once per cache entry and shared by every request (nobody mutates a
``Response``: the protocol only reads it). No path parsing, no open, no descriptor, no
allocation. ``evserver.static.cache`` says why that stays correct when files change. The
operator's fields are inside the entry's shared fields, so they cost nothing per request; the
``try`` around the entry costs nothing until a refusal is raised. A request that gets another
representation adds one remembered choice (a dictionary lookup by its ``Accept-Encoding``
value) and, for a sidecar, that file's own check; one whose ``Accept-Encoding`` matches nothing
the file has costs no system call more.
"""

from __future__ import annotations

import hashlib
import html
import os
import stat
import time
from collections.abc import Callable, Mapping
from typing import Final

from evserver.bodies import FileRegion, Response
from evserver.http.errorpage import error_page
from evserver.http.events import Request
from evserver.http.negotiation import negotiate_media_type
from evserver.http.response import serialize_fields
from evserver.static.cache import (
    SMALL_FILE_CACHE_LIMIT,
    FileCache,
    FileEntry,
    Variants,
    settled,
    signature,
)
from evserver.static.conditions import NOT_MODIFIED, PRECONDITION_FAILED, evaluate_preconditions
from evserver.static.encodings import PREFERENCE, SIDECAR_SUFFIXES, gzip_compress
from evserver.static.headers import OperatorFields
from evserver.static.listing import (
    CONTENT_SECURITY_POLICY,
    ListingOrder,
    listing_html,
    listing_json,
    scan_directory,
)
from evserver.static.media_types import compressible, content_type_for
from evserver.static.paths import (
    decode_path,
    directory_location,
    has_hidden_name,
    hidden_name,
    split_absolute_form,
)
from evserver.static.ranges import ranged_response
from evserver.static.refusals import Refusal, refusal_for_os_error

_OPEN_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
"""O_NONBLOCK: opening a FIFO for reading must not wait for a writer (it is then refused)."""

_JSON: Final = "application/json"
_LISTING_TYPES: Final = ("text/html", _JSON)
"""A listing's representations, preferred first: a client that says nothing gets the page."""

_ALLOW: Final = "GET, HEAD, OPTIONS"
_ALLOW_FIELD: Final = serialize_fields([("Allow", _ALLOW)])

_SPECIAL_FIELDS: Final = frozenset(
    {"if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "range"}
)
"""Fields that can change the answer for a file (RFC 9110 13.1 preconditions, 14.2 Range): an
entry's ``answer_fields``. A request with none of them gets the entry's shared 200;
``isdisjoint`` tests them in one C call (it walks the request's few field names) instead of five
``in`` tests."""

_NEGOTIATED_FIELDS: Final = _SPECIAL_FIELDS | {"accept-encoding"}
"""``answer_fields`` of a file that has another representation: ``Accept-Encoding`` chooses."""

_FALLBACK_KEY: Final = " fallback"
"""The fallback file's cache key: a request path never holds a space, so none can name it."""

ERROR_PAGE_STATUSES: Final = frozenset({400, 403, 404, 405, 412, 416, 500, 503})
"""The statuses the file handler answers with an error page (the operator may give their own);
the connection's own errors (a malformed request, 408, 413, 431...) are answered before any
handler runs."""

ERROR_PAGE_MAX_BYTES: Final = 1024 * 1024
"""An operator's error page is held in memory for the server's life: a page, not a download."""


def load_error_page(path: str) -> bytes:
    """The bytes of an error page file, read once at start-up; ``OSError`` or ``ValueError``."""
    fd = os.open(path, _OPEN_FLAGS)  # O_NONBLOCK: a FIFO cannot hang the start-up
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > ERROR_PAGE_MAX_BYTES:
            raise ValueError(f"larger than {ERROR_PAGE_MAX_BYTES} bytes")
        data = _read_exactly(fd, st.st_size)
        if data is None:
            raise ValueError("it shrank while being read")
        return data
    finally:
        _close_quietly(fd)


class StaticHandler:
    """Serve the tree under ``root``. Call it with a parsed :class:`Request`.

    Shared by every connection (and, in the threaded server, by every thread): its only mutable
    state is the cache (``evserver.static.cache`` says why threads may share it) and the check
    round, which only the evented server advances.
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
        dotfiles: bool = False,
        precompressed: bool = True,
        gzip: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
        cache_control: str | None = None,
        cors: bool = False,
        error_pages: Mapping[int, str] | None = None,
        fallback: str | None = None,
    ) -> None:
        """``headers``, ``cache_control`` and ``cors`` are checked here (``ValueError``);
        ``error_pages`` (status -> file) are read here (``OSError``, ``ValueError``)."""
        self._root = os.path.realpath(root)
        self._root_prefix = self._root.rstrip("/") + "/"
        self._index_names = tuple(index_names)
        self._listing = listing
        self._follow_symlinks = follow_symlinks
        self._dotfiles = dotfiles
        self._precompressed = precompressed
        self._gzip = gzip
        self._fields = OperatorFields(headers, cache_control=cache_control, cors=cors)
        self._options_response = Response(204, _ALLOW_FIELD + self._fields.success)
        self._error_pages: dict[int, tuple[bytes, bytes]] = {}
        for status, page_path in (error_pages or {}).items():
            if status not in ERROR_PAGE_STATUSES:
                raise ValueError(f"no error page is sent with status {status}")
            body = load_error_page(page_path)
            page_type = content_type_for(os.path.basename(page_path))
            self._error_pages[status] = (
                serialize_fields([("Content-Type", page_type), ("Content-Length", str(len(body)))]),
                body,
            )
        self._fallback = None if fallback is None else os.path.abspath(fallback)
        self._cache = FileCache()
        self.check_round: int | None = None
        """None (the default): a cached small file is re-verified with ``os.stat`` on every
        request. An int: the driver groups requests into rounds and advances this number between
        them; a cached file is then verified once per round, by its first request, and the
        round's later requests trust that check. The evented server advances it once per loop
        iteration (see its module docstring for why that is as safe as a stat per request); the
        threaded server leaves it None, since its threads have no common rounds. Read it; only
        :meth:`share_checks_per_round` and :meth:`next_check_round` change it."""

    @property
    def root(self) -> str:
        return self._root

    def share_checks_per_round(self) -> None:
        """From now on, check a cached small file once per round of requests, not per request.

        For a server whose requests come in rounds (the evented loop's iterations), which then
        calls :meth:`next_check_round` between two rounds.
        """
        if self.check_round is None:
            self.check_round = 0

    def next_check_round(self) -> None:
        """A new round begins: each cached file is checked again by its next request.

        Called between every two loop iterations, so it stays one comparison and one store; a
        no-op unless :meth:`share_checks_per_round` was called.
        """
        check_round = self.check_round
        if check_round is not None:
            self.check_round = check_round + 1

    def __call__(self, request: Request) -> Response:
        method = request.method
        if method != "GET" and method != "HEAD":
            if method == "OPTIONS":  # RFC 9110 9.3.7; 204 carries no Content-Length (8.6)
                preflight = self._fields.preflight(request.headers)
                if preflight is not None:
                    return Response(204, _ALLOW_FIELD + preflight)
                return self._options_response
            return self._error(405, False, _ALLOW_FIELD)  # RFC 9110 15.5.6: MUST carry Allow
        try:
            target = request.target
            if target[:1] == "/":
                path, _, query = target.partition("?")
            else:
                path, query = split_absolute_form(target)
            entry = self._cache.lookup(path, self.check_round)
            if entry is not None:
                if entry.data is not None:  # verified by the lookup
                    if entry.answer_fields.isdisjoint(request.headers):  # the shared plain 200
                        if method == "HEAD":
                            return entry.response_head
                        return entry.response_get
                    return self._respond_with_entry(request, path, entry, None)
                response = self._respond_large(request, path, entry)
                if response is not None:
                    return response
            return self._serve_path(request, path, query)
        except Refusal as refusal:
            if refusal.missing and self._fallback is not None:
                return self._serve_fallback(request)
            return self._error(refusal.status, method == "HEAD", refusal.fields)

    # -- the full path ------------------------------------------------------------------------

    def _serve_path(self, request: Request, path: str, query: str) -> Response:
        names = decode_path(path)
        if not self._dotfiles and has_hidden_name(names):
            raise Refusal(404)  # decided on the names alone: the answer says nothing of the file
        trailing_slash = names[-1] == ""
        fs_path = self._root_prefix + "/".join(names)
        fd, st = self._open_inside_root(fs_path)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            _close_quietly(fd)
            if not trailing_slash:
                location = directory_location(names, query)
                return self._redirect_to_directory(location, request.method == "HEAD")
            return self._serve_directory(request, path, fs_path, names, query)
        if not stat.S_ISREG(mode) or trailing_slash:
            _close_quietly(fd)
            raise Refusal(404)
        return self._serve_opened_file(request, path, fs_path, fd, st, names[-1], cacheable=True)

    def _outside_root(self, real_path: str) -> bool:
        return real_path != self._root and not real_path.startswith(self._root_prefix)

    def _open_inside_root(self, fs_path: str) -> tuple[int, os.stat_result]:
        """Open ``fs_path`` if it lies inside the root: ``(fd, fstat)``, or a refusal."""
        open_path = fs_path
        flags = _OPEN_FLAGS
        try:
            if not self._follow_symlinks:
                open_path = os.path.realpath(fs_path)
                if self._outside_root(open_path):
                    # A symlink leads out of the root: as if it did not exist.
                    raise Refusal(404, missing=True)
                flags |= os.O_NOFOLLOW  # the resolved path has no symlink left to follow
            fd = os.open(open_path, flags)
        except OSError as error:
            raise refusal_for_os_error(error, fs_path) from None
        try:
            return fd, os.fstat(fd)
        except OSError as error:
            _close_quietly(fd)
            raise refusal_for_os_error(error, fs_path) from None

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
            data = None
            if st.st_size <= SMALL_FILE_CACHE_LIMIT:
                data = _read_unchanged(fd, st)
                if data is None:
                    cacheable = False  # changing under us: send it as a region, never cache
                else:
                    _close_quietly(fd)
                    fd = -1
            cacheable = cacheable and settled(st, self.clock())
            entry = self._file_entry(key, fs_path, st, content_type_for(name), data, cacheable)
            if cacheable:
                self._cache.remember(key, entry)
        except OSError as error:
            if fd >= 0:
                _close_quietly(fd)
            raise refusal_for_os_error(error, fs_path) from None
        except BaseException:
            if fd >= 0:
                _close_quietly(fd)
            raise
        # Outside the try: from here on the descriptor is _respond_with_entry's to close.
        return self._respond_with_entry(request, key, entry, None if fd < 0 else fd)

    def _file_entry(
        self, key: str, fs_path: str, st: os.stat_result, content_type: str,
        data: bytes | None, cacheable: bool,
    ) -> FileEntry:
        """The identity entry of a file, with its other representations when it has any."""
        codings = self._sidecar_codings(fs_path, st) if self._precompressed else ()
        gzipped = None
        if (self._gzip and data is not None and cacheable and "gzip" not in codings
                and compressible(content_type)):
            gzipped = self._gzipped_entry(fs_path, st, content_type, data)
            if gzipped is not None:
                codings += ("gzip",)  # last in PREFERENCE, so the order stays
        if not codings:
            entry = FileEntry(fs_path, st, content_type, _SPECIAL_FIELDS,
                              extra_fields=self._fields.success)
        else:
            entry = FileEntry(fs_path, st, content_type, _NEGOTIATED_FIELDS, vary=True,
                              extra_fields=self._fields.success)
            entry.offer(Variants(key, codings, gzipped))
        if data is not None:
            entry.cache_data(data)
        return entry

    # -- other representations: sidecars and gzip made in memory --------------------------------

    def _sidecar_codings(self, fs_path: str, st: os.stat_result) -> tuple[str, ...]:
        """The codings of the usable sidecars of the file ``fs_path`` whose ``fstat`` is ``st``:
        regular files inside the root, not older than the file. One ``stat`` per candidate
        (opening comes when one is chosen)."""
        found = []
        for coding in PREFERENCE:
            path = fs_path + SIDECAR_SUFFIXES[coding]
            try:
                sidecar = os.stat(path)
                if not self._follow_symlinks and self._outside_root(os.path.realpath(path)):
                    continue
            except OSError:
                continue
            if stat.S_ISREG(sidecar.st_mode) and sidecar.st_mtime_ns >= st.st_mtime_ns:
                found.append(coding)
        return tuple(found)

    def _gzipped_entry(
        self, fs_path: str, st: os.stat_result, content_type: str, data: bytes
    ) -> FileEntry | None:
        """The gzip made in memory from ``data``, or ``None`` when it would not be smaller."""
        compressed = gzip_compress(data)
        if len(compressed) >= len(data):
            return None
        entry = FileEntry(fs_path, st, content_type, _SPECIAL_FIELDS, coding="gzip", vary=True,
                          extra_fields=self._fields.success, size=len(compressed),
                          accept_ranges=False)
        entry.cache_data(compressed)
        return entry

    def _encoded(
        self, request: Request, key: str, entry: FileEntry, *, check_file: bool = False
    ) -> tuple[FileEntry, int | None] | None:
        """The representation in the coding the request prefers, ready to answer with (its
        entry, and its descriptor or ``None``), or ``None`` for identity. ``check_file``: the
        file's own entry was not verified yet (a large file, not opened)."""
        variants = entry.variants
        accept = request.headers.get("accept-encoding")
        if variants is None or accept is None:
            return None
        coding = variants.choose(accept)
        if coding is None:
            return None
        gzipped = variants.gzipped
        if gzipped is not None and coding == "gzip":
            if request.method == "GET" and "range" in request.headers:
                return None  # a range is served from the file's own bytes (module docstring)
            return gzipped, None
        if check_file:
            # The file is not opened when its sidecar is sent, so its freshness (a newer file
            # makes the sidecar stale) is a ``stat``, shared by the round as a small file's is
            # (``check_round``): 1.15x the requests/s of a stat per request (an A/B with a
            # 64 KiB sidecar, 64 connections), which brought it level with a plain 64 KiB file.
            check_round = self.check_round
            if check_round is None or entry.checked_round != check_round:
                if not _unchanged(entry):
                    self._cache.forget(key)
                    return None
                entry.checked_round = check_round
        return self._sidecar(key, entry, coding)

    def _sidecar(
        self, key: str, entry: FileEntry, coding: str
    ) -> tuple[FileEntry, int | None] | None:
        """The sidecar holding ``coding`` for ``entry``'s file, ready to answer with, or ``None``
        when it is gone or stale: the file's entry is then forgotten (its next request looks for
        sidecars again) and this request gets identity."""
        assert entry.variants is not None
        skey = entry.variants.sidecar_keys[coding]
        cached = self._cache.lookup(skey, self.check_round)
        if cached is not None:
            if cached.data is not None:
                return cached, None
            fd = _open_unchanged(cached)
            if fd >= 0:
                return cached, fd
            self._cache.forget(skey)
        loaded = self._load_sidecar(skey, entry, coding)
        if loaded is None:
            self._cache.forget(key)
        return loaded

    def _load_sidecar(
        self, skey: str, entry: FileEntry, coding: str
    ) -> tuple[FileEntry, int | None] | None:
        path = entry.fs_path + SIDECAR_SUFFIXES[coding]
        try:
            fd, st = self._open_inside_root(path)
        except Refusal:
            return None
        try:
            if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns < entry.signature[3]:
                _close_quietly(fd)  # not a file, or older than the file it compresses: stale
                return None
            sidecar = FileEntry(path, st, entry.content_type, _SPECIAL_FIELDS, coding=coding,
                                vary=True, extra_fields=self._fields.success)
            cacheable = True
            if st.st_size <= SMALL_FILE_CACHE_LIMIT:
                data = _read_unchanged(fd, st)
                if data is None:
                    cacheable = False  # changing under us: send it as a region, never cache
                else:
                    sidecar.cache_data(data)
                    _close_quietly(fd)
                    fd = -1
            if cacheable and settled(st, self.clock()):
                self._cache.remember(skey, sidecar)
        except OSError:
            if fd >= 0:
                _close_quietly(fd)
            return None  # the file itself can still be sent
        except BaseException:
            if fd >= 0:
                _close_quietly(fd)
            raise
        return sidecar, None if fd < 0 else fd

    # -- directories ----------------------------------------------------------------------------

    def _serve_directory(
        self, request: Request, key: str, dir_fs_path: str, names: list[str], query: str
    ) -> Response:
        """A directory with a trailing slash: its index file, its listing, or 403."""
        for index_name in self._index_names:
            try:
                fd, st = self._open_inside_root(dir_fs_path + index_name)
            except Refusal as refusal:
                if refusal.status == 404:
                    continue
                raise  # e.g. an unreadable index.html: 403
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
            raise Refusal(403)
        return self._serve_listing(request, dir_fs_path, names, query)

    def _serve_listing(
        self, request: Request, dir_fs_path: str, names: list[str], query: str
    ) -> Response:
        """A folder's listing, as HTML or JSON (``Accept``), sorted as the query asks.

        Validators: a strong ETag that is a digest of the body, so every representation (HTML or
        JSON, each order) has its own and any change to a listed name, size or time changes it.
        No ``Last-Modified``: a folder's mtime does not change when a file in it is rewritten, so
        ``If-Modified-Since`` and ``If-Unmodified-Since`` are ignored (RFC 9110 13.1.3, 13.1.4:
        no modification date is available); ``If-None-Match`` gives 304, ``If-Match`` 412.
        Range is ignored (no ``Accept-Ranges``): the whole listing, 200.
        """
        headers = request.headers
        as_json = negotiate_media_type(headers.get("accept"), _LISTING_TYPES) == _JSON
        order = ListingOrder.from_query(query)
        url_path = "/" + "".join(name + "/" for name in names if name)
        try:
            real_dir = dir_fs_path if self._follow_symlinks else os.path.realpath(dir_fs_path)
            scan = scan_directory(real_dir, self._root, follow_symlinks=self._follow_symlinks,
                                  hidden=None if self._dotfiles else hidden_name,
                                  in_root=url_path == "/")
        except OSError as error:
            raise refusal_for_os_error(error, dir_fs_path) from None
        if as_json:
            body = listing_json(url_path, scan, order)
            fields = [("Content-Type", "application/json")]
        else:
            body = listing_html(url_path, scan, order)
            fields = [("Content-Type", "text/html; charset=utf-8"),
                      ("Content-Security-Policy", CONTENT_SECURITY_POLICY)]
        etag = f'"l-{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
        validators = [("ETag", etag), ("Vary", "Accept")]
        if "if-match" in headers or "if-none-match" in headers:
            tags_only: dict[str, str] = {name: headers[name]
                                         for name in ("if-match", "if-none-match")
                                         if name in headers}
            outcome = evaluate_preconditions(tags_only, etag, 0, safe_method=True)
            if outcome == NOT_MODIFIED:  # with the operator's fields, as a file's 304
                return Response(304, serialize_fields(validators) + self._fields.success)
            if outcome == PRECONDITION_FAILED:
                raise Refusal(PRECONDITION_FAILED)
        fields += [("Content-Length", str(len(body))), *validators]
        head = serialize_fields(fields) + self._fields.success
        if request.method == "HEAD":
            return Response(200, head)
        return Response(200, head, (body,), len(body))

    # -- answering for a regular file ----------------------------------------------------------

    def _respond_large(self, request: Request, key: str, entry: FileEntry) -> Response | None:
        """The answer for a cached large file, or ``None`` when the file changed (its entry is
        then forgotten; the caller takes the full path)."""
        if entry.variants is not None:
            chosen = self._encoded(request, key, entry, check_file=True)
            if chosen is not None:  # only the sidecar is opened; the file was checked by stat
                return self._respond_with_file(request, *chosen)
        # A large file: a descriptor is needed anyway; open the path (following symlinks) and
        # check that the descriptor is the verified file itself, which makes the check race-free.
        fd = _open_unchanged(entry)
        if fd < 0:
            self._cache.forget(key)
            return None
        return self._respond_with_file(request, entry, fd)

    def _respond_with_entry(
        self, request: Request, key: str, entry: FileEntry, fd: int | None
    ) -> Response:
        """The answer for ``entry``'s file, in the coding the request prefers when it has one.
        ``fd`` (``None`` when the bytes are in ``entry.data``) is consumed whatever happens."""
        if entry.variants is not None:
            try:
                chosen = self._encoded(request, key, entry)
            except BaseException:
                if fd is not None:
                    _close_quietly(fd)
                raise
            if chosen is not None:
                if fd is not None:
                    _close_quietly(fd)
                entry, fd = chosen
        return self._respond_with_file(request, entry, fd)

    def _respond_with_file(self, request: Request, entry: FileEntry, fd: int | None) -> Response:
        """The 200, 206 or 304 for ``entry`` (or a 412 or 416 refusal). ``fd`` is consumed
        (closed or handed on) whatever happens.

        ``fd`` is ``None`` when the bytes are in ``entry.data``.
        """
        try:
            headers = request.headers
            head_only = request.method == "HEAD"
            if fd is None and _SPECIAL_FIELDS.isdisjoint(headers):  # the coding is chosen
                return entry.response_head if head_only else entry.response_get
            if (
                "if-match" in headers
                or "if-none-match" in headers
                or "if-modified-since" in headers
                or "if-unmodified-since" in headers
            ):
                outcome = evaluate_preconditions(
                    headers, entry.etag, entry.modified_second, safe_method=True
                )
                if outcome == NOT_MODIFIED:  # RFC 9110 15.4.5: no body; the validators are sent
                    return Response(304, entry.fields_304)
                if outcome == PRECONDITION_FAILED:
                    raise Refusal(PRECONDITION_FAILED)
            if not head_only and "range" in headers:  # RFC 9110 14.2: GET only
                response = ranged_response(headers, entry, fd)
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

    # -- answers that are not a file of the tree ------------------------------------------------

    def _serve_fallback(self, request: Request) -> Response:
        """The fallback file with 200 (a single-page app's page), for a path that names nothing.
        If the fallback file itself cannot be served, the answer is that error."""
        try:
            entry = self._cache.lookup(_FALLBACK_KEY, self.check_round)
            if entry is not None:
                if entry.data is not None:
                    return self._respond_with_entry(request, _FALLBACK_KEY, entry, None)
                response = self._respond_large(request, _FALLBACK_KEY, entry)
                if response is not None:
                    return response
            assert self._fallback is not None
            try:
                fd = os.open(self._fallback, _OPEN_FLAGS)  # the operator's file: no root check
            except OSError as error:
                raise refusal_for_os_error(error, self._fallback) from None
            try:
                st = os.fstat(fd)
            except OSError as error:
                _close_quietly(fd)
                raise refusal_for_os_error(error, self._fallback) from None
            if not stat.S_ISREG(st.st_mode):
                _close_quietly(fd)
                raise Refusal(404)
            return self._serve_opened_file(request, _FALLBACK_KEY, self._fallback, fd, st,
                                           os.path.basename(self._fallback), cacheable=True)
        except Refusal as refusal:
            return self._error(refusal.status, request.method == "HEAD", refusal.fields)

    def _error(self, status: int, head_only: bool, extra_fields: bytes = b"") -> Response:
        page = self._error_pages.get(status)
        # The built-in page is built once per status, shared with the protocol.
        fields, body = error_page(status) if page is None else page
        fields = extra_fields + fields + self._fields.error
        if head_only:
            return Response(status, fields)
        return Response(status, fields, (body,), len(body))

    def _redirect_to_directory(self, location: str, head_only: bool) -> Response:
        """RFC 9110 15.4.2: 301 to the directory's path with a trailing slash (see ``paths``)."""
        body = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>301 Moved Permanently'
            f'</title></head>\n<body><a href="{html.escape(location)}">Moved here</a></body>'
            "</html>\n"
        ).encode("ascii")
        fields = serialize_fields(
            [
                ("Location", location),
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ]
        ) + self._fields.success
        if head_only:
            return Response(301, fields)
        return Response(301, fields, (body,), len(body))


def _unchanged(entry: FileEntry) -> bool:
    """Is the file at ``entry.fs_path`` still the version ``entry`` describes? (One ``stat``.)"""
    try:
        return signature(os.stat(entry.fs_path)) == entry.signature
    except OSError:
        return False


def _open_unchanged(entry: FileEntry) -> int:
    """A descriptor of ``entry``'s file if it is still the version the entry describes, else -1.

    The path is opened (following symlinks) and the descriptor's ``fstat`` compared, so the
    check is about the very file that will be sent: race-free.
    """
    try:
        fd = os.open(entry.fs_path, _OPEN_FLAGS)
    except OSError:
        return -1
    try:
        same = signature(os.fstat(fd)) == entry.signature
    except OSError:
        same = False
    if same:
        return fd
    _close_quietly(fd)
    return -1


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _read_unchanged(fd: int, st: os.stat_result) -> bytes | None:
    """The whole file, if it still is the version ``st`` describes once read; else ``None``."""
    data = _read_exactly(fd, st.st_size)
    if data is None or signature(os.fstat(fd)) != signature(st):
        return None
    return data


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
