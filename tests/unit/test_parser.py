"""The request parser against its corpus, fed every way, plus the rules the corpus cannot show.

Each corpus case (``tests/unit/corpus/parser_corpus.py``) is fed whole, one byte at a time and in
three seeded random splits. A valid case is followed by a pipelined ``GET /next`` that must come
out intact, so a body consumed one byte too few or too many fails the test.
"""

from __future__ import annotations

import pytest

from evserver.http import checks, grammar
from evserver.http import parser as parser_module
from evserver.http.errors import BadRequest, HTTPError, PayloadTooLarge
from evserver.http.events import CLOSED, END_OF_MESSAGE, NEED_DATA, Data, Request
from evserver.http.limits import ParserLimits
from evserver.http.parser import (
    MAX_LEADING_EMPTY_LINES,
    TRANSITIONS,
    RequestParser,
    State,
)
from tests.unit.corpus.feeding import SPLITTERS, byte_by_byte, parse_pieces
from tests.unit.corpus.parser_corpus import CASES, Case, get, post

FOLLOW_UP = b"GET /next HTTP/1.1\r\nHost: next.example\r\n\r\n"

VALID = [c for c in CASES if not isinstance(c.expect, int)]
INVALID = [c for c in CASES if isinstance(c.expect, int)]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 120
    assert len(VALID) >= 40 and len(INVALID) >= 80
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("split", sorted(SPLITTERS))
@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
def test_valid_case(case: Case, split: str) -> None:
    outcome = parse_pieces(SPLITTERS[split](case.raw + FOLLOW_UP), case.limits)
    assert outcome.error is None, outcome.error
    assert isinstance(case.expect, tuple)
    assert len(outcome.messages) == len(case.expect) + 1
    for message, expected in zip(outcome.messages, case.expect, strict=False):
        assert bytes(message.body) == expected.body
        for name, value in expected.fields.items():
            assert getattr(message.request, name) == value, name
        request = message.request
        assert request.has_body == bool(request.chunked or request.content_length)
    follow_up = outcome.messages[-1]
    assert follow_up.request.target == "/next"
    assert follow_up.request.headers == {"host": "next.example"}
    assert follow_up.body == b"" and follow_up.ended


@pytest.mark.parametrize("split", sorted(SPLITTERS))
@pytest.mark.parametrize("case", INVALID, ids=[c.name for c in INVALID])
def test_invalid_case(case: Case, split: str) -> None:
    outcome = parse_pieces(SPLITTERS[split](case.raw), case.limits)
    assert outcome.error is not None, f"accepted: {outcome.messages}"
    assert outcome.error.status == case.expect, outcome.error.detail


# --- the event protocol -----------------------------------------------------------------------


def test_events_in_order_and_need_data() -> None:
    parser = RequestParser()
    assert parser.next_event() is NEED_DATA
    parser.feed(post(b"Content-Length: 5", body=b"he"))
    request = parser.next_event()
    assert isinstance(request, Request) and request.content_length == 5
    assert parser.next_event() == Data(b"he")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"llo")
    assert parser.next_event() == Data(b"llo")
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is NEED_DATA


def test_closed_between_requests_and_again() -> None:
    parser = RequestParser()
    parser.feed(get())
    parser.feed(b"")
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.next_event() is CLOSED
    assert parser.next_event() is CLOSED


def test_closed_at_once_on_empty_connection() -> None:
    parser = RequestParser()
    parser.feed(b"")
    assert parser.next_event() is CLOSED


def test_leading_empty_lines_then_eof_is_closed() -> None:
    parser = RequestParser()
    parser.feed(b"\r\n\r\n")
    parser.feed(b"")
    assert parser.next_event() is CLOSED


def test_feed_after_eof_is_a_programming_error() -> None:
    parser = RequestParser()
    parser.feed(b"")
    with pytest.raises(RuntimeError):
        parser.feed(b"GET")


def test_error_is_sticky_and_the_same_object() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n" + get())
    with pytest.raises(BadRequest) as first:
        parser.next_event()
    with pytest.raises(BadRequest) as second:
        parser.next_event()
    with pytest.raises(BadRequest) as third:
        parser.feed(get())
    assert first.value is second.value is third.value


def test_too_large_content_length_raises_instead_of_the_request() -> None:
    parser = RequestParser(ParserLimits(max_body=4))
    parser.feed(post(b"Content-Length: 5", body=b"hello"))
    with pytest.raises(PayloadTooLarge) as raised:
        parser.next_event()
    assert raised.value.status == 413


def test_chunked_over_limit_raises_before_reading_the_chunk() -> None:
    parser = RequestParser(ParserLimits(max_body=4))
    parser.feed(post(b"Transfer-Encoding: chunked", body=b"5\r\n"))
    assert isinstance(parser.next_event(), Request)
    with pytest.raises(PayloadTooLarge):
        parser.next_event()


