"""The hot path's speed shortcuts, each checked to change nothing a client can see.

Every shortcut on the hot path (skipping the END_OF_MESSAGE round trip, the per-second head
cache, closing without lingering, the batched access log) has a slow, obviously-correct
equivalent; these tests pin the shortcut to it, on the parser and the protocol alone. The
shortcuts only a running server shows are in tests/servers/test_fastpaths_live.py.
"""

from __future__ import annotations

import pytest

from evserver import protocol as protocol_module
from evserver.bodies import Response
from evserver.http import parser as parser_module
from evserver.http.errors import HTTPError
from evserver.http.events import CLOSED, END_OF_MESSAGE, NEED_DATA, Data, Request
from evserver.http.parser import RequestParser
from evserver.protocol import MAX_CACHED_HEADS, ServerProtocol
from tests.unit.test_protocol import echo_handler, flatten, get, parse_responses


def test_skip_end_of_message_only_right_after_a_bodiless_request() -> None:
    parser = RequestParser()
    parser.feed(get("/a") + b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nab")
    assert parser.skip_end_of_message() is False  # nothing parsed yet
    assert isinstance(parser.next_event(), Request)
    assert parser.skip_end_of_message() is True  # GET: the end is known
    assert parser.skip_end_of_message() is False  # and consumed once only
    post = parser.next_event()
    assert isinstance(post, Request) and post.content_length == 3
    assert parser.skip_end_of_message() is False  # mid-body: the body must be read
    assert parser.next_event() == Data(b"ab")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"c")
    assert parser.next_event() == Data(b"c")
    assert parser.next_event() is END_OF_MESSAGE


def test_linger_only_when_something_may_be_unread() -> None:
    closing = ServerProtocol(echo_handler)
    closing.receive(get("/", "Connection: close"))
    assert closing.should_close and closing.linger is False  # the client's own close

    pipelined = ServerProtocol(echo_handler)
    pipelined.receive(get("/", "Connection: close") + get("/after"))
    assert pipelined.should_close and pipelined.linger is True  # bytes left unread

    bad = ServerProtocol(echo_handler)
    bad.receive(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
    assert bad.should_close and bad.linger is True  # after an error: let the client read it

    def closing_handler(request: Request) -> Response:
        response = echo_handler(request)
        return Response(response.status, response.fields, response.body, response.body_length,
                        close=True)

    handler_close = ServerProtocol(closing_handler)
    handler_close.receive(get("/"))
    assert handler_close.should_close and handler_close.linger is True


def test_head_cache_follows_the_clock_and_stays_correct_past_its_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_700_000_000.0]
    monkeypatch.setattr(protocol_module.time, "time", lambda: now[0])
    protocol = ServerProtocol(echo_handler)
    first = parse_responses(flatten(protocol.receive(get("/x"))), 1)[0]
    now[0] += 1.0
    second = parse_responses(flatten(protocol.receive(get("/x"))), 1)[0]
    assert first.getheader("Date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert second.getheader("Date") == "Tue, 14 Nov 2023 22:13:21 GMT"
    # More distinct heads than the cache keeps: each response still carries its own fields.
    targets = [f"/{n}" for n in range(MAX_CACHED_HEADS + 50)]
    data = b"".join(get(t) for t in targets)
    out = b""
    out += flatten(protocol.receive(data))
    while protocol.paused:
        out += flatten(protocol.resume())
    responses = parse_responses(out, len(targets))
    assert [r.body.decode() for r in responses] == targets
    assert all(r.getheader("Content-Length") == str(len(t))
               for r, t in zip(responses, targets, strict=True))


def test_a_stray_line_break_after_a_request_leaves_the_connection_idle() -> None:
    """RFC 9112 2.2: empty lines before a request are skipped, so a client's trailing CRLF (or
    half of one) must not turn an idle connection into a "request in progress" (408 later)."""
    protocol = ServerProtocol(echo_handler)
    protocol.receive(get("/") + b"\r")
    assert not protocol.mid_request
    protocol.receive(b"\n\r\n")
    assert not protocol.mid_request
    protocol.receive(b"G")
    assert protocol.mid_request


def _events(parser: RequestParser) -> list[object]:
    """Every event the parser can give now, up to NEED_DATA (or an error's status)."""
    events: list[object] = []
    while True:
        try:
            event = parser.next_event()
        except HTTPError as error:
            return [*events, error.status]
        if event is NEED_DATA or event is CLOSED:
            return [*events, event]
        if type(event) is Request:  # compared by its fields (a Request has no __eq__)
            event = tuple(getattr(event, name) for name in Request.__slots__)
        events.append(event)


def _joined(events: list[object]) -> list[object]:
    """The events with each body's Data joined into one, however the bytes were cut."""
    joined: list[object] = []
    for event in events:
        if type(event) is Data and joined and type(joined[-1]) is Data:
            event = Data(joined.pop().data + event.data)  # type: ignore[attr-defined]
        joined.append(event)
    return joined


_PARSED_IN_PLACE = [
    get("/a"),
    get("/a") + get("/b") + get("/c"),
    b"\r\n" + get("/after-an-empty-line"),
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + get("/next"),
    b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\nT: v\r\n\r\n" + get("/next"),
    get("/a") + b"GET /partial HTTP/1.1\r\nHo",
    b"GET / HTTP/1.1\r\nBad Header: y\r\n\r\n",
]


@pytest.mark.parametrize("data", _PARSED_IN_PLACE)
def test_bytes_parsed_where_they_were_received_give_the_events_of_a_bytearray(
        data: bytes) -> None:
    """The shortcut: bytes fed to an empty buffer are parsed as they are (no copy into a
    bytearray). Fed in two pieces, the second lands behind the first in a bytearray of the
    parser's own: the plain path. Both must give the same events for every split."""
    whole = RequestParser()
    whole.feed(data)
    expected = _events(whole)
    for cut in range(1, len(data)):
        split = RequestParser()
        split.feed(data[:cut])
        events = _events(split)
        if events[-1] is NEED_DATA:
            split.feed(data[cut:])
            events = events[:-1] + _events(split)
        assert _joined(events) == _joined(expected), cut


def test_an_idle_parser_holds_no_buffer_and_keeps_what_was_pipelined() -> None:
    parser = RequestParser()
    parser.feed(get("/a"))
    assert isinstance(parser.next_event(), Request) and parser.skip_end_of_message()
    assert parser._buffer is parser_module._NOTHING_BUFFERED  # shared, empty: nothing held
    parser.feed(get("/b") + get("/c"))
    assert isinstance(parser.next_event(), Request) and parser.skip_end_of_message()
    assert parser.buffered == len(get("/c"))  # the pipelined request behind it is kept
    request = parser.next_event()
    assert isinstance(request, Request) and request.target == "/c"
    assert parser._buffer is parser_module._NOTHING_BUFFERED
