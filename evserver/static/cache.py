"""The stat-validated cache: what the handler knows about a file, reused while it is unchanged.

What this module knows: the identity and version of a file (its signature), which files may be
kept in memory (small, settled) and how many, and how an entry is checked before use: by
``os.stat`` of its path, on every request or once per round of requests. What it must not know:
request-targets, conditions, ranges, error statuses; it never opens a file (the handler opens,
reads and hands over), and it never decides an answer, though an entry holds the shared plain
200 built once for it.

Representations: one entry is one representation of a file. The file as it is (identity) may
have others, in a content coding (RFC 9110 8.4): a precompressed sidecar (``app.js.gz``, a file
of its own, with an entry of its own under a key of its own: :func:`sidecar_key`, checked like any
file) or gzip made in memory (kept inside the identity entry, :class:`Variants`, so it is checked
with it: it is made from those very bytes). The identity entry records which codings exist, and
so also which do not: a request whose ``Accept-Encoding`` matches none of them costs nothing
more, and the record lives and dies with the entry. The one thing no check sees is a sidecar
created beside an unchanged file already cached: it is found when the entry is next built (the
file changes, or the entry is evicted).

Why a cached entry stays correct when the file changes: the signature is (st_dev, st_ino,
st_size, st_mtime_ns, st_ctime_ns) and it is re-read (``os.stat`` of ``fs_path``, or ``fstat`` of
a fresh descriptor for a large file) before the entry is used: on every request, or once per round
of requests (:attr:`evserver.static.handler.StaticHandler.check_round`). Any write changes mtime
and ctime (and nobody can set ctime back), a truncation changes the size too, a replacement by
rename changes the inode, a different filesystem changes the device. The one blind spot, two
writes within one coarse timestamp tick, is closed by not caching a file changed within
:data:`RACY_WINDOW_SECONDS`. The remaining window: between our ``stat`` and the moment the cached
bytes leave, the file may change; we then send the complete previous version, as if the request
had arrived a moment earlier. Never a mix of the two.

Why the cache cannot bypass the symlink check: an entry is only created after the handler's full
check, and the identity in the signature (device and inode) means the path still leads to that
very file; if a symlink on the way is redirected elsewhere, the inode differs and the request
takes the full path again.

Threads: the threaded server shares one cache between its threads. Its operations are single
dictionary calls, each atomic under the GIL; a race between two threads at worst drops or
recomputes an entry. The byte count beside it is not atomic (``+=`` from two threads can lose an
update), so it is recounted from the entries whenever it says the cache is full, before anything
is evicted.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Final

from evserver.bodies import Response
from evserver.http.dates import format_http_date
from evserver.http.response import serialize_fields
from evserver.static.encodings import negotiate

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

MAX_REMEMBERED_CHOICES: Final = 32
"""Distinct ``Accept-Encoding`` values whose choice one file remembers: clients send a handful
(each browser one); past this bound a choice is made again per request, never stored."""

_NANOSECONDS: Final = 1_000_000_000

_SIDECAR_KEY_SEPARATOR: Final = " "
"""Joins a file's key and a coding into its sidecar's key; a request path never holds a space
(the request line is split on spaces), so no request can name a sidecar's entry."""

Signature = tuple[int, int, int, int, int]
"""(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): which file, and which version of it."""


def signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(st: os.stat_result, now: float) -> bool:
    """Was the file last changed at least :data:`RACY_WINDOW_SECONDS` before ``now``?"""
    last_change = max(st.st_mtime_ns, st.st_ctime_ns) / _NANOSECONDS
    return now - last_change >= RACY_WINDOW_SECONDS


