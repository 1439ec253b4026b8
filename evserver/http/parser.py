"""The incremental HTTP/1.1 request parser (RFC 9112), sans-I/O: bytes in, events out.

What this module knows: the bytes of HTTP/1.1 requests, as RFC 9112 (message syntax) and
RFC 9110 (fields, lists, tokens) define them. What it must not know: where the bytes come from
(sockets, files), what time it is, and what anyone does with the events. It never reads, never
writes, never logs.

How it is used::

    parser = RequestParser()
    parser.feed(received)            # b"" means the peer ended its input
    event = parser.next_event()      # Request | Data | END_OF_MESSAGE | NEED_DATA | CLOSED

The same object parses the next pipelined request after ``END_OF_MESSAGE``; no reset call.

The state machine lives in one place: :class:`State` and :data:`TRANSITIONS` below list every
state and every move between them, and ``next_event`` dispatches on the state through
``_READERS``. Nothing else decides what the parser is doing.

Decisions taken where RFC 9112 leaves a choice (each one makes us stricter, never looser, because
a request two parsers read differently is how request smuggling starts):

- Line terminators are exactly CRLF. A bare LF is **rejected** with 400 (RFC 9112 2.2 allows a
  recipient to recognise it; we do not, since a front proxy that does not would see different
  lines). A bare CR anywhere in the head is 400 (RFC 9112 2.2 forbids treating it as a break).
- Up to :data:`MAX_LEADING_EMPTY_LINES` empty lines before a request line are ignored (RFC 9112
  2.2 asks for at least one); more are 400, so a client cannot keep us busy with CRLFs.
- Request-target characters are those RFC 3986 allows in a URI (unreserved, gen-delims except
  ``#``, sub-delims) plus ``%``, plus the "unsafe" printable ones real browsers send raw (``"``,
  ``<``, ``>``, ``\\``, ``^``, backtick, ``{``, ``|``, ``}``: nginx accepts them too, and they
  cannot shift framing). SP, CTLs, bytes >= 0x80 and ``#`` (a fragment is never sent, RFC 9112
  3.2) are 400. Percent-decoding, and judging the path, is the handler's business.
- ``Transfer-Encoding`` lists are parsed strictly (no empty list elements); only ``chunked`` is
  implemented, so any other coding is 501; ``chunked`` twice or not last is 400; together with
  ``Content-Length`` it is 400 (RFC 9112 6.1, 6.3); in an HTTP/1.0 request it is 400.
- ``Content-Length`` is ``1*DIGIT`` (ASCII 0-9 only) with at most
  :data:`MAX_CONTENT_LENGTH_DIGITS` digits; a list of identical values is folded (RFC 9110 8.6).
- ``Host`` syntax is checked loosely: no whitespace, CTL, ``/``, ``?``, ``#`` or ``@``.
- ``Expect: 100-continue`` is honoured for HTTP/1.1 and ignored for HTTP/1.0 (RFC 9110 10.1.1);
  any other expectation is 417.

Invariants:

- Every byte of a head is matched by an explicit rule. The head is decoded as ISO-8859-1 once,
  and the regular expressions use explicit character classes only (never ``\\s``, ``\\d``,
  ``\\w``, ``str.split()``, ``strip()``, ``splitlines()`` or ``int()`` on unproven text: those
  accept ``\\x85``, ``\\xa0``, ``\\x1c``, ``+1``, ``1_0`` or non-ASCII digits).
- Work is linear in the bytes received: while a head is incomplete the parser remembers how far
  it searched, so a head fed one byte at a time costs O(n) (h11's receive-buffer idea).
- After the first error every ``feed`` and ``next_event`` raises that same error again: the
  connection must close, since the framing of what follows is unknown.
- A ``Data`` event is never empty.

Speed: this is the hot path of the whole server (a few microseconds per typical head), which is
why the head is validated with two regular-expression passes over the whole block instead of a
Python loop over lines, and why the common cases (no body, keep-alive) take the shortest branch.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from evserver.http.errors import (
    BadRequest,
    ExpectationFailed,
    HeadersTooLarge,
    HTTPError,
    NotImplementedCoding,
    PayloadTooLarge,
    URITooLong,
    VersionNotSupported,
)
from evserver.http.events import (
    CLOSED,
    END_OF_MESSAGE,
    NEED_DATA,
    Data,
    Event,
    Request,
)
from evserver.http.limits import (
    DEFAULT_LIMITS,
    MAX_CHUNK_LINE,
    MAX_CHUNK_SIZE_DIGITS,
    MAX_TRAILER,
    ParserLimits,
)

MAX_LEADING_EMPTY_LINES: Final = 8
"""[400] RFC 9112 2.2 asks us to skip at least one CRLF before a request line; bound the work."""

MAX_CONTENT_LENGTH_DIGITS: Final = 18
"""[400] 18 decimal digits stay below 2**63; a longer Content-Length is an overflow attempt."""


# ---------------------------------------------------------------------------------------------
# Character classes and grammar (RFC 9110 5.6.2 token, 5.5 field values; RFC 3986 URI chars).
# All patterns work on text decoded as ISO-8859-1 and use explicit classes only, with re.ASCII
# so case-insensitive matching cannot fold a non-ASCII letter onto an ASCII one.

_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"  # RFC 9110 5.6.2
_VCHAR_OBS = r"\x21-\x7e\x80-\xff"  # RFC 9110 5.5: field-vchar = VCHAR / obs-text
# RFC 3986 2.2/2.3: unreserved, gen-delims without "#", sub-delims; plus "%" (pct-encoded).
# Leniency, like nginx and every browser-facing server: the characters RFC 3986 calls unsafe
# (`"`, `<`, `>`, `\`, `^`, backtick, `{`, `|`, `}`) are sent raw by real browsers and tools
# (Chrome leaves `{`, `|`, `}` and `^` unencoded), cannot break framing (no SP, CTL or obs-text),
# and the handler percent-decodes and judges the path anyway, so they are accepted in paths.
_TARGET_CHAR = r"A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%\"<>\\^`{|}"
_AUTHORITY_CHAR = r"A-Za-z0-9\-._~:\[\]@!$&'()*+,;=%"  # the same without "/" and "?"
_QUOTED_STRING = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'

# RFC 9112 3: request-line = method SP request-target SP HTTP-version, exactly one SP each;
# RFC 9112 2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT (case-sensitive).
_REQUEST_LINE = re.compile(
    rf"([{_TCHAR}]+) ([{_TARGET_CHAR}]+) HTTP/([0-9])\.([0-9])", re.ASCII
)
# RFC 9112 3.2.1: origin-form = absolute-path [ "?" query ]
_ORIGIN_FORM = re.compile(rf"/[{_TARGET_CHAR}]*", re.ASCII)
# RFC 9112 3.2.2: absolute-form = absolute-URI; we accept the http and https schemes, with a
# non-empty authority (RFC 9110 4.2.1: an http URI with an empty host is invalid).
_ABSOLUTE_FORM = re.compile(
    rf"(?i:https?)://[{_AUTHORITY_CHAR}]+(?:[/?][{_TARGET_CHAR}]*)?", re.ASCII
)
# RFC 9112 3.2.3: authority-form = uri-host ":" port (only for CONNECT)
_AUTHORITY_FORM = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+):[0-9]+", re.ASCII
)

# RFC 9112 5: field-line = field-name ":" OWS field-value OWS, then CRLF.
# No whitespace before the colon (5.1), no obs-fold (5.2: a line starting with SP/HTAB is not a
# field name), field-value without CTLs except HTAB inside (RFC 9110 5.5), OWS = SP / HTAB.
_FIELD_VALUE = rf"(?:[{_VCHAR_OBS}](?:[ \t{_VCHAR_OBS}]*[{_VCHAR_OBS}])?)?"
_FIELD_LINE_TEXT = rf"([{_TCHAR}]+):[ \t]*({_FIELD_VALUE})[ \t]*\r\n"
_FIELD_LINES = re.compile(_FIELD_LINE_TEXT, re.ASCII)  # one line, for error messages
_FIELD_BLOCK = re.compile(  # a whole trailer section; also the reference the tests compare to
    rf"(?:[{_TCHAR}]+:[ \t]*{_FIELD_VALUE}[ \t]*\r\n)*", re.ASCII
)

_TOKEN = re.compile(rf"[{_TCHAR}]+", re.ASCII)  # RFC 9110 5.6.2
_HOST = re.compile(r"[^ \t/?#@]*", re.ASCII)  # RFC 9112 3.2, loosely: see the module docstring
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
# RFC 9110 8.6 with 5.6.1 lists: identical values may arrive as "5, 5" (or two fields).
_CONTENT_LENGTH_LIST = re.compile(r"[0-9]+(?:[ \t]*,[ \t]*[0-9]+)*", re.ASCII)
_LIST_TOKEN = re.compile(rf"[{_TCHAR}]+", re.ASCII)
# RFC 9112 6.1 / RFC 9110 10.1.4: transfer-coding = token *( OWS ";" OWS transfer-parameter ),
# transfer-parameter = token BWS "=" BWS ( token / quoted-string ); one element plus separator.
_TRANSFER_CODING = re.compile(
    rf"([{_TCHAR}]+)(?:[ \t]*;[ \t]*[{_TCHAR}]+[ \t]*=[ \t]*(?:[{_TCHAR}]+|{_QUOTED_STRING}))*"
    r"(?:[ \t]*,[ \t]*|\Z)",
    re.ASCII,
)

# RFC 9112 7.1: chunk-size = 1*HEXDIG, chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS
# ext-val ] ), ext-val = token / quoted-string. No trailing whitespace without an extension.
_CHUNK_LINE = re.compile(
    (
        rf"([0-9A-Fa-f]{{1,{MAX_CHUNK_SIZE_DIGITS}}})"
        rf"(?:[ \t]*;[ \t]*[{_TCHAR}]+(?:[ \t]*=[ \t]*(?:[{_TCHAR}]+|{_QUOTED_STRING}))?)*"
    ).encode("ascii")
)


class State(enum.IntEnum):
    """Where the parser is in the current request.

    An ``IntEnum`` rather than an ``Enum`` only for speed: ``next_event`` looks the state up in
    a dict on every call, and ``Enum`` hashes through a Python-level ``__hash__``.
    """

    HEAD = 1  # waiting for a request head (or for the end of input between requests)
    BODY = 2  # reading a Content-Length body
    CHUNK_SIZE = 3  # waiting for a chunk-size line
    CHUNK_DATA = 4  # reading chunk data
    CHUNK_DATA_END = 5  # waiting for the CRLF after chunk data
    TRAILER = 6  # reading the trailer section after the last chunk
    END = 7  # the body is complete; END_OF_MESSAGE is due
    CLOSED = 8  # the peer ended its input between requests


TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.HEAD: frozenset({State.BODY, State.CHUNK_SIZE, State.END, State.CLOSED}),
    State.BODY: frozenset({State.END}),
    State.CHUNK_SIZE: frozenset({State.CHUNK_DATA, State.TRAILER}),
    State.CHUNK_DATA: frozenset({State.CHUNK_DATA_END}),
    State.CHUNK_DATA_END: frozenset({State.CHUNK_SIZE}),
    State.TRAILER: frozenset({State.HEAD}),
    State.END: frozenset({State.HEAD}),
    State.CLOSED: frozenset(),
}
"""Every move the parser makes. Any state may also end in an error, which is final."""


_HEAD: Final = State.HEAD
_BODY: Final = State.BODY
_CHUNK_SIZE: Final = State.CHUNK_SIZE
_CHUNK_DATA: Final = State.CHUNK_DATA
_CHUNK_DATA_END: Final = State.CHUNK_DATA_END
_TRAILER: Final = State.TRAILER
_END: Final = State.END
_CLOSED: Final = State.CLOSED
"""The states as module globals. Speed: ``State.END`` costs about 100 ns (an attribute lookup on
the enum class), a global about 15 ns, and the parser reads or sets its state several times per
request."""


class RequestParser:
    """Turns the bytes of one connection into request events. See the module docstring."""

    __slots__ = (
        "_body_total",
        "_buffer",
        "_empty_lines",
        "_eof",
        "_error",
        "_head_searched",
        "_limits",
        "_line_end",
        "_line_searched",
        "_remaining",
        "_state",
        "bytes_scanned",
    )

    def __init__(self, limits: ParserLimits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._state = _HEAD
        self._eof = False
        self._error: HTTPError | None = None
        self._head_searched = 0  # the head terminator is not in _buffer[:_head_searched]
        self._line_end = -1  # where the first line of the buffer ends, once known
        self._line_searched = 0  # no CRLF in _buffer[:_line_searched] (request or chunk line)
        self._empty_lines = 0  # empty lines skipped before the current request line
        self._remaining = 0  # body or chunk bytes still to hand out
        self._body_total = 0  # decoded chunked-body bytes so far (for max_body)
        self.bytes_scanned = 0
        """Bytes searched while waiting for an incomplete head; tests use it to prove linearity."""

    # -- public interface ----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer ended its input."""
        if self._error is not None:
            raise self._error
        if data:
            if self._eof:
                raise RuntimeError("feed() after end of input")
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event:
        """The next event, ``NEED_DATA`` if more bytes are needed, or raise an ``HTTPError``."""
        if self._error is not None:
            raise self._error
        try:
            return _READERS[self._state](self)
        except HTTPError as error:
            self._error = error
            raise

    def skip_end_of_message(self) -> bool:
        """If ``END_OF_MESSAGE`` is the next event, consume it and return True; else False.

        A shortcut for drivers: right after a ``Request`` without a body (no Content-Length, or
        zero, and not chunked) the end of the message is already known, and this saves a
        ``next_event()`` round trip per request. The event sequence is unchanged for everyone
        who does not call it.
        """
        if self._state is _END:
            self._state = _HEAD
            return True
        return False

    @property
    def buffered(self) -> int:
        """Bytes held but not yet turned into events."""
        return len(self._buffer)

    @property
    def mid_request(self) -> bool:
        """Some of a request has arrived and its END_OF_MESSAGE has not been returned yet."""
        state = self._state
        if state is _HEAD:
            # Empty lines before a request line are skipped (RFC 9112 2.2), so CR and LF alone
            # are not the start of a request: an idle connection stays idle.
            buffer = self._buffer
            return bool(buffer) and bool(buffer.strip(b"\r\n"))
        return state is not _CLOSED

    @property
    def state(self) -> State:
        """The current state (for tests, tools and ``repr``)."""
        return self._state

    def __repr__(self) -> str:
        error = f", error={self._error!r}" if self._error is not None else ""
        return f"<RequestParser {self._state.name} buffered={len(self._buffer)}{error}>"

    # -- the head ------------------------------------------------------------------------------

    def _read_head(self) -> Event:
        buffer = self._buffer
        if not buffer:  # first: every keep-alive request ends with this question
            return self._read_nothing()
        if buffer.startswith(_LINE_BREAK_STARTS) and self._head_searched == 0:
            self._skip_empty_lines()
            if buffer == b"\r":  # half of an empty line: wait for its LF
                if self._eof:
                    raise BadRequest("incomplete request")
                return NEED_DATA
            if not buffer:
                return self._read_nothing()
        searched = self._head_searched
        # RFC 9112 2.1: the head ends with an empty line; search only the bytes not yet searched.
        head_end = buffer.find(b"\r\n\r\n", searched - 3 if searched > 3 else 0)
        if head_end < 0:
            return self._head_incomplete()
        raw_head = buffer[:head_end]  # request line and fields, without the final CRLFCRLF
        del buffer[: head_end + 4]
        if self._head_searched:  # the head came in pieces: forget the partial searches
            self._head_searched = 0
            self._line_end = -1
            self._line_searched = 0
        self._empty_lines = 0
        if head_end + 4 > self._limits.max_head:
            raise HeadersTooLarge("request head too large")
        return self._parse_head(raw_head)

    def _read_nothing(self) -> Event:
        """Nothing buffered between requests: the end of input, or a wait for more."""
        if self._eof:
            self._state = _CLOSED
            return CLOSED
        return NEED_DATA

    def _skip_empty_lines(self) -> None:
        # RFC 9112 2.2: ignore at least one empty line (CRLF) received before the request line.
        buffer = self._buffer
        while buffer.startswith(b"\r\n"):
            del buffer[:2]
            self._empty_lines += 1
            if self._empty_lines > MAX_LEADING_EMPTY_LINES:
                raise BadRequest("too many empty lines before the request line")
        if buffer.startswith(b"\n"):
            raise BadRequest("bare LF before the request line")  # our choice, RFC 9112 2.2
        if buffer.startswith(b"\r") and len(buffer) > 1:
            raise BadRequest("bare CR before the request line")  # RFC 9112 2.2

    def _head_incomplete(self) -> Event:
        """No empty line yet: enforce the limits on what we hold, remember how far we looked."""
        buffer = self._buffer
        size = len(buffer)
        searched = self._head_searched
        self.bytes_scanned += size - searched + 3
        # A bare LF line break ("\n\n", "\n\r\n") would leave us waiting for a CRLFCRLF that
        # never comes: refuse it as soon as it arrives (our choice, RFC 9112 2.2).
        if _has_bare_lf(buffer, searched):
            raise BadRequest("bare LF in the request head")
        self._head_searched = size
        limit = self._limits.max_request_line
        if self._line_end < 0:
            start = self._line_searched
            self.bytes_scanned += size - start + 1
            self._line_end = buffer.find(b"\r\n", start - 1 if start else 0)
            self._line_searched = size
            # Once size >= limit + 2, any CRLF still to come would end a line longer than limit.
            if self._line_end < 0 and size >= limit + 2:
                raise URITooLong("request line too long")
        if self._line_end > limit:
            raise URITooLong("request line too long")
        # Any terminator still to come would end beyond max_head.
        if size >= self._limits.max_head:
            raise HeadersTooLarge("request head too large")
        if self._eof:
            raise BadRequest("incomplete request")
        return NEED_DATA

    def _parse_head(self, raw_head: bytearray) -> Event:
        """Validate a whole head: the request line and the field lines, joined by CRLF.

        Speed shaped this function (see the module docstring): the bytes are checked for
        control characters in one ``translate`` call, lines are cut at the exact separator CRLF,
        and each field line is cut at its first colon. Every rule is still explicit: the
        argument-less ``split()``/``strip()`` that treat ``\\x85`` or ``\\xa0`` as whitespace are
        never used; ``split("\\r\\n")`` and ``strip(" \\t")`` name their bytes exactly.
        """
        head = raw_head.decode("latin-1")  # one character per byte, nothing lost
        lines = head.split("\r\n")
        # RFC 9112 2.2 (no bare CR, our choice of no bare LF) and RFC 9110 5.5 (no CTL but HTAB
        # in a field value): deleting every ordinary byte must leave exactly the CRLFs we split.
        if len(raw_head.translate(None, _ORDINARY_HEAD_BYTES)) != 2 * len(lines) - 2:
            raise BadRequest(_describe_bad_head(head))
        request_line = lines[0]
        if len(request_line) > self._limits.max_request_line:
            raise URITooLong("request line too long")
        known = _VALID_REQUEST_LINES.get(request_line)
        if known is None:
            known = _parse_request_line(request_line)
        method, target, version = known

        if len(lines) - 1 > self._limits.max_header_count:
            raise HeadersTooLarge("too many header fields")
        headers: dict[str, str] = {}
        raw_headers: list[tuple[str, str]] = []
        append = raw_headers.append
        field_lines = iter(lines)
        next(field_lines)  # the request line
        for field_line in field_lines:
            # RFC 9112 5: field-line = field-name ":" OWS field-value OWS
            name, colon, value = field_line.partition(":")
            key = _KNOWN_FIELD_NAMES.get(name)  # lower-case name; proven a token
            if key is None or not colon:
                key = name.lower()
                # RFC 9110 5.1: the name is a token. This rejects an empty name, obs-fold (a line
                # starting with SP/HTAB, RFC 9112 5.2) and whitespace before the colon (5.1).
                if not colon or _TOKEN.fullmatch(key) is None:
                    raise BadRequest(_describe_bad_fields(head[len(request_line) + 2 :] + "\r\n"))
            value = value.strip(" \t")  # RFC 9112 5: OWS is exactly SP and HTAB
            append((name, value))
            headers[key] = value
        if len(headers) != len(raw_headers):
            headers = _combine_repeated_fields(raw_headers)
        return self._start_message(method, target, version, headers, raw_headers)

    def _start_message(
        self,
        method: str,
        target: str,
        version: str,
        headers: dict[str, str],
        raw_headers: list[tuple[str, str]],
    ) -> Request:
        """Apply the field semantics that decide framing and persistence; choose the next state.

        The common request (no body, no Expect) takes the first branches only.
        """
        host = headers.get("host")
        if host is None:
            if version == "1.1":  # RFC 9112 3.2: an HTTP/1.1 request without Host -> 400
                raise BadRequest("missing Host field")
        elif host not in _VALID_HOSTS:
            _check_host(host)

        # RFC 9112 9.3: persistence. 1.1 persists unless "close"; 1.0 only with "keep-alive".
        connection = headers.get("connection")
        if connection is None:
            keep_alive = version == "1.1"
        elif connection == "keep-alive":
            keep_alive = True
        else:
            tokens = _LIST_TOKEN.findall(connection.lower())  # a comma list, case-insensitive
            keep_alive = "close" not in tokens and (version == "1.1" or "keep-alive" in tokens)

        if _BODY_AND_EXPECT_FIELDS.isdisjoint(headers):
            # The common request: no body (RFC 9112 6.3 rule 7: neither field means none), no
            # expectation. Speed: one C call instead of the three tests below.
            self._state = _END
            return Request(method, target, version, headers, raw_headers, keep_alive)

        expect_continue = False
        if "expect" in headers:
            # RFC 9110 10.1.1: 100-continue is the only expectation; ignore it in HTTP/1.0.
            if headers["expect"].lower() != "100-continue":
                raise ExpectationFailed("unsupported expectation")
            expect_continue = version == "1.1"

        if "transfer-encoding" in headers or "content-length" in headers:
            content_length = self._frame_body(headers, version)
        else:
            # RFC 9112 6.3 rule 7: a request with neither field has no body.
            content_length = None
            self._state = _END
        return Request(
            method,
            target,
            version,
            headers,
            raw_headers,
            keep_alive,
            expect_continue,
            content_length,
            self._state is _CHUNK_SIZE,
        )

    def _frame_body(self, headers: dict[str, str], version: str) -> int | None:
        """RFC 9112 6.3: choose the body framing; return Content-Length or None if chunked."""
        transfer_encoding = headers.get("transfer-encoding")
        length_field = headers.get("content-length")
        if transfer_encoding is not None:
            if length_field is not None:  # RFC 9112 6.1: both present -> smuggling shape
                raise BadRequest("both Transfer-Encoding and Content-Length")
            if version == "1.0":  # RFC 9112 6.1: faulty framing in an HTTP/1.0 message
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            _check_transfer_coding(transfer_encoding)
            self._body_total = 0
            self._state = _CHUNK_SIZE
            return None
        assert length_field is not None
        content_length = _parse_content_length(length_field)
        if content_length > self._limits.max_body:
            raise PayloadTooLarge("request body too large")
        if content_length:
            self._remaining = content_length
            self._state = _BODY
        else:
            self._state = _END
        return content_length

    # -- bodies --------------------------------------------------------------------------------

    def _take_data(self, next_state: State) -> Event:
        """Hand out up to ``_remaining`` buffered body bytes; on zero, move to ``next_state``."""
        buffer = self._buffer
        size = len(buffer)
        if not size:
            if self._eof:
                raise BadRequest("incomplete request")
            return NEED_DATA
        remaining = self._remaining
        if size <= remaining:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:remaining])
            del buffer[:remaining]
        remaining -= len(data)
        self._remaining = remaining
        if not remaining:
            self._state = next_state
        return Data(data)

    def _read_body(self) -> Event:
        # RFC 9112 6.2: exactly Content-Length bytes, then the message ends.
        return self._take_data(_END)

    def _read_chunk_size(self) -> Event:
        # RFC 9112 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
        buffer = self._buffer
        start = self._line_searched
        line_end = buffer.find(b"\r\n", start - 1 if start else 0)
        if line_end < 0:
            if buffer.find(b"\n", start) >= 0:
                raise BadRequest("bare LF in a chunk-size line")
            self._line_searched = len(buffer)
            if len(buffer) > MAX_CHUNK_LINE + 1:
                raise BadRequest("chunk-size line too long")
            if self._eof:
                raise BadRequest("incomplete request")
            return NEED_DATA
        if line_end > MAX_CHUNK_LINE:
            raise BadRequest("chunk-size line too long")
        match = _CHUNK_LINE.fullmatch(buffer, 0, line_end)
        if match is None:
            raise BadRequest("invalid chunk-size line")
        size = int(match.group(1), 16)  # proven 1..16 ASCII hex digits by the pattern
        del buffer[: line_end + 2]
        self._line_searched = 0
        if not size:  # RFC 9112 7.1: last-chunk, then the trailer section
            self._state = _TRAILER
            return self._read_trailer()
        self._body_total += size
        if self._body_total > self._limits.max_body:
            raise PayloadTooLarge("request body too large")
        self._remaining = size
        self._state = _CHUNK_DATA
        return self._take_data(_CHUNK_DATA_END)

    def _read_chunk_data(self) -> Event:
        return self._take_data(_CHUNK_DATA_END)

    def _read_chunk_data_end(self) -> Event:
        # RFC 9112 7.1: chunk-data is followed by exactly CRLF (no bare LF, nothing else).
        buffer = self._buffer
        if buffer.startswith(b"\r\n"):
            del buffer[:2]
            self._state = _CHUNK_SIZE
            return self._read_chunk_size()
        if len(buffer) >= 2 or (buffer and buffer[0] != 13):
            raise BadRequest("chunk data not followed by CRLF")
        if self._eof:
            raise BadRequest("incomplete request")
        return NEED_DATA

    def _read_trailer(self) -> Event:
        # RFC 9112 7.1.2: trailer-section = *( field-line CRLF ), then CRLF. Parsed, discarded.
        buffer = self._buffer
        if buffer.startswith(b"\r\n"):
            del buffer[:2]
            return self._read_end()
        if len(buffer) < 2 and (not buffer or buffer[0] == 13):
            if self._eof:
                raise BadRequest("incomplete request")
            return NEED_DATA
        searched = self._head_searched
        trailer_end = buffer.find(b"\r\n\r\n", searched - 3 if searched > 3 else 0)
        if trailer_end < 0:
            if _has_bare_lf(buffer, searched):
                raise BadRequest("bare LF in the trailer section")
            self._head_searched = len(buffer)
            if len(buffer) >= MAX_TRAILER:
                raise HeadersTooLarge("trailer section too large")
            if self._eof:
                raise BadRequest("incomplete request")
            return NEED_DATA
        self._head_searched = 0
        if trailer_end + 4 > MAX_TRAILER:
            raise HeadersTooLarge("trailer section too large")
        trailer = buffer[: trailer_end + 2].decode("latin-1")
        if _FIELD_BLOCK.fullmatch(trailer) is None:
            raise BadRequest(_describe_bad_fields(trailer))
        del buffer[: trailer_end + 4]
        return self._read_end()

    def _read_end(self) -> Event:
        self._state = _HEAD
        return END_OF_MESSAGE

    def _read_closed(self) -> Event:
        return CLOSED


