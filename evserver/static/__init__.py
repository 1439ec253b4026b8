"""The file handler: a request in, a response out, whose body may be a region of a file.

What this package knows: the filesystem under one directory (the "document root") and the HTTP
semantics of serving it (RFC 9110): mapping a request-target to a file, MIME types, validators
(ETag, Last-Modified), conditional requests, byte ranges, redirects and directory listings. What
it must not know: sockets, selectors, threads, connections, keep-alive, the protocol and its
``Date``, ``Server`` and ``Connection`` fields. A handler is a plain callable, request ->
response, so every rule here is tested without a socket, and the same handler serves every
server model. It never sends a file: a large body is a :class:`~evserver.bodies.FileRegion` that
the transport sends with ``os.sendfile``.

How the modules fit (an arrow: "imports")::

    handler ─┬─> paths        request-target -> names under the root (dotfiles), a Location back
             ├─> cache        FileEntry (one representation), Variants, the stat-validated cache
             ├─> conditions   RFC 9110 13 preconditions: pure functions on field values
             ├─> ranges       RFC 9110 14 Range: parsing, the single and multipart 206
             ├─> encodings    RFC 9110 12.5.3 Accept-Encoding: which coding; gzip with zlib
             ├─> headers      the operator's fields (-H, Cache-Control, CORS) and preflights
             ├─> listing      a directory's HTML page
             ├─> media_types  file name -> Content-Type; which types are text worth compressing
             └─> refusals     Refusal (an error status) and the errno -> status table

    ranges ──> cache (FileEntry), conditions (If-Range);   paths, ranges ──> refusals
    cache ──> encodings (a Variants' choice)

``handler`` is the entry: "open, ``fstat``, decide". A request takes one of two ways. The fast
way: the raw path is a key of the cache; the entry is verified (one ``os.stat``, or none when the
server shares the check per round of requests) and, when no conditional or Range field is
present, a ``Response`` built once for the entry is returned. The full way: ``paths`` decodes the
names, the handler opens the file inside the root and reads its ``fstat``, then answers a
directory (redirect, index file, ``listing``, 403) or a regular file (read into a new cache entry
when small, then ``conditions`` and ``ranges``, else the whole file).

Errors travel one way. Whatever cannot go on (a malformed or forbidden path, a missing or
unreadable file, an unsatisfiable range, a failed precondition) raises ``Refusal`` with the
status, from the helper that finds it or from the handler itself; the handler's entry catches it,
once, and builds the error page. So decoding a path, opening a file and answering a range return
only values. (The pure rules of ``conditions`` still answer with a status number: a 304 is not a
refusal.)

The modules below the handler never import it, and the pure ones (``paths``, ``conditions``,
``ranges``, ``encodings``, ``headers``, ``media_types``) never import ``os``: only the handler
opens and reads files (and stats a file's sidecars), the cache re-stats the paths it holds, the
listing scans a directory (``tests/unit/test_layers.py`` checks the imports).

Compression: a file may have other representations in a content coding (RFC 9110 8.4). A
precompressed sidecar (``name.br``, ``name.zst``, ``name.gz``) is opened, checked and answered
like any file, with ``Content-Encoding``, ``Vary: Accept-Encoding`` and its own ETag; gzip made
in memory (``--gzip``) is made once, when a small text file's entry is filled, and kept in that
entry beside the plain bytes. The fast way tests ``accept-encoding`` only for a file that has
another representation (the entry's ``answer_fields``). Files sent as regions are never
compressed on the fly (``sendfile`` sends them untouched), and a ``.gz`` file asked for by name
is still served as itself (``media_types``).
"""

from evserver.static.cache import RACY_WINDOW_SECONDS, SMALL_FILE_CACHE_LIMIT
from evserver.static.handler import StaticHandler
from evserver.static.media_types import content_type_for

__all__ = ["RACY_WINDOW_SECONDS", "SMALL_FILE_CACHE_LIMIT", "StaticHandler", "content_type_for"]
