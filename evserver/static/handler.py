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
  included) is 204 with ``Allow`` and no Content-Length (RFC 9110 8.6, 9.3.7).
- Symlinks: without ``follow_symlinks`` a path whose fully resolved location lies outside the root
  is 404 (as if absent: the client learns nothing about the outside); symlinks that stay inside
  are served. With ``follow_symlinks`` every symlink is followed. The check resolves the path
  (``os.path.realpath``) and opens the resolved path with ``O_NOFOLLOW``; it defends against
  clients, not against a local user swapping directories for symlinks between the two calls.
- Dotfiles are served and listed (like ``http.server``); hiding them is the operator's job.
- A directory without a trailing slash: 301 to the same path plus ``/`` and the original query
  (RFC 9110 15.4.2). With the slash: the first existing name of ``index_names``, else a listing,
  else (listing off) 403 as nginx does. A regular file with a trailing slash is 404.
- A listing is HTML unless ``Accept`` prefers ``application/json`` (``evserver.http.negotiation``),
  sorted as its query string asks (``evserver.static.listing``), with ``Vary: Accept`` and an
  ETag that digests its body (see :meth:`StaticHandler._serve_listing`).
- Range is honoured for GET only (RFC 9110 14.2: a server MUST ignore it for other methods), so
  HEAD with Range answers as a HEAD without Range (200).
