"""Feeding bytes to a RequestParser every way, and collecting what comes out.

``parse_pieces`` feeds the given pieces, drains ``next_event`` after each one, ends the input
with ``b""`` and returns an :class:`Outcome`: the messages seen (head, de-chunked body joined
across ``Data`` events, whether END_OF_MESSAGE came) and how it ended (CLOSED or an error).
It also checks the parser's own invariants on the way: ``Data`` is never empty, no event after
CLOSED, NEED_DATA never returned after end of input (that would be a hang), and an error is
sticky (raised again by ``next_event`` and ``feed``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from evserver.http.errors import HTTPError
from evserver.http.events import CLOSED, END_OF_MESSAGE, NEED_DATA, Data, Request
from evserver.http.limits import DEFAULT_LIMITS, ParserLimits
from evserver.http.parser import RequestParser

MAX_EVENTS_PER_FEED = 100_000
"""A drain loop longer than this is a parser that never stops returning events: fail."""


@dataclass
class Message:
    request: Request
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False


@dataclass
class Outcome:
    messages: list[Message]
    error: HTTPError | None  # None means the parser reached CLOSED

    def summary(self) -> tuple[object, ...]:
        """Something comparable across feeding patterns."""
        heads = tuple(
            (m.request.method, m.request.target, m.request.version, tuple(m.request.raw_headers),
             bytes(m.body), m.ended)
            for m in self.messages
        )
        return heads, None if self.error is None else self.error.status


def _drain(parser: RequestParser, messages: list[Message], after_eof: bool) -> bool:
    """Take events until NEED_DATA (False) or CLOSED (True)."""
    for _ in range(MAX_EVENTS_PER_FEED):
        event = parser.next_event()
        if event is NEED_DATA:
            assert not after_eof, "NEED_DATA after end of input: the parser would hang"
            return False
        if event is CLOSED:
            assert parser.next_event() is CLOSED
            assert not parser.mid_request
            return True
        if isinstance(event, Request):
            assert not messages or messages[-1].ended, "a Request before the previous ended"
            messages.append(Message(event))
        elif isinstance(event, Data):
            assert event.data, "empty Data event"
            assert isinstance(event.data, bytes)
            assert messages and not messages[-1].ended
            messages[-1].body += event.data
        elif event is END_OF_MESSAGE:
            assert messages and not messages[-1].ended
            messages[-1].ended = True
        else:
            raise AssertionError(f"unknown event {event!r}")
    raise AssertionError("next_event() never returned NEED_DATA or CLOSED")


def parse_pieces(pieces: list[bytes], limits: ParserLimits = DEFAULT_LIMITS) -> Outcome:
    parser = RequestParser(limits)
    messages: list[Message] = []
    try:
        for piece in pieces:
            if not piece:
                continue  # b"" would mean end of input
            parser.feed(piece)
            if _drain(parser, messages, after_eof=False):
                raise AssertionError("CLOSED before the end of input")
        parser.feed(b"")
        closed = _drain(parser, messages, after_eof=True)
        assert closed
    except HTTPError as error:
        for again in (parser.next_event, lambda: parser.feed(b"more")):
            try:
                again()
            except HTTPError as repeated:
                assert repeated is error, "a different error after the first one"
            else:
                raise AssertionError("the parser accepted input after an error") from None
        return Outcome(messages, error)
    assert all(message.ended for message in messages)
    return Outcome(messages, None)


def whole(data: bytes) -> list[bytes]:
    return [data]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_splits(data: bytes, seed: int) -> list[bytes]:
    """Cut ``data`` at random places (seeded, so a failure is reproducible)."""
    rng = random.Random(seed)
    pieces, position = [], 0
    while position < len(data):
        size = rng.choice((1, 2, 3, 5, 8, 13, 64, 500))
        pieces.append(data[position : position + size])
        position += size
    return pieces


SPLITTERS = {
    "whole": whole,
    "byte_by_byte": byte_by_byte,
    "random_1": lambda data: random_splits(data, 1),
    "random_2": lambda data: random_splits(data, 2),
    "random_3": lambda data: random_splits(data, 3),
}