_LINE_BREAK_STARTS: Final = (b"\r", b"\n")

_BODY_AND_EXPECT_FIELDS: Final = frozenset({"content-length", "transfer-encoding", "expect"})
"""The fields that make a request more than a bare head (framing, RFC 9112 6.3; Expect)."""

_ORDINARY_HEAD_BYTES: Final = bytes(
    byte for byte in range(256) if byte == 0x09 or 0x20 <= byte <= 0x7E or byte >= 0x80
)
"""Bytes allowed anywhere in a head line: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5)."""

_COMMON_FIELD_NAMES: Final = frozenset(
    {
        "accept", "accept-encoding", "accept-language", "authorization", "cache-control",
        "connection", "content-length", "content-type", "cookie", "dnt", "expect", "host",
        "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
        "origin", "pragma", "priority", "range", "referer", "sec-ch-ua", "sec-ch-ua-mobile",
        "sec-ch-ua-platform", "sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site",
        "sec-fetch-user", "te", "trailer", "transfer-encoding", "upgrade",
        "upgrade-insecure-requests", "user-agent", "via", "x-forwarded-for",
        "x-forwarded-proto", "x-requested-with",
    }
)
_KNOWN_FIELD_NAMES: Final[dict[str, str]] = {
    spelling: name
    for name in _COMMON_FIELD_NAMES
    for spelling in (name, "-".join(part.capitalize() for part in name.split("-")))
}
"""Common field names as browsers spell them -> lower case. One dict lookup both lowers the
name and proves it a token, instead of ``lower()`` plus a pattern: this loop runs per field."""