def test_data_is_split_exactly_at_the_body_end() -> None:
    parser = RequestParser()
    parser.feed(post(b"Content-Length: 3", body=b"abc") + get())
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() == Data(b"abc")
    assert parser.next_event() is END_OF_MESSAGE
    assert parser.buffered == len(get())
    assert isinstance(parser.next_event(), Request)


def test_buffered_counts_unparsed_bytes() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HT")
    assert parser.buffered == 8
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == 8


def test_mid_request_follows_the_request() -> None:
    parser = RequestParser()
    assert not parser.mid_request
    parser.feed(b"P")
    assert parser.mid_request
    parser.feed(post(b"Content-Length: 2")[1:])
    assert isinstance(parser.next_event(), Request)
    assert parser.mid_request  # the body has not arrived
    parser.feed(b"ok")
    assert parser.next_event() == Data(b"ok")
    assert parser.mid_request  # END_OF_MESSAGE not returned yet
    assert parser.next_event() is END_OF_MESSAGE
    assert not parser.mid_request
    assert parser.next_event() is NEED_DATA
    assert not parser.mid_request


def test_mid_request_for_a_bodyless_request() -> None:
    parser = RequestParser()
    parser.feed(get())
    assert isinstance(parser.next_event(), Request)
    assert parser.mid_request
    assert parser.next_event() is END_OF_MESSAGE
    assert not parser.mid_request


def test_pipelined_requests_need_no_reset() -> None:
    parser = RequestParser()
    parser.feed(get() * 3)
    targets = []
    while (event := parser.next_event()) is not NEED_DATA:
        if isinstance(event, Request):
            targets.append(event.target)
    assert targets == ["/", "/", "/"]


