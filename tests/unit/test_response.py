"""The response head serializer: exact bytes, and refusal of anything that could split a head."""

from __future__ import annotations

import pytest

from evserver.http import errors
from evserver.http.errorpage import error_page
from evserver.http.parser import RequestParser
from evserver.http.response import (
    LAST_CHUNK,
    chunk,
    response_head,
    serialize_fields,
    status_line,
)
from evserver.http.status import REASONS, reason_phrase

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


SERVER_STATUSES = (100, 200, 204, 206, 301, 304, 400, 403, 404, 405, 408, 412, 413, 414, 416,
                   417, 431, 500, 501, 503, 505)
"""Every status the server sends: interim, handler answers, parser errors, timeouts."""


def test_reasons_cover_the_server_statuses() -> None:
    for status in SERVER_STATUSES:
        assert REASONS[status]


def _phrase_in_status_line(status: int) -> str:
    line = status_line(status).decode("latin-1")
    prefix = f"HTTP/1.1 {status} "
    assert line.startswith(prefix) and line.endswith("\r\n"), line
    return line[len(prefix) : -2]


def _phrase_in_error_page(status: int) -> str:
    page = error_page(status)[1].decode("ascii")
    title = page[page.index("<title>") + 7 : page.index("</title>")]
    assert f"<h1>{title}</h1>" in page
    code, _, phrase = title.partition(" ")
    assert code == str(status)
    return phrase


@pytest.mark.parametrize("status", SERVER_STATUSES)
def test_status_line_and_error_page_name_a_sent_status_alike(status: int) -> None:
    phrase = _phrase_in_status_line(status)
    assert phrase == _phrase_in_error_page(status) == REASONS[status]


def test_status_line_and_error_page_agree_on_every_status() -> None:
    for status in range(100, 1000):
        phrase = reason_phrase(status)
        assert _phrase_in_status_line(status) == phrase, status
        assert _phrase_in_error_page(status) == phrase, status


def test_an_unlisted_status_has_no_phrase_anywhere() -> None:
    # RFC 9112 4: the reason-phrase may be empty; the page is titled with the bare code.
    assert 599 not in REASONS and 418 not in REASONS and 306 not in REASONS
    assert status_line(599) == b"HTTP/1.1 599 \r\n"
    assert b"<title>599</title>" in error_page(599)[1]


def test_rfc_9110_phrases_whatever_the_python_version() -> None:
    assert REASONS[413] == "Content Too Large"
    assert REASONS[414] == "URI Too Long"
    assert REASONS[416] == "Range Not Satisfiable"
    assert REASONS[422] == "Unprocessable Content"
    for phrase in REASONS.values():  # safe in a status line and unescaped in HTML
        assert phrase.isascii() and phrase.isprintable() and not set(phrase) & set('<>&"')


def test_errors_name_their_status_from_the_table() -> None:
    classes = [errors.HTTPError]
    for cls in classes:
        classes.extend(cls.__subclasses__())
    assert len(classes) >= 8
    for cls in classes:
        error = cls()
        assert error.reason == REASONS[error.status]
        assert error.detail == str(error) == REASONS[error.status]
        assert cls("why").detail == "why"
        assert error.status in SERVER_STATUSES


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
