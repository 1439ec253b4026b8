"""The response head serializer (RFC 9112 4 and 5, RFC 9110 6.6 and 15): pure functions to bytes.

What this module knows: how a status line, header field lines and chunked framing look on the
wire. What it must not know: the clock (the caller hands in the ``Date`` value, RFC 9110 6.6.1),
sockets, files, and which headers a response needs (the handler and the protocol decide).

Invariants:

- Nothing this module emits can split a response: ``serialize_fields`` refuses a name that is not
  a token and a value holding CR, LF or NUL (RFC 9110 5.5), so no header injection is possible
  through it. The small per-process caches (status lines, ``Server``/``Connection`` lines) are
  filled through the same checks.
- ``response_head`` runs once per response, so it is a single ``b"".join`` over cached pieces;
  only the ``Date`` line (new once per second) is encoded on the fly, and even that is cached for
  the last value seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from evserver.http import grammar
from evserver.http.status import reason_phrase

LAST_CHUNK: Final = b"0\r\n\r\n"
"""RFC 9112 7.1: last-chunk, and an empty trailer section, end a chunked body."""

MAX_CACHED_LINES: Final = 64
"""Bound on each line cache: the inputs are server settings, but a bug must not grow them."""

_TOKEN: Final = grammar.TOKEN  # assigned, not imported by name: see evserver.http.parser
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")  # RFC 9110 5.5: CR, LF and NUL never in values
_HTTP_VERSIONS: Final = frozenset({"1.0", "1.1"})

_status_lines: dict[tuple[int, str], bytes] = {}
_field_lines: dict[tuple[str, str], bytes] = {}
_last_date: list[object] = ["", b""]  # [date string, its "Date: ...\r\n" line]


def status_line(status: int, version: str = "1.1") -> bytes:
    """``HTTP/1.1 200 OK\\r\\n`` (RFC 9112 4: status-line = HTTP-version SP status-code SP
    [ reason-phrase ] CRLF), cached per status and version. The phrase comes from
    :mod:`evserver.http.status`, the table the error pages use too; an unlisted status gets
    none."""
    key = (status, version)
    line = _status_lines.get(key)
    if line is None:
        if not 100 <= status <= 999:  # RFC 9110 15: a three-digit status code
            raise ValueError(f"invalid status code {status!r}")
        if version not in _HTTP_VERSIONS:
            raise ValueError(f"invalid HTTP version {version!r}")
        line = f"HTTP/{version} {status} {reason_phrase(status)}\r\n".encode("latin-1")
        if len(_status_lines) < MAX_CACHED_LINES:
            _status_lines[key] = line
    return line


def serialize_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """``Name: value\\r\\n`` for each pair, in order; ``ValueError`` for what would be unsafe.

    Values are encoded as ISO-8859-1 (RFC 9110 5.5 allows only those octets); a character
    outside it is a ``ValueError`` too.
    """
    lines = []
    for name, value in fields:
        if _TOKEN.fullmatch(name) is None:
            raise ValueError(f"field name is not a token: {name!r}")
        if _FORBIDDEN_IN_VALUE.search(value) is not None:
            raise ValueError(f"field value contains CR, LF or NUL: {name}: {value!r}")
        lines.append(f"{name}: {value}\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as error:
        raise ValueError(f"field value is not ISO-8859-1: {error}") from None


def _field_line(name: str, value: str) -> bytes:
    """One checked field line, cached (used for the Server and Connection settings)."""
    key = (name, value)
    line = _field_lines.get(key)
    if line is None:
        line = serialize_fields((key,))
        if len(_field_lines) < MAX_CACHED_LINES:
            _field_lines[key] = line
    return line


def _date_line(date: str) -> bytes:
    if date is _last_date[0] or date == _last_date[0]:
        line = _last_date[1]
        assert isinstance(line, bytes)
        return line
    line = serialize_fields((("Date", date),))
    _last_date[0], _last_date[1] = date, line
    return line


def response_head(
    status: int,
    fields: bytes,
    *,
    date: str,
    server: str | None,
    connection: str | None,
    version: str = "1.1",
) -> bytes:
    """The whole response head: status line, ``Server``, ``Date``, ``fields``, ``Connection``,
    then the empty line (RFC 9112 2.1).

    ``fields`` are already-serialized header lines, each ending in CRLF (a handler's cached
    bytes, see ``evserver.bodies.Response``); they must carry the framing (``Content-Length`` or
    ``Transfer-Encoding: chunked``, RFC 9112 6.3) the body needs. ``date`` is an IMF-fixdate
    (RFC 9110 6.6.1) the caller computed from its clock.
    """
    parts = [status_line(status, version)]
    if server is not None:
        parts.append(_field_line("Server", server))
    parts.append(_date_line(date))
    parts.append(fields)
    if connection is not None:
        parts.append(_field_line("Connection", connection))
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 7.1): hex size, CRLF, data, CRLF.

    Empty data gives ``b""``: an empty chunk would be the last-chunk and end the body early;
    send :data:`LAST_CHUNK` for that.
    """
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)
