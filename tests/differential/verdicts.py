"""One normalised verdict per parser for the same bytes: evserver's, llhttp's and h11's.

What this module knows: how to drive each of the three parsers over a whole input (a stream that
may hold several pipelined requests) and how to reduce what each reports to one comparable
:class:`Verdict`. What it must not know: how inputs are made, or which differences are known.

A verdict is the messages read in full, in order, each with method, target, version, header list
(names in lower case, values without OWS), body (de-chunked) and the offset where the message
ends in the input; then how the input ended: ``complete`` (every byte used), ``incomplete`` (the
parser waits for more), ``refused`` (an error) or ``closed`` (the last message did not persist,
so the parser reads nothing after it). End of input is never signalled: the three treat it
differently, and the question asked is what each makes of the bytes so far.

Normalisation, and why: header values are compared without surrounding SP/HTAB (RFC 9112 5: OWS
is not part of the value; llhttp keeps trailing OWS); persistence itself is not compared, only
where reading stops (h11 never keeps an HTTP/1.0 connection); llhttp is fed one byte at a time,
since that is the only way to learn where a message ends (it reports no offsets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h11
import httptools

from evserver.http.errors import HTTPError
from evserver.http.events import CLOSED, END_OF_MESSAGE, NEED_DATA, Data, Request
from evserver.http.limits import MAX_HEAD
from evserver.http.parser import RequestParser

COMPLETE = "complete"
INCOMPLETE = "incomplete"
REFUSED = "refused"
CLOSES = "closed"

MAX_EVENTS = 10_000
"""A drain loop longer than this means a parser that never stops: fail loudly."""


@dataclass(frozen=True)
class Message:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    end: int


@dataclass(frozen=True)
class Verdict:
    messages: tuple[Message, ...]
    outcome: str
    detail: str = field(default="", compare=False)  # the error's text, for the known table

    def __str__(self) -> str:
        lines = [f"  {m}" for m in self.messages]
        return "\n".join([*lines, f"  -> {self.outcome} {self.detail}".rstrip()])


def _headers(pairs: object) -> tuple[tuple[str, str], ...]:
    return tuple(
        (_text(name).lower(), _text(value).strip(" \t"))
        for name, value in pairs  # type: ignore[attr-defined]
    )


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else value


# -- evserver ------------------------------------------------------------------------------------


def evserver_verdict(raw: bytes, pieces: list[bytes] | None = None) -> Verdict:
    """Feed ``raw`` whole (or as ``pieces``) and drain the events after each feed."""
    parser = RequestParser()
    messages: list[Message] = []
    fed = 0
    current: list[object] = []  # [Request, bytearray] while a message is open
    try:
        for piece in pieces or [raw]:
            if not piece:
                continue  # b"" would mean end of input
            parser.feed(piece)
            fed += len(piece)
            for _ in range(MAX_EVENTS):
                event = parser.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, Request):
                    current = [event, bytearray()]
                elif isinstance(event, Data):
                    current[1] += event.data  # type: ignore[operator]
                elif event is END_OF_MESSAGE:
                    request, body = current
                    assert isinstance(request, Request)
                    messages.append(Message(
                        request.method, request.target, request.version,
                        _headers(request.raw_headers), bytes(body),  # type: ignore[arg-type]
                        fed - parser.buffered,
                    ))
                    current = []
                    if not request.keep_alive:
                        return Verdict(tuple(messages), CLOSES)
                else:
                    assert event is not CLOSED, "CLOSED without end of input"
            else:
                raise AssertionError("evserver never stopped returning events")
    except HTTPError as error:
        return Verdict(tuple(messages), REFUSED, f"{error.status} {error.detail}")
    outcome = INCOMPLETE if current or parser.mid_request else COMPLETE
    return Verdict(tuple(messages), outcome)


# -- llhttp, through httptools -------------------------------------------------------------------


class _LlhttpCollector:
    """httptools' callback protocol: gathers one message at a time."""

    def __init__(self) -> None:
        self.target = bytearray()
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.open = False
        self.finished: list[tuple[bytes, list[tuple[bytes, bytes]], bytes]] = []

    def on_message_begin(self) -> None:
        self.target.clear()
        self.headers = []
        self.body.clear()
        self.open = True

    def on_url(self, piece: bytes) -> None:
        self.target += piece

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, piece: bytes) -> None:
        self.body += piece

    def on_message_complete(self) -> None:
        self.finished.append((bytes(self.target), self.headers, bytes(self.body)))
        self.open = False


def llhttp_verdict(raw: bytes) -> Verdict:
    collector = _LlhttpCollector()
    parser = httptools.HttpRequestParser(collector)
    messages: list[Message] = []
    for offset in range(len(raw)):
        try:
            parser.feed_data(raw[offset : offset + 1])
        except httptools.HttpParserUpgrade:
            return Verdict(tuple(messages), REFUSED, "upgrade")
        except httptools.HttpParserError as error:
            return Verdict(tuple(messages), REFUSED, str(error))
        if collector.finished:
            target, headers, body = collector.finished.pop()
            messages.append(Message(
                parser.get_method().decode("latin-1"), target.decode("latin-1"),
                parser.get_http_version(), _headers(headers), body, offset + 1,
            ))
            if not parser.should_keep_alive():
                return Verdict(tuple(messages), CLOSES)
    return Verdict(tuple(messages), INCOMPLETE if collector.open else COMPLETE)


# -- h11 -----------------------------------------------------------------------------------------


def h11_verdict(raw: bytes) -> Verdict:
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    if raw:  # b"" would mean end of input
        connection.receive_data(raw)
    messages: list[Message] = []
    request: h11.Request | None = None
    body = bytearray()
    try:
        for _ in range(MAX_EVENTS):
            event = connection.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                waiting = connection.trailing_data[0].strip(b"\r\n")
                open_message = request is not None or bool(waiting)
                return Verdict(tuple(messages), INCOMPLETE if open_message else COMPLETE)
            if isinstance(event, h11.Request):
                request, body = event, bytearray()
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                left = len(connection.trailing_data[0])
                messages.append(Message(
                    request.method.decode("latin-1"), request.target.decode("latin-1"),
                    request.http_version.decode("latin-1"), _headers(request.headers.raw_items()),
                    bytes(body), len(raw) - left,
                ))
                request = None
                # Any answer will do; not 2xx, which to a CONNECT would switch protocols.
                connection.send(h11.Response(status_code=404, headers=[("Content-Length", "0")]))
                connection.send(h11.EndOfMessage())
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return Verdict(tuple(messages), CLOSES)
                connection.start_next_cycle()
        raise AssertionError("h11 never stopped returning events")
    except h11.RemoteProtocolError as error:
        return Verdict(tuple(messages), REFUSED, str(error))


PARSERS = {"llhttp": llhttp_verdict, "h11": h11_verdict}
"""The independent judges, by name."""