- Error pages are tiny HTML documents; a HEAD gets their fields without the body.
- Field lines are built by ``evserver.http.response.serialize_fields``, which refuses CR, LF and
  NUL in a value: the last line of defence against header injection (names only ever reach
  ``Location`` percent-encoded, so it never fires for a client's input).

Speed: a plain ``GET`` or ``HEAD`` of a cached small file costs one dictionary lookup, one
``os.stat`` compared with the entry's signature (or, when the driver groups requests into rounds,
one such check per round: :attr:`StaticHandler.check_round`), and one set test proving the request
has no conditional or Range field; the answer is then a ``Response`` built once per cache entry
and shared by every request (nobody mutates a ``Response``: the protocol only reads it). No path
parsing, no open, no descriptor, no allocation. ``evserver.static.cache`` says why that stays
correct when files change. The ``try`` around the entry costs nothing until a refusal is raised.
"""

from __future__ import annotations

import hashlib
import html
import os
import stat
import time
from collections.abc import Callable
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
    settled,
    signature,
)
from evserver.static.conditions import NOT_MODIFIED, PRECONDITION_FAILED, evaluate_preconditions
from evserver.static.listing import (
    CONTENT_SECURITY_POLICY,
    ListingOrder,
    listing_html,
    listing_json,
    scan_directory,
)
from evserver.static.media_types import content_type_for
from evserver.static.paths import decode_path, directory_location, split_absolute_form
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
"""Fields that can change the answer for a file (RFC 9110 13.1 preconditions, 14.2 Range). A
request with none of them gets the entry's shared 200; ``isdisjoint`` tests them in one C call
(it walks the request's few field names) instead of five ``in`` tests."""


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
    ) -> None:
        self._root = os.path.realpath(root)
        self._root_prefix = self._root.rstrip("/") + "/"
        self._index_names = tuple(index_names)
        self._listing = listing
        self._follow_symlinks = follow_symlinks
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
                return Response(204, _ALLOW_FIELD)
            return _error(405, False, _ALLOW_FIELD)  # RFC 9110 15.5.6: 405 MUST carry Allow
        try:
            target = request.target
            if target[:1] == "/":
                path, _, query = target.partition("?")
            else:
                path, query = split_absolute_form(target)
            entry = self._cache.lookup(path, self.check_round)
            if entry is not None:
                if entry.data is not None:  # verified by the lookup
                    if _SPECIAL_FIELDS.isdisjoint(request.headers):  # the shared plain 200
                        if method == "HEAD":
                            return entry.response_head
                        return entry.response_get
                    return self._respond_with_file(request, entry, None)
                # A large file: a descriptor is needed anyway; open the path (following
                # symlinks) and check that the descriptor is the verified file itself, which
                # makes the check race-free.
                try:
                    fd = os.open(entry.fs_path, _OPEN_FLAGS)
                except OSError:
                    pass
                else:
                    try:
                        same = signature(os.fstat(fd)) == entry.signature
                    except OSError:
                        same = False
                    if same:
                        return self._respond_with_file(request, entry, fd)
                    _close_quietly(fd)
                self._cache.forget(path)
            return self._serve_path(request, path, query)
        except Refusal as refusal:
            return _error(refusal.status, method == "HEAD", refusal.fields)

    # -- the full path ------------------------------------------------------------------------

    def _serve_path(self, request: Request, path: str, query: str) -> Response:
        names = decode_path(path)
        trailing_slash = names[-1] == ""
        fs_path = self._root_prefix + "/".join(names)
        fd, st = self._open_inside_root(fs_path)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            _close_quietly(fd)
            if not trailing_slash:
                location = directory_location(names, query)
                return _redirect_to_directory(location, request.method == "HEAD")
            return self._serve_directory(request, path, fs_path, names, query)
        if not stat.S_ISREG(mode) or trailing_slash:
            _close_quietly(fd)
            raise Refusal(404)
        return self._serve_opened_file(request, path, fs_path, fd, st, names[-1], cacheable=True)

    def _open_inside_root(self, fs_path: str) -> tuple[int, os.stat_result]:
        """Open ``fs_path`` if it lies inside the root: ``(fd, fstat)``, or a refusal."""
        open_path = fs_path
        flags = _OPEN_FLAGS
        try:
            if not self._follow_symlinks:
                open_path = os.path.realpath(fs_path)
                if open_path != self._root and not open_path.startswith(self._root_prefix):
                    raise Refusal(404)  # a symlink leads out of the root: as if it did not exist
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
            entry = FileEntry(fs_path, st, content_type_for(name))
            if st.st_size <= SMALL_FILE_CACHE_LIMIT:
                data = _read_exactly(fd, st.st_size)
                if data is not None and signature(os.fstat(fd)) == entry.signature:
                    entry.cache_data(data)
                    _close_quietly(fd)
                    fd = -1
                else:
                    cacheable = False  # changing under us: send it as a region, never cache
            if cacheable and settled(st, self.clock()):
                self._cache.remember(key, entry)
        except OSError as error:
            if fd >= 0:
                _close_quietly(fd)
            raise refusal_for_os_error(error, fs_path) from None
        except BaseException:
            if fd >= 0:
                _close_quietly(fd)
            raise
        # Outside the try: from here on the descriptor is _respond_with_file's to close.
        return self._respond_with_file(request, entry, None if fd < 0 else fd)

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
            scan = scan_directory(real_dir, self._root, follow_symlinks=self._follow_symlinks)
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
            if outcome == NOT_MODIFIED:
                return Response(304, serialize_fields(validators))
            if outcome == PRECONDITION_FAILED:
                raise Refusal(PRECONDITION_FAILED)
        fields += [("Content-Length", str(len(body))), *validators]
        if request.method == "HEAD":
            return Response(200, serialize_fields(fields))
        return Response(200, serialize_fields(fields), (body,), len(body))

    # -- answering for a regular file ----------------------------------------------------------

    def _respond_with_file(self, request: Request, entry: FileEntry, fd: int | None) -> Response:
        """The 200, 206 or 304 for ``entry`` (or a 412 or 416 refusal). ``fd`` is consumed
        (closed or handed on) whatever happens.

        ``fd`` is ``None`` when the bytes are in ``entry.data``.
        """
        try:
            headers = request.headers
            head_only = request.method == "HEAD"
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
                    return Response(304, serialize_fields(entry.validator_fields()))
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


def _error(status: int, head_only: bool, extra_fields: bytes = b"") -> Response:
    fields, body = error_page(status)  # built once per status, shared with the protocol
    if head_only:
        return Response(status, extra_fields + fields)
    return Response(status, extra_fields + fields, (body,), len(body))


def _redirect_to_directory(location: str, head_only: bool) -> Response:
    """RFC 9110 15.4.2: 301 to the directory's path with a trailing slash (see ``paths``)."""
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


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


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