_READERS: Final = {
    State.HEAD: RequestParser._read_head,
    State.BODY: RequestParser._read_body,
    State.CHUNK_SIZE: RequestParser._read_chunk_size,
    State.CHUNK_DATA: RequestParser._read_chunk_data,
    State.CHUNK_DATA_END: RequestParser._read_chunk_data_end,
    State.TRAILER: RequestParser._read_trailer,
    State.END: RequestParser._read_end,
    State.CLOSED: RequestParser._read_closed,
}


# ---------------------------------------------------------------------------------------------
# Field semantics and error details (cold paths, kept out of the parser class).


def _has_bare_lf(buffer: bytearray, start: int) -> bool:
    """Is there an LF not preceded by CR in ``buffer[start:]``? Each byte is looked at once
    per call and callers move ``start`` past what they checked, so the cost stays linear."""
    position = buffer.find(b"\n", start)
    while position >= 0:
        if position == 0 or buffer[position - 1] != 0x0D:
            return True
        position = buffer.find(b"\n", position + 1)
    return False


_VALID_HOSTS: set[str] = set()
"""Host values already proven valid: a memo of the pure check below (the check is a pattern
match; a set lookup is several times cheaper and most requests repeat a few hosts)."""

MAX_REMEMBERED_HOSTS: Final = 256
"""Bound on _VALID_HOSTS so a client sending many distinct hosts cannot grow it."""


