"""The response head serializer: exact bytes, and refusal of anything that could split a head."""

from __future__ import annotations

import pytest

from evserver.http.parser import RequestParser
from evserver.http.response import (
    LAST_CHUNK,
    REASONS,
    chunk,
    response_head,
    serialize_fields,
    status_line,
)

DATE = "Sun, 06 Nov 1994 08:49:37 GMT"


def test_status_lines() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404, "1.0") == b"HTTP/1.0 404 Not Found\r\n"
    assert status_line(413) == b"HTTP/1.1 413 Content Too Large\r\n"
    assert status_line(599) == b"HTTP/1.1 599 \r\n"  # RFC 9112 4: the reason may be empty
    assert status_line(200) is status_line(200)  # cached


@pytest.mark.parametrize("status", [0, 99, 1000, -200])
def test_status_out_of_range(status: int) -> None:
    with pytest.raises(ValueError):
        status_line(status)


def test_bad_version() -> None:
    with pytest.raises(ValueError):
        status_line(200, "2.0\r\nX: y")


def test_reasons_cover_the_server_statuses() -> None:
    for status in (200, 206, 301, 304, 400, 403, 404, 405, 408, 413, 414, 416, 417, 431, 500,
                   501, 503, 505):
        assert REASONS[status]


def test_serialize_fields_in_order() -> None:
    assert serialize_fields([("Content-Type", "text/html"), ("Content-Length", "12"),
                             ("X-Empty", "")]) == (
        b"Content-Type: text/html\r\nContent-Length: 12\r\nX-Empty: \r\n"
    )
    assert serialize_fields([("X-Latin", "caf\xe9")]) == b"X-Latin: caf\xe9\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-A", "a\r\nSet-Cookie: evil"),
        ("X-A", "a\nb"),
        ("X-A", "a\rb"),
        ("X-A", "a\x00b"),
        ("X A", "v"),
        ("X-A:", "v"),
        ("", "v"),
        ("X-A\r\n", "v"),
        ("X-\xe9", "v"),
        ("X-A", "snow \u2603"),
    ],
)
def test_serialize_fields_refuses_unsafe(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        serialize_fields([(name, value)])


def test_response_head_layout() -> None:
    head = response_head(200, b"Content-Length: 2\r\n", date=DATE, server="evserver/0.1.0",
                         connection="keep-alive")
    assert head == (
        b"HTTP/1.1 200 OK\r\nServer: evserver/0.1.0\r\nDate: " + DATE.encode()
        + b"\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"
    )


def test_response_head_without_server_and_connection() -> None:
    head = response_head(304, b"", date=DATE, server=None, connection=None, version="1.0")
    assert head == b"HTTP/1.0 304 Not Modified\r\nDate: " + DATE.encode() + b"\r\n\r\n"


def test_response_head_date_changes() -> None:
    first = response_head(200, b"", date=DATE, server=None, connection="close")
    later = "Sun, 06 Nov 1994 08:49:38 GMT"
    second = response_head(200, b"", date=later, server=None, connection="close")
    assert DATE.encode() in first and later.encode() in second


@pytest.mark.parametrize("bad", ["x\r\nSet-Cookie: a", "x\n"])
def test_response_head_refuses_injection(bad: str) -> None:
    with pytest.raises(ValueError):
        response_head(200, b"", date=DATE, server=bad, connection=None)
    with pytest.raises(ValueError):
        response_head(200, b"", date=bad, server=None, connection=None)
    with pytest.raises(ValueError):
        response_head(200, b"", date=DATE, server=None, connection=bad)


def test_chunks() -> None:
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
    assert chunk(b"") == b""  # never an accidental last-chunk
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_chunked_output_parses_back() -> None:
    """Our own chunked framing, read by our own parser, gives back the body."""
    body = [b"a", b"bc" * 100, b"", b"\r\n0\r\n\r\n"]
    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           + b"".join(chunk(piece) for piece in body) + LAST_CHUNK)
    parser = RequestParser()
    parser.feed(raw)
    received = b""
    events = []
    while (event := parser.next_event()) is not None and repr(event) != "NEED_DATA":
        events.append(event)
        received += getattr(event, "data", b"")
    assert received == b"".join(body)
    assert repr(events[-1]) == "END_OF_MESSAGE"