class FileEntry:
    """What the handler knows about one representation of a regular file: validators, fields,
    and maybe its bytes.

    ``data`` is the whole representation when it was small enough to keep (:meth:`cache_data`),
    else ``None`` (a large file: each request opens it and sends a region). ``coding`` is
    ``None`` for the file as it is, else the content coding of these bytes (a sidecar's, or gzip
    made in memory). ``answer_fields`` are the request fields that can change the answer; a
    request with none of them gets ``response_get`` or ``response_head``.
    """

    __slots__ = (
        "answer_fields",
        "checked_round",
        "coding",
        "content_type",
        "data",
        "etag",
        "fields_200",
        "fields_304",
        "fs_path",
        "held_bytes",
        "last_modified",
        "modified_second",
        "representation_fields",
        "response_get",
        "response_head",
        "signature",
        "size",
        "variants",
    )

    response_get: Response
    """The shared plain 200 for GET; set with ``data`` by :meth:`cache_data`, read only then."""
    response_head: Response
    """The shared plain 200 for HEAD; set with ``data``, like ``response_get``."""

    def __init__(
        self,
        fs_path: str,
        st: os.stat_result,
        content_type: str,
        answer_fields: frozenset[str],
        *,
        coding: str | None = None,
        vary: bool = False,
        extra_fields: bytes = b"",
        size: int | None = None,
        accept_ranges: bool = True,
    ) -> None:
        """``st`` is the file's (for gzip made in memory: the original's, whose version these
        bytes are; ``size`` then says how many there are). ``vary`` adds ``Vary:
        Accept-Encoding`` (the file has several representations); ``extra_fields`` are the
        operator's serialized field lines, sent with every answer but errors."""
        self.fs_path = fs_path
        self.signature = signature(st)
        self.checked_round: int | None = None
        """The check round in which ``signature`` was last verified (:meth:`FileCache.lookup`)."""
        self.answer_fields = answer_fields
        self.coding = coding
        self.size = st.st_size if size is None else size
        self.modified_second = st.st_mtime_ns // _NANOSECONDS
        # A strong validator (RFC 9110 8.8.3): it changes whenever the bytes can have changed,
        # and each representation of one file has its own (the coding ends it).
        suffix = "" if coding is None else "-" + coding
        self.etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}{suffix}"'
        self.last_modified = format_http_date(self.modified_second)
        self.content_type = content_type
        # RFC 9110 15.4.5: a 304 repeats Vary and the cache fields; the coding is in the ETag.
        shared_fields = (b"Vary: Accept-Encoding\r\n" if vary else b"") + extra_fields
        self.representation_fields = shared_fields if coding is None else (
            serialize_fields([("Content-Encoding", coding)]) + shared_fields)
        """Sent after the fields of each 200 and 206 (RFC 9110 8.4: ``Content-Encoding``)."""
        self.fields_304 = serialize_fields(self.validator_fields()) + shared_fields
        fields = [
            ("Content-Type", content_type),
            ("Content-Length", str(self.size)),
            ("Last-Modified", self.last_modified),
            ("ETag", self.etag),
        ]
        if accept_ranges:
            fields.append(("Accept-Ranges", "bytes"))
        self.fields_200 = serialize_fields(fields) + self.representation_fields
        self.data: bytes | None = None
        self.held_bytes = 0
        """Bytes of file data this entry keeps in memory (its own and its variants')."""
        self.variants: Variants | None = None
        """The other representations of this file, when it has any."""

    def cache_data(self, data: bytes) -> None:
        """Keep the file's bytes and build the shared plain-200 responses for GET and HEAD."""
        self.data = data
        self.held_bytes += len(data)
        self.response_head = Response(200, self.fields_200)
        self.response_get = (
            Response(200, self.fields_200, (data,), len(data)) if data else self.response_head
        )

    def offer(self, variants: Variants) -> None:
        """Record the file's other representations (before the entry is remembered)."""
        self.variants = variants
        if variants.gzipped is not None:
            self.held_bytes += variants.gzipped.held_bytes

    def validator_fields(self) -> list[tuple[str, str]]:
        return [("Last-Modified", self.last_modified), ("ETag", self.etag)]