def _check_host(host: str) -> None:
    """RFC 9112 3.2: an invalid Host value -> 400 (checked loosely, see the module docstring)."""
    if _HOST.fullmatch(host) is None:
        raise BadRequest("invalid Host field")
    if len(_VALID_HOSTS) < MAX_REMEMBERED_HOSTS:
        _VALID_HOSTS.add(host)


_VALID_REQUEST_LINES: dict[str, tuple[str, str, str]] = {}
"""Request lines already proven valid -> (method, target, version): a memo of the pure function
below, like ``_VALID_HOSTS`` (a keep-alive client repeats its lines; a dictionary hit costs
about 50 ns, the pattern match and checks about 600 ns)."""

MAX_REMEMBERED_REQUEST_LINES: Final = 256
"""Bound on _VALID_REQUEST_LINES so a client sending many distinct targets cannot grow it."""


def _parse_request_line(request_line: str) -> tuple[str, str, str]:
    """RFC 9112 3: (method, target, version) of a request line, or an ``HTTPError``."""
    match = _REQUEST_LINE.fullmatch(request_line)
    if match is None:
        raise BadRequest(_describe_bad_request_line(request_line))
    method, target, major, minor = match.groups()
    # RFC 9112 2.3 and RFC 9110 6.2: same major version, any minor; 2+ is another protocol.
    if major != "1":
        if major == "0":
            raise BadRequest("unsupported HTTP version")
        raise VersionNotSupported(f"HTTP/{major}.{minor} is not supported")
    version = "1.0" if minor == "0" else "1.1"
    if target[0] != "/" or method == "CONNECT":  # origin-form is proven by _REQUEST_LINE
        _check_target(method, target)
    known = (method, target, version)
    if len(_VALID_REQUEST_LINES) < MAX_REMEMBERED_REQUEST_LINES:
        _VALID_REQUEST_LINES[request_line] = known
    return known


