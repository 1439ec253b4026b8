"""A strict reader of HTTP/1.1 responses, for tests and tools that check what a server sent.

What this module knows: HTTP/1.1 responses as RFC 9112 defines them (status line, section 4;
field lines, section 5; Content-Length framing, section 6.3) and blocking sockets. What it must
not know: how the server is built. It imports only the standard library, never ``evserver``, so
``tools/fuzz_server.py`` (a tool that treats its target as an address) can use it as well as the
tests.

Strict means: ``HTTP/1.1 NNN reason CRLF``; field lines are ``token ":" OWS value OWS CRLF`` with
no control characters; one ``Content-Length`` (plain digits) on every response that has a body
(the server never uses chunked or close-delimited bodies, so anything else is a truncation it
could not signal); ``Date`` on every final response (RFC 9110 6.6.1); nothing after a response
that says ``Connection: close``; and the stream ends exactly at a response boundary. A response
to HEAD has no body whatever its Content-Length says, so a stream that may answer a HEAD request
is read with that in mind (see :func:`parse_responses`).

Whole streams: :func:`exchange` (send, read until the server closes, parse) and
:func:`parse_responses`. Keep-alive conversations: :class:`ResponseReader`, one response at a
time. Everything raises :class:`MalformedResponse` as soon as the bytes cannot be well formed.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_RESPONSE_HEAD = 16 * 1024
"""A response head longer than this is malformed here: evserver's heads are a few hundred bytes."""

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) ([\t \x21-\x7e\x80-\xff]*)")
_FIELD_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*"
    rb"((?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)[ \t]*"
)
_DIGITS = re.compile(rb"[0-9]+")

MAX_STREAM = 64 * 1024 * 1024
"""Bytes :func:`read_until_close` takes before it calls the stream endless (no test sends more)."""


class MalformedResponse(Exception):
    """The bytes the server sent are not a strictly well-formed sequence of HTTP/1.1 responses."""


@dataclass
class HTTPResponse:
    """One parsed response. ``headers`` maps lower-case names to values (repeats joined)."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    head: bytes

    @property
    def closes(self) -> bool:
        """The server said it will close after this response (RFC 9112 9.6)."""
        return "close" in self.headers.get("connection", "").lower().replace(" ", "").split(",")

    def __repr__(self) -> str:
        return f"<HTTPResponse {self.status} {len(self.body)} body bytes>"


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise MalformedResponse(f"bad status line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        field_match = _FIELD_LINE.fullmatch(line)
        if field_match is None:
            raise MalformedResponse(f"bad field line {line[:100]!r}")
        name = field_match.group(1).decode("ascii").lower()
        value = field_match.group(2).decode("latin-1")
        if name in headers:
            if name in ("content-length", "date", "server", "location", "content-type"):
                raise MalformedResponse(f"repeated field {name}")
            headers[name] += ", " + value
        else:
            headers[name] = value
    return int(match.group(1)), match.group(2).decode("latin-1"), headers


def _body_length(status: int, headers: dict[str, str], head_request: bool) -> int:
    """RFC 9112 6.3: how many body bytes follow this head."""
    if "transfer-encoding" in headers:
        raise MalformedResponse("Transfer-Encoding in a response (evserver never sends it)")
    length_text = headers.get("content-length")
    if length_text is not None and _DIGITS.fullmatch(length_text.encode("latin-1")) is None:
        raise MalformedResponse(f"bad Content-Length {length_text!r}")
    if 100 <= status < 200 or status in (204, 304):
        if status == 204 and length_text is not None:
            raise MalformedResponse("Content-Length on a 204 (RFC 9110 8.6)")
        return 0
    if length_text is None:
        raise MalformedResponse(f"{status} without Content-Length (truncation undetectable)")
    if "date" not in headers:
        raise MalformedResponse(f"{status} without Date (RFC 9110 6.6.1)")
    return 0 if head_request else int(length_text)


def parse_one(
    data: bytes | bytearray, start: int = 0, head_request: bool = False
) -> tuple[HTTPResponse, int] | None:
    """The response at ``data[start:]`` and where it ends, or ``None`` while it is incomplete.

    Raises :class:`MalformedResponse` as soon as the bytes cannot begin a valid response.
    """
    head_end = data.find(b"\r\n\r\n", start)
    if head_end < 0:
        prefix = bytes(data[start : start + 9])
        if not b"HTTP/1.1 ".startswith(prefix) and not prefix.startswith(b"HTTP/1.1 "):
            raise MalformedResponse(f"not a status line: {prefix!r}")
        if len(data) - start > MAX_RESPONSE_HEAD:
            raise MalformedResponse("response head too long")
        return None
    head = bytes(data[start:head_end])
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise MalformedResponse("bare CR or LF in a response head")
    status, reason, headers = _parse_head(head)
    length = _body_length(status, headers, head_request)
    body_start = head_end + 4
    if len(data) - body_start < length:
        return None
    body = bytes(data[body_start : body_start + length])
    return HTTPResponse(status, reason, headers, body, head), body_start + length


def parse_responses(data: bytes, head_requests: Sequence[bool] = (), *,
                    maybe_head: bool = False) -> list[HTTPResponse]:
    """Every response in a complete stream (read until the server closed); strict.

    ``head_requests[i]`` says the i-th response answers a HEAD (no body). With ``maybe_head``
    (fuzzed input that might hold a HEAD request) a body-less reading is also accepted when the
    bytes right after the head begin another response or end the stream.
    Raises :class:`MalformedResponse`, including for a stream that ends inside a response.
    """
    responses: list[HTTPResponse] = []
    position = 0
    while position < len(data):
        if responses and responses[-1].closes:
            raise MalformedResponse("bytes after a response that said Connection: close")
        index = len(responses)
        head_request = head_requests[index] if index < len(head_requests) else False
        parsed = parse_one(data, position, head_request)
        if maybe_head and not head_request and (parsed is None or
                                                not _plausible(data, parsed[1])):
            as_head = parse_one(data, position, True)
            if as_head is not None and _plausible(data, as_head[1]):
                parsed = as_head
        if parsed is None:
            raise MalformedResponse(f"stream ends inside response {index + 1} "
                                    f"({len(data) - position} bytes of it arrived)")
        response, position = parsed
        if not 100 <= response.status < 200:
            responses.append(response)
    return responses


def _plausible(data: bytes, position: int) -> bool:
    rest = data[position : position + 9]
    return not rest or b"HTTP/1.1 ".startswith(rest) or rest.startswith(b"HTTP/1.1 ")


def read_until_close(sock: socket.socket, limit: int = MAX_STREAM) -> tuple[bytes, str]:
    """Everything the peer sends until it closes: ``(data, how)``, ``how`` is ``"eof"`` or
    ``"reset"``. A socket timeout propagates (the server did not close in time)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            chunk = sock.recv(262144)
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not chunk:
            return b"".join(chunks), "eof"
        chunks.append(chunk)
        size += len(chunk)
    raise MalformedResponse(f"more than {limit} bytes without closing")