# --- limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["whole", "byte_by_byte"])
def test_request_line_limit_is_exact(split: str) -> None:
    limits = ParserLimits(max_request_line=30)
    line = b"GET /" + b"a" * (30 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == 30
    ok = parse_pieces(SPLITTERS[split](line + b"\r\nHost: x\r\n\r\n"), limits)
    assert ok.error is None
    too_long = parse_pieces(SPLITTERS[split](line[:5] + b"a" + line[5:] + b"\r\nHost: x\r\n\r\n"),
                            limits)
    assert too_long.error is not None and too_long.error.status == 414


@pytest.mark.parametrize("split", ["whole", "byte_by_byte"])
def test_head_limit_is_exact(split: str) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"v" * 20 + b"\r\n\r\n"
    ok = parse_pieces(SPLITTERS[split](head), ParserLimits(max_head=len(head)))
    assert ok.error is None
    too_big = parse_pieces(SPLITTERS[split](head), ParserLimits(max_head=len(head) - 1))
    assert too_big.error is not None and too_big.error.status == 431


def test_header_count_limit_is_exact() -> None:
    head = get(b"X-A: 1", b"X-B: 2")
    assert parse_pieces([head], ParserLimits(max_header_count=3)).error is None
    error = parse_pieces([head], ParserLimits(max_header_count=2)).error
    assert error is not None and error.status == 431


def test_unfinished_request_line_hits_the_limit_without_waiting() -> None:
    parser = RequestParser(ParserLimits(max_request_line=100))
    parser.feed(b"GET /" + b"a" * 200)
    with pytest.raises(HTTPError) as raised:
        parser.next_event()
    assert raised.value.status == 414


@pytest.mark.parametrize(
    "raw",
    [
        b"GET / HTTP/1.1\nHost: x\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n",
    ],
)
@pytest.mark.parametrize("split", ["whole", "byte_by_byte"])
def test_bare_lf_is_rejected_without_waiting_for_eof(raw: bytes, split: str) -> None:
    """No CRLFCRLF will ever come: the parser must not wait for one (the header timeout)."""
    parser = RequestParser()
    with pytest.raises(BadRequest):
        for piece in SPLITTERS[split](raw):
            parser.feed(piece)
            while parser.next_event() is not NEED_DATA:
                pass


def test_maximum_leading_empty_lines() -> None:
    ok = parse_pieces([b"\r\n" * MAX_LEADING_EMPTY_LINES + get()])
    assert ok.error is None
    too_many = parse_pieces([b"\r\n" * (MAX_LEADING_EMPTY_LINES + 1) + get()])
    assert too_many.error is not None


# --- error details (for the access log and a teaching server's error page) --------------------


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (get(b"X: a", b" b"), "obs-fold"),
        (get(b"X : a"), "whitespace between field name and colon"),
        (get(b"X a"), "without a colon"),
        (get(b"X: a\x00"), "control character"),
        (b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", "bare LF"),
        (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", "bare CR"),
        (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", "more than one space"),
        (b"GET /\r\n\r\n", "without an HTTP version"),
        (get(b"Host: y"), "more than one Host"),
        (post(b"Content-Length: 1", b"Transfer-Encoding: chunked"), "both"),
    ],
)
def test_error_details(raw: bytes, detail: str) -> None:
    error = parse_pieces([raw]).error
    assert error is not None and detail in error.detail, error


# --- the state table --------------------------------------------------------------------------


class RecordingParser(RequestParser):
    """Records every state change, to check it against TRANSITIONS."""

    __slots__ = ("moves",)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "_state" and hasattr(self, "_state"):
            self.moves.append((self._state, value))
        object.__setattr__(self, name, value)


def test_every_state_change_is_in_the_table() -> None:
    parser = RecordingParser()
    parser.moves = []
    raw = b"".join(c.raw for c in VALID if c.limits.max_body > 10) + get()
    for piece in [*byte_by_byte(raw[:20000]), raw[20000:], b""]:
        parser.feed(piece)
        while parser.next_event() not in (NEED_DATA, CLOSED):
            pass
    seen = set()
    for before, after in parser.moves:
        assert after in TRANSITIONS[before], (before, after)
        seen.add((before, after))
    assert {State.BODY, State.CHUNK_SIZE, State.TRAILER, State.CLOSED} <= {a for _, a in seen}


def test_every_state_has_a_reader_and_a_row() -> None:
    assert set(TRANSITIONS) == set(State)


# --- the shortcuts agree with the grammar and the checks ---------------------------------------


def test_the_parser_binds_the_grammar_and_memos_it_does_not_copy_them() -> None:
    assert parser_module._TOKEN is grammar.TOKEN
    assert parser_module._CHUNK_LINE is grammar.CHUNK_LINE
    assert parser_module._FIELD_BLOCK is grammar.FIELD_BLOCK
    assert parser_module._ORDINARY_HEAD_BYTES is grammar.ORDINARY_HEAD_BYTES
    assert parser_module._VALID_HOSTS is checks.VALID_HOSTS
    assert parser_module._VALID_REQUEST_LINES is checks.VALID_REQUEST_LINES


def test_known_field_names_are_lowered_tokens() -> None:
    """The dict lookup that replaces ``lower()`` plus the token pattern gives what they give."""
    for spelling, name in parser_module._KNOWN_FIELD_NAMES.items():
        assert grammar.TOKEN.fullmatch(spelling) is not None, spelling
        assert spelling.lower() == name


def test_the_memos_hold_only_what_the_checks_accept() -> None:
    # The memos are per process and bounded: empty them (in place, as the parser holds them) so
    # that what this test parses is remembered whatever ran before, then put them back.
    hosts, lines = set(checks.VALID_HOSTS), dict(checks.VALID_REQUEST_LINES)
    checks.VALID_HOSTS.clear()
    checks.VALID_REQUEST_LINES.clear()
    try:
        heads = [get(), b"GET /other HTTP/1.1\r\nHost: memo.example\r\n\r\n",
                 b"OPTIONS * HTTP/1.0\r\n\r\n", b"GET /bad HTTP/1.1\r\nHost: a b\r\n\r\n"]
        assert parse_pieces(heads).error is not None  # the last Host is invalid
        assert "memo.example" in checks.VALID_HOSTS and "a b" not in checks.VALID_HOSTS
        assert "OPTIONS * HTTP/1.0" in checks.VALID_REQUEST_LINES
        for host in checks.VALID_HOSTS:
            checks.check_host(host)
        for line, known in list(checks.VALID_REQUEST_LINES.items()):
            assert checks.parse_request_line(line) == known
    finally:
        checks.VALID_HOSTS.clear()
        checks.VALID_HOSTS.update(hosts)
        checks.VALID_REQUEST_LINES.clear()
        checks.VALID_REQUEST_LINES.update(lines)


# --- linear cost ------------------------------------------------------------------------------


def test_head_fed_byte_by_byte_is_searched_linearly() -> None:
    """A 60 KiB head one byte at a time: every byte is searched a bounded number of times."""
    filler = [b"X-F%02d: " % n + b"v" * 600 for n in range(98)]
    head = get(*filler)
    assert 55 * 1024 < len(head) < 64 * 1024
    parser = RequestParser()
    for offset in range(len(head) - 1):
        parser.feed(head[offset : offset + 1])
        assert parser.next_event() is NEED_DATA
    parser.feed(head[-1:])
    assert isinstance(parser.next_event(), Request)
    # Each incomplete step looks at the new byte plus a few bytes of overlap, twice at most
    # (the head terminator and the request line's end), so 8 per byte is generous; a
    # quadratic search would be about len(head) / 2 per byte.
    assert parser.bytes_scanned <= 8 * len(head)
