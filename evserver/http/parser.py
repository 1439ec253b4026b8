"""The incremental HTTP/1.1 request parser (RFC 9112), sans-I/O: bytes in, events out.

What this module knows: the states a request passes through on one connection, and how to read
each one from the bytes received (RFC 9112: the head, Content-Length and chunked bodies,
trailers). What it must not know: where the bytes come from (sockets, files), what time it is,
and what anyone does with the events. It never reads, never writes, never logs.

How it is used::

    parser = RequestParser()
    parser.feed(received)            # b"" means the peer ended its input
    event = parser.next_event()      # Request | Data | END_OF_MESSAGE | NEED_DATA | CLOSED

The same object parses the next pipelined request after ``END_OF_MESSAGE``; no reset call.

The state machine lives in one place: :class:`State` and :data:`TRANSITIONS` below list every
state and every move between them, and ``next_event`` dispatches on the state through
``_READERS``. Nothing else decides what the parser is doing. The rest of the parsing lives
beside it, split the way h11 splits it:

- ``evserver.http.grammar``: the character classes and patterns of the RFC 9110/9112 ABNF;
- ``evserver.http.checks``: the cold checks (request line, target, Host, Content-Length,
  Transfer-Encoding) and the messages describing a malformed head, with their memos.

Decisions taken where RFC 9112 leaves a choice (each one makes us stricter, never looser, because
a request two parsers read differently is how request smuggling starts; the grammar and the
checks state the ones they implement):

- Line terminators are exactly CRLF. A bare LF is **rejected** with 400 (RFC 9112 2.2 allows a
  recipient to recognise it; we do not, since a front proxy that does not would see different
  lines). A bare CR anywhere in the head is 400 (RFC 9112 2.2 forbids treating it as a break).
- Up to :data:`MAX_LEADING_EMPTY_LINES` empty lines before a request line are ignored (RFC 9112
  2.2 asks for at least one); more are 400, so a client cannot keep us busy with CRLFs.
- ``Transfer-Encoding`` together with ``Content-Length`` is 400 (RFC 9112 6.1, 6.3); in an
  HTTP/1.0 request it is 400.
- ``Expect: 100-continue`` is honoured for HTTP/1.1 and ignored for HTTP/1.0 (RFC 9110 10.1.1);
  any other expectation is 417 (``evserver.http.checks`` reads the list).

Invariants:

- Every byte of a head is matched by an explicit rule. The head is decoded as ISO-8859-1 once;
  the patterns (``evserver.http.grammar``) use explicit character classes only, and this module
  never calls the argument-less ``str.split()``, ``strip()`` or ``splitlines()``, nor ``int()``
  on unproven text: those accept ``\\x85``, ``\\xa0``, ``\\x1c``, ``+1``, ``1_0`` or non-ASCII
  digits.
- Work is linear in the bytes received: while a head is incomplete the parser remembers how far
  it searched, so a head fed one byte at a time costs O(n) (h11's receive-buffer idea).
- After the first error every ``feed`` and ``next_event`` raises that same error again: the
  connection must close, since the framing of what follows is unknown.
- A ``Data`` event is never empty.

Speed: this is the hot path of the whole server, which is why the head is validated with one
``translate`` pass over the whole block instead of a Python loop over its bytes, why the common
cases (no body, keep-alive, a request line or Host seen before) take the shortest branch, and why
every pattern, table and memo from the modules above is bound as a global of this module.
"""

from __future__ import annotations

import enum
from typing import Final

from evserver.http import checks, grammar
from evserver.http.checks import (
    check_host,
    check_transfer_coding,
    combine_repeated_fields,
    describe_bad_fields,
    describe_bad_head,
    expects_continue,
    parse_content_length,
    parse_request_line,
)
from evserver.http.errors import (
    BadRequest,
    HeadersTooLarge,
    HTTPError,
    PayloadTooLarge,
    URITooLong,
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
    MAX_TRAILER,
    ParserLimits,
)

MAX_LEADING_EMPTY_LINES: Final = 8
"""[400] RFC 9112 2.2 asks us to skip at least one CRLF before a request line; bound the work."""