class ResponseReader:
    """Read responses one at a time from a blocking socket (keep-alive conversations)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.closed = ""
        """``""`` while open; ``"eof"`` or ``"reset"`` once the server closed."""

    def _fill(self) -> bool:
        if self.closed:
            return False
        try:
            chunk = self.sock.recv(262144)
        except ConnectionResetError:
            self.closed = "reset"
            return False
        if not chunk:
            self.closed = "eof"
            return False
        self.buffer += chunk
        return True

    def next(self, head_request: bool = False) -> HTTPResponse | None:
        """The next final response (1xx skipped), or ``None`` if the server closed cleanly first.

        Raises :class:`MalformedResponse` if the stream ends inside a response.
        """
        while True:
            parsed = parse_one(self.buffer, 0, head_request) if self.buffer else None
            if parsed is not None:
                response, end = parsed
                del self.buffer[:end]
                if 100 <= response.status < 200:
                    continue
                return response
            if not self._fill():
                if self.buffer:
                    raise MalformedResponse(
                        f"connection {self.closed} inside a response "
                        f"({len(self.buffer)} bytes of it arrived)")
                return None

    def wait_closed(self) -> str:
        """Read until the server closes; any byte that arrives is an error. Returns how."""
        while self._fill():
            pass
        if self.buffer:
            raise MalformedResponse(f"unexpected bytes before close: {bytes(self.buffer[:80])!r}")
        return self.closed


Connect = Callable[[tuple[str, int], float], socket.socket]
"""How to open a connection: ``socket.create_connection``, or a TLS client's equivalent."""


def exchange(address: tuple[str, int], data: bytes, *, timeout: float = 10.0,
             half_close: bool = False, head_requests: Sequence[bool] = (),
             maybe_head: bool = False, connect: Connect = socket.create_connection,
             ) -> tuple[list[HTTPResponse], str]:
    """Send ``data`` on a new connection (made by ``connect``) and read until the server closes.

    Returns the strictly parsed responses and how the server closed (``"eof"``/``"reset"``).
    Without ``half_close`` the server must close by itself (after an error or
    ``Connection: close``); if it does not within ``timeout``, ``socket.timeout`` is raised.
    """
    with connect(address, timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it closed early (after an error): what it sent is still readable
        if half_close:
            try:
                # The plain socket's shutdown: a TLS socket's own would drop its TLS object.
                socket.socket.shutdown(sock, socket.SHUT_WR)
            except OSError:
                pass
        raw, how = read_until_close(sock)
    return parse_responses(raw, head_requests, maybe_head=maybe_head), how