class Variants:
    """The content codings a file can be sent in besides identity, and the choices made so far.

    ``codings`` are in :data:`evserver.static.encodings.PREFERENCE` order. A coding is a sidecar
    (its entry is in the cache under :func:`sidecar_key`), except ``gzip`` when ``gzipped`` holds
    the gzip made in memory from the identity bytes.
    """

    __slots__ = ("choices", "codings", "gzipped", "sidecar_keys")

    def __init__(self, key: str, codings: tuple[str, ...], gzipped: FileEntry | None) -> None:
        """``key``: the cache key of the file's own entry."""
        self.codings = codings
        self.gzipped = gzipped
        self.sidecar_keys = {coding: sidecar_key(key, coding) for coding in codings}
        """Coding -> the cache key of its sidecar's entry (made once, not per request)."""
        self.choices: dict[str, str | None] = {}
        """``Accept-Encoding`` value -> the coding chosen for it (``None``: identity)."""

    def choose(self, accept_encoding: str) -> str | None:
        """The coding to send for this ``Accept-Encoding`` value, ``None`` for identity."""
        coding = self.choices.get(accept_encoding, "")
        if coding == "":  # not seen yet ("" is no coding's name)
            coding = negotiate(accept_encoding, self.codings)
            if len(self.choices) < MAX_REMEMBERED_CHOICES:
                self.choices[accept_encoding] = coding
        return coding


def sidecar_key(key: str, coding: str) -> str:
    """The cache key of the sidecar holding ``coding`` for the file cached under ``key``."""
    return key + _SIDECAR_KEY_SEPARATOR + coding


class FileCache(OrderedDict[str, FileEntry]):
    """Raw request path -> :class:`FileEntry`, least recently used first, bounded in entries and
    bytes. It is the ordered dictionary itself (not a wrapper around one), so the handler's
    lookup is one call with no attribute in between."""

    __slots__ = ("held_bytes",)

    def __init__(self) -> None:
        super().__init__()
        self.held_bytes = 0
        """The bytes of file data the entries hold (recounted when it says the cache is full)."""

    def lookup(self, key: str, check_round: int | None) -> FileEntry | None:
        """The entry for ``key`` if it may be used, else ``None`` (then the full path).

        An entry holding the file's bytes is checked first with ``os.stat``: on every call when
        ``check_round`` is ``None``, else once per round (the first call with a new number checks
        for the round's later ones). A large entry is returned unchecked: the caller opens it and
        compares the descriptor's ``fstat`` with ``entry.signature``, which is race-free.
        """
        entry = self.get(key)
        if entry is None or entry.data is None:
            return entry
        if check_round is None or entry.checked_round != check_round:
            try:
                st = os.stat(entry.fs_path)
            except OSError:
                self.forget(key)
                return None
            # The comparison with signature(st), written out: it runs per request or round.
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) \
                    != entry.signature:
                self.forget(key)
                return None
            entry.checked_round = check_round
        try:
            self.move_to_end(key)
        except KeyError:  # another thread evicted it meanwhile; the entry is still valid
            pass
        return entry

    def remember(self, key: str, entry: FileEntry) -> None:
        size = entry.held_bytes
        if size > CACHE_MAX_BYTES:
            return
        self.forget(key)
        self[key] = entry
        self.held_bytes += size
        if self.held_bytes > CACHE_MAX_BYTES:  # rare: recount, so a lost update cannot stick
            self.held_bytes = sum(e.held_bytes for e in list(self.values()))
        try:
            while len(self) > CACHE_MAX_ENTRIES or self.held_bytes > CACHE_MAX_BYTES:
                _, evicted = self.popitem(last=False)
                self.held_bytes -= evicted.held_bytes
        except KeyError:  # emptied by another thread
            pass

    def forget(self, key: str) -> None:
        evicted = self.pop(key, None)
        if evicted is not None:
            self.held_bytes -= evicted.held_bytes