# The grammar tables and memos the readers use, bound here by assignment rather than by
# ``from ... import``: CPython 3.11 compiles ``name.method(...)`` on an imported name as an
# attribute load plus a call (it guesses the name is a module), which builds a bound method on
# every call; on a name assigned in this module it emits the cheaper method call.
_ORDINARY_HEAD_BYTES: Final = grammar.ORDINARY_HEAD_BYTES
_TOKEN: Final = grammar.TOKEN
_CHUNK_LINE: Final = grammar.CHUNK_LINE
_FIELD_BLOCK: Final = grammar.FIELD_BLOCK
_VALID_HOSTS: Final = checks.VALID_HOSTS
_VALID_REQUEST_LINES: Final = checks.VALID_REQUEST_LINES


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


TRANSITIONS: Final[dict[State, dict[State, str]]] = {
    State.HEAD: {State.BODY: "Content-Length > 0", State.CHUNK_SIZE: "chunked",
                 State.END: "no body", State.CLOSED: "end of input"},
    State.BODY: {State.END: "Content-Length bytes read"},
    State.CHUNK_SIZE: {State.CHUNK_DATA: "size > 0", State.TRAILER: "size 0 (last chunk)"},
    State.CHUNK_DATA: {State.CHUNK_DATA_END: "size bytes read"},
    State.CHUNK_DATA_END: {State.CHUNK_SIZE: "CRLF"},
    State.TRAILER: {State.HEAD: "empty line: END_OF_MESSAGE"},
    State.END: {State.HEAD: "END_OF_MESSAGE"},
    State.CLOSED: {},
}
"""Every move the parser makes (``TRANSITIONS[state][next_state]`` is its cause); documentation
that tests check against the parser, and ``tools/statediagram.py`` draws. Any state may also
end in an error, which is final."""


_HEAD: Final = State.HEAD
_BODY: Final = State.BODY
_CHUNK_SIZE: Final = State.CHUNK_SIZE
_CHUNK_DATA: Final = State.CHUNK_DATA
_CHUNK_DATA_END: Final = State.CHUNK_DATA_END
_TRAILER: Final = State.TRAILER
_END: Final = State.END
_CLOSED: Final = State.CLOSED
"""The states as module globals. Speed: ``State.END`` is an attribute lookup on the enum class,
several times dearer than a global, and the parser reads or sets its state several times per
request."""