def _combine_repeated_fields(raw_headers: list[tuple[str, str]]) -> dict[str, str]:
    """The headers dict when some field name repeats (the uncommon case, kept off the loop)."""
    headers: dict[str, str] = {}
    for name, value in raw_headers:
        key = name.lower()
        if key in headers:
            if key == "host":  # RFC 9112 3.2: more than one Host field line -> 400
                raise BadRequest("more than one Host field")
            # RFC 9110 5.3: a repeated field is one comma-separated list, in order.
            headers[key] = headers[key] + ", " + value
        else:
            headers[key] = value
    return headers


def _check_target(method: str, target: str) -> None:
    """RFC 9112 3.2: the four request-target forms, each tied to its methods."""
    if target[0] == "/":
        if method == "CONNECT":  # RFC 9112 3.2.3: CONNECT takes authority-form only
            raise BadRequest("CONNECT needs an authority-form target")
        if _ORIGIN_FORM.fullmatch(target) is None:  # RFC 9112 3.2.1
            raise BadRequest("invalid origin-form target")
    elif target == "*":
        if method != "OPTIONS":  # RFC 9112 3.2.4: asterisk-form only for OPTIONS
            raise BadRequest("asterisk-form target is only for OPTIONS")
    elif method == "CONNECT":
        if _AUTHORITY_FORM.fullmatch(target) is None:  # RFC 9112 3.2.3
            raise BadRequest("invalid authority-form target")
    elif _ABSOLUTE_FORM.fullmatch(target) is None:  # RFC 9112 3.2.2, any method
        raise BadRequest("invalid request target")


