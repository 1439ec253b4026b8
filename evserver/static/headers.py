"""Fields the operator adds (``-H``, ``--cache-control``, ``--cors``), and the CORS preflight.

What this module knows: what a field line the operator gives must look like (RFC 9110 5.1 and
5.5), which fields the server writes itself, and the CORS protocol (the Fetch standard) for files
anyone may read: a request from a page of another origin gets ``Access-Control-Allow-Origin: *``,
and a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is told what
may follow. What it must not know: files, the cache, responses. Everything is serialized once, at
start-up, into bytes the handler appends to a response's fields (into each cache entry's shared
fields, for files), so an option not given costs nothing per request.

Decisions:

- The operator's fields (``-H``, ``--cache-control``) go on every answer of the file handler below
  400 (a file, a 206, a 304, a listing, a redirect, OPTIONS) and not on errors, as nginx's
  ``add_header`` does: a ``Cache-Control: max-age=...`` meant for files must not make a browser
  keep a 404. A 304 carries them too (RFC 9110 15.4.5 asks for Cache-Control and Expires there).
- ``--cors`` puts ``Access-Control-Allow-Origin: *`` on errors too, so a page's script can read
  why its fetch failed, and exposes the fields a script needs for ranges and validators. ``*``
  never admits credentials, which is right for files anyone can fetch.
- A preflight gets 204 whatever its target (as every OPTIONS does here): methods GET, HEAD and
  OPTIONS; the request fields it asks for are echoed when they are a list of tokens, else a
  default list (Range and the conditional fields); and a Max-Age of :data:`CORS_MAX_AGE_SECONDS`.
  Without ``--cors`` an OPTIONS is answered as before, with ``Allow`` only.
- ``-H`` refuses the fields the server writes itself (framing, validators, the coding, connection
  management): two of them would contradict each other. A field ``--cors`` or ``--cache-control``
  writes is refused too while that option is given.
"""

from __future__ import annotations

import re
from typing import Final

from evserver.http.grammar import FIELD_VALUE, TCHAR, TOKEN
from evserver.http.response import serialize_fields

CORS_MAX_AGE_SECONDS: Final = 86_400
"""How long a browser may reuse a preflight's answer: a day, Firefox's cap (Chromium caps it at
two hours); the answer never changes while the server runs."""

SERVER_WRITTEN_FIELDS: Final = frozenset({
    "accept-ranges", "allow", "connection", "content-encoding", "content-length",
    "content-range", "content-type", "date", "etag", "keep-alive", "last-modified", "location",
    "proxy-connection", "server", "te", "trailer", "transfer-encoding", "upgrade",
})
"""Field names (lower case) ``-H`` refuses: the server writes them, from the file and the
connection, and a second value would contradict the first (or break the framing)."""

_CORS_FIELDS: Final = frozenset({
    "access-control-allow-origin", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-expose-headers", "access-control-max-age",
})

_ALLOWED_METHODS: Final = "GET, HEAD, OPTIONS"
_DEFAULT_ALLOWED_HEADERS: Final = (
    "Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range"
)
_EXPOSED_HEADERS: Final = "Accept-Ranges, Content-Encoding, Content-Range, ETag"
"""Fields of an answer a script may read beyond the CORS-safelisted ones (Fetch standard)."""

_VALUE: Final = re.compile(FIELD_VALUE, re.ASCII)
_TOKEN_LIST: Final = re.compile(rf"[ \t]*[{TCHAR}]+(?:[ \t]*,[ \t]*[{TCHAR}]+)*[ \t]*", re.ASCII)


def parse_header_option(text: str) -> tuple[str, str]:
    """``"Name: value"`` (one ``-H``) -> ``(name, value)``; ``ValueError`` saying what is wrong."""
    name, colon, value = text.partition(":")
    value = value.strip(" \t")
    if not colon or not value:
        raise ValueError(f"expected 'Name: value', got {text!r}")
    check_operator_field(name, value)
    return name, value


def check_operator_field(name: str, value: str) -> None:
    """``ValueError`` unless the operator may add the field ``name: value``."""
    if TOKEN.fullmatch(name) is None:
        raise ValueError(f"{name!r} is not a field name (letters, digits and !#$%&'*+-.^_`|~)")
    if name.lower() in SERVER_WRITTEN_FIELDS:
        raise ValueError(f"{name} is written by the server itself")
    check_field_value(name, value)


def check_field_value(name: str, value: str) -> None:
    """``ValueError`` unless ``value`` may be sent as the value of field ``name``."""
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{name}: the value must be ASCII (or ISO-8859-1)") from None
    if not value or _VALUE.fullmatch(value) is None:
        raise ValueError(f"{name}: the value holds control characters or is empty")


class OperatorFields:
    """The serialized fields the handler adds to its answers, built once from the options.

    ``success`` goes on answers below 400 (and into each cache entry), ``error`` on errors. Both
    are ``b""`` when no option is given.
    """

    __slots__ = ("cors", "error", "success")

    def __init__(
        self,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        cache_control: str | None = None,
        cors: bool = False,
    ) -> None:
        for name, value in headers:
            check_operator_field(name, value)
        if cache_control is not None:
            check_field_value("Cache-Control", cache_control)
            if "cache-control" in {name.lower() for name, _ in headers}:
                raise ValueError("Cache-Control is given twice (-H and --cache-control)")
        clashing = [name for name, _ in headers if name.lower() in _CORS_FIELDS]
        if cors and clashing:
            raise ValueError(f"-H {clashing[0]}: --cors writes that field")
        cors_fields = serialize_fields([
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Expose-Headers", _EXPOSED_HEADERS),
        ]) if cors else b""
        own = list(headers)
        if cache_control is not None:
            own.append(("Cache-Control", cache_control))
        self.cors = cors
        self.success = serialize_fields(own) + cors_fields
        self.error = cors_fields

    def preflight(self, request_headers: dict[str, str]) -> bytes | None:
        """The fields of the 204 answering a CORS preflight, or ``None`` when the request is not
        one (or ``--cors`` is off): then OPTIONS is answered as usual."""
        if (not self.cors or "origin" not in request_headers
                or "access-control-request-method" not in request_headers):
            return None
        asked = request_headers.get("access-control-request-headers", "")
        if asked.strip(" \t") and _TOKEN_LIST.fullmatch(asked) is not None:
            allowed = ", ".join(name.strip(" \t").lower() for name in asked.split(","))
        else:
            allowed = _DEFAULT_ALLOWED_HEADERS
        return self.success + serialize_fields([
            ("Access-Control-Allow-Methods", _ALLOWED_METHODS),
            ("Access-Control-Allow-Headers", allowed),
            ("Access-Control-Max-Age", str(CORS_MAX_AGE_SECONDS)),
        ])