_NOTHING_BUFFERED: Final = b""
"""The buffer while no input waits, shared by every parser.

The buffer is either this, or the bytes of one ``feed`` kept as they came (immutable: no copy),
or a bytearray of the parser's own once input must grow or be cut in place (more bytes behind
bytes not yet parsed, pipelined requests, bodies). The common request arrives whole in one
``feed`` and is parsed from the received bytes, after which the buffer is this again: an idle
connection holds no buffer of its own (saves 80 bytes per idle connection: an empty bytearray
and its storage) and a request costs no copy into a bytearray and no cut (a test pins
this path to the bytearray one). Readers that cut the buffer get it from
``_writable_buffer()``; an attempt to cut bytes raises instead of passing unnoticed."""


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
        self._buffer: bytes | bytearray = _NOTHING_BUFFERED
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
        """Add received bytes; ``b""`` means the peer ended its input.

        ``data`` is kept as it is while it waits to be parsed (see ``_NOTHING_BUFFERED``): pass
        ``bytes``, never a buffer the caller will reuse.
        """
        if self._error is not None:
            raise self._error
        if data:
            if self._eof:
                raise RuntimeError("feed() after end of input")
            buffer = self._buffer
            if not buffer:
                self._buffer = data  # nothing waits: parse the received bytes themselves
            elif type(buffer) is bytearray:
                buffer += data
            else:  # bytes behind bytes not yet parsed: a growable buffer from now on
                buffer = self._buffer = bytearray(buffer)
                buffer += data
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

    def _writable_buffer(self) -> bytearray:
        """The buffer as a bytearray of the parser's own, for the readers that cut it."""
        buffer = self._buffer
        if type(buffer) is not bytearray:
            buffer = self._buffer = bytearray(buffer)
        return buffer

    # -- the head ------------------------------------------------------------------------------

    def _read_head(self) -> Event:
        buffer = self._buffer
        if not buffer:  # first: every keep-alive request ends with this question
            return self._read_nothing()
        if buffer.startswith(_LINE_BREAK_STARTS) and self._head_searched == 0:
            buffer = self._skip_empty_lines()
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
        head_size = head_end + 4
        if head_size == len(buffer):  # the common case: the request was all there was
            self._buffer = _NOTHING_BUFFERED
        else:  # pipelined requests behind it
            del self._writable_buffer()[:head_size]
        if self._head_searched:  # the head came in pieces: forget the partial searches
            self._head_searched = 0
            self._line_end = -1
            self._line_searched = 0
        self._empty_lines = 0
        if head_size > self._limits.max_head:
            raise HeadersTooLarge("request head too large")
        return self._parse_head(raw_head)

    def _read_nothing(self) -> Event:
        """Nothing buffered between requests: the end of input, or a wait for more."""
        if self._eof:
            self._state = _CLOSED
            return CLOSED
        return NEED_DATA

    def _skip_empty_lines(self) -> bytearray:
        """RFC 9112 2.2: ignore at least one empty line (CRLF) received before the request
        line; return the buffer left."""
        buffer = self._writable_buffer()
        while buffer.startswith(b"\r\n"):
            del buffer[:2]
            self._empty_lines += 1
            if self._empty_lines > MAX_LEADING_EMPTY_LINES:
                raise BadRequest("too many empty lines before the request line")
        if buffer.startswith(b"\n"):
            raise BadRequest("bare LF before the request line")  # our choice, RFC 9112 2.2
        if buffer.startswith(b"\r") and len(buffer) > 1:
            raise BadRequest("bare CR before the request line")  # RFC 9112 2.2
        return buffer

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
            if 0 <= self._line_end <= limit:
                # RFC 9112 3: a request line that is not method SP target SP version (an
                # HTTP/0.9 simple request, "GET /", has no version) can never become valid:
                # judge it as soon as it ends, not when the rest of the head or a timeout comes.
                request_line = buffer[: self._line_end].decode("latin-1")
                if request_line not in _VALID_REQUEST_LINES:
                    parse_request_line(request_line)
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

    def _parse_head(self, raw_head: bytes | bytearray) -> Event:
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
            raise BadRequest(describe_bad_head(head))
        request_line = lines[0]
        if len(request_line) > self._limits.max_request_line:
            raise URITooLong("request line too long")
        known = _VALID_REQUEST_LINES.get(request_line)
        if known is None:
            known = parse_request_line(request_line)
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
                    raise BadRequest(describe_bad_fields(head[len(request_line) + 2 :] + "\r\n"))
            value = value.strip(" \t")  # RFC 9112 5: OWS is exactly SP and HTAB
            append((name, value))
            headers[key] = value
        if len(headers) != len(raw_headers):
            headers = combine_repeated_fields(raw_headers)
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
            check_host(host)

        # RFC 9112 9.3: persistence. 1.1 persists unless "close"; 1.0 only with "keep-alive".
        connection = headers.get("connection")
        if connection is None:
            keep_alive = version == "1.1"
        elif connection == "keep-alive":
            keep_alive = True
        else:
            tokens = _TOKEN.findall(connection.lower())  # a comma list, case-insensitive
            keep_alive = "close" not in tokens and (version == "1.1" or "keep-alive" in tokens)

        if _BODY_AND_EXPECT_FIELDS.isdisjoint(headers):
            # The common request: no body (RFC 9112 6.3 rule 7: neither field means none), no
            # expectation. Speed: one C call instead of the three tests below.
            self._state = _END
            return Request(method, target, version, headers, raw_headers, keep_alive)

        expect_continue = False
        if "expect" in headers:
            # RFC 9110 10.1.1: 100-continue is the only expectation; ignore it in HTTP/1.0.
            expectation = headers["expect"]
            if expectation.lower() == "100-continue" or expects_continue(expectation):
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
            check_transfer_coding(transfer_encoding)
            self._body_total = 0
            self._state = _CHUNK_SIZE
            return None
        assert length_field is not None
        content_length = parse_content_length(length_field)
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
            data = bytes(buffer)  # (the very object, when the buffer is the bytes fed)
            self._buffer = _NOTHING_BUFFERED
        else:
            data = bytes(buffer[:remaining])
            del self._writable_buffer()[:remaining]
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
        buffer = self._writable_buffer()
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
        buffer = self._writable_buffer()
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
        buffer = self._writable_buffer()
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
            raise BadRequest(describe_bad_fields(trailer))
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
"""The reader of each state: ``next_event`` returns ``_READERS[state](parser)``."""


def _has_bare_lf(buffer: bytes | bytearray, start: int) -> bool:
    """Is there an LF not preceded by CR in ``buffer[start:]``? Each byte is looked at once
    per call and callers move ``start`` past what they checked, so the cost stays linear."""
    position = buffer.find(b"\n", start)
    while position >= 0:
        if position == 0 or buffer[position - 1] != 0x0D:
            return True
        position = buffer.find(b"\n", position + 1)
    return False