def _parse_content_length(value: str) -> int:
    """RFC 9112 6.2 / RFC 9110 8.6: 1*DIGIT, or a list of identical values."""
    if _DIGITS.fullmatch(value) is None:
        if _CONTENT_LENGTH_LIST.fullmatch(value) is None:
            raise BadRequest("invalid Content-Length")
        values = _DIGITS.findall(value)
    else:
        values = [value]
    if any(len(digits) > MAX_CONTENT_LENGTH_DIGITS for digits in values):
        raise BadRequest("Content-Length has too many digits")
    lengths = {int(digits) for digits in values}  # proven ASCII digits by the patterns above
    if len(lengths) != 1:
        raise BadRequest("different Content-Length values")
    return lengths.pop()


def _check_transfer_coding(value: str) -> None:
    """RFC 9112 6.1 and 6.3: the codings must end with exactly one ``chunked``."""
    codings = []
    position = 0
    while position < len(value):
        match = _TRANSFER_CODING.match(value, position)
        if match is None or match.end() == position:
            raise BadRequest("invalid Transfer-Encoding")
        codings.append(match.group(1).lower())
        position = match.end()
    if not codings or value[-1] in ", \t":
        raise BadRequest("invalid Transfer-Encoding")
    if codings.count("chunked") > 1:
        raise BadRequest("chunked applied more than once")
    if "chunked" in codings and codings[-1] != "chunked":
        raise BadRequest("chunked is not the final transfer coding")
    if codings != ["chunked"]:
        raise NotImplementedCoding("unsupported transfer coding")


def _describe_bad_head(head: str) -> str:
    """A precise message for a head holding a stray control character (error path only)."""
    if "\n" in head.replace("\r\n", ""):
        return "bare LF in the request head"
    if "\r" in head.replace("\r\n", ""):
        return "bare CR in the request head"
    return "control character in the request head"


def _describe_bad_request_line(line: str) -> str:
    """A precise message for a request line that failed the pattern (error path only)."""
    if "\n" in line or "\r" in line:
        return "bare CR or LF in the request line"
    if line.count(" ") < 2:
        return "request line without an HTTP version"
    if "  " in line:
        return "more than one space between request-line parts"
    return "invalid request line"


def _describe_bad_fields(block: str) -> str:
    """A precise message for the first bad field line (error path only)."""
    position = 0
    while True:
        match = _FIELD_LINES.match(block, position)
        if match is None:
            break
        position = match.end()
    rest = block[position:]
    if rest[:1] in (" ", "\t"):
        return "obs-fold (field line starting with whitespace)"  # RFC 9112 5.2
    colon = rest.find(":")
    line_end = rest.find("\r\n")
    if colon < 0 or (line_end >= 0 and colon > line_end):
        return "field line without a colon"
    if rest[colon - 1 : colon] in (" ", "\t"):
        return "whitespace between field name and colon"  # RFC 9112 5.1
    if _LIST_TOKEN.fullmatch(rest[:colon]) is None:
        return "invalid field name"
    return "invalid character or line break in a field value"  # RFC 9110 5.5, RFC 9112 2.2
