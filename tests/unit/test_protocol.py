"""The connection protocol, without a network: bytes in, items out, decisions exposed.

Responses are read back with ``http.client``'s own response parser (over a fake socket), so a
malformed head would fail these tests rather than pass them by string matching.
"""

from __future__ import annotations

import email.utils
import http.client
import io
import os
import random
import time
from pathlib import Path

import pytest

from evserver.bodies import FileRegion, Item, Response
from evserver.http.errorpage import error_page
from evserver.http.events import Request
from evserver.protocol import (
    CONTINUE_RESPONSE,
    MAX_RESPONSES_PER_BATCH,
    ServerProtocol,
    SplitWritesProtocol,
)
from evserver.static import StaticHandler
from evserver.stats import Stats


def echo_handler(request: Request) -> Response:
    """Answers with the target as the body, so order and identity are visible."""
    body = request.target.encode("latin-1")
    fields = b"Content-Type: text/plain\r\nContent-Length: %d\r\n" % len(body)
    return Response(200, fields, (body,), len(body))


def flatten(items: list[Item]) -> bytes:
    out = bytearray()
    for item in items:
        if isinstance(item, FileRegion):
            out += os.pread(item.fd, item.count, item.offset)
            if item.close_after:
                os.close(item.fd)
        else:
            out += item
    return bytes(out)


class ParsedResponse:
    """One response read back with the standard library's field parser."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def parse_responses(data: bytes, count: int, method: str = "GET") -> list[ParsedResponse]:
    """Read ``count`` responses off ``data``: status line, fields via ``http.client``, and a body
    framed by Content-Length (none for HEAD, 1xx, 204, 304); nothing may be left over."""
    stream = io.BytesIO(data)
    responses = []
    for _ in range(count):
        status_line = stream.readline()
        version, code, _reason = status_line.decode("latin-1").split(" ", 2)
        assert version == "HTTP/1.1" and status_line.endswith(b"\r\n"), status_line
        headers = http.client.parse_headers(stream)
        status = int(code)
        length = 0
        if method != "HEAD" and status >= 200 and status not in (204, 304):
            length = int(headers["Content-Length"])
        body = stream.read(length)
        assert len(body) == length, "short body"
        responses.append(ParsedResponse(status, headers, body))
    rest = stream.read()
    assert rest == b"", f"unexpected bytes after {count} responses: {rest[:80]!r}"
    return responses


def get(target: str = "/", *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", "Host: example.test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def drive(protocol: ServerProtocol, data: bytes, split: str = "whole") -> bytes:
    """Feed like a driver would (whole, byte by byte or in random pieces), resuming when paused."""
    if split == "whole":
        pieces = [data]
    elif split == "bytes":
        pieces = [data[i:i + 1] for i in range(len(data))]
    else:
        rng = random.Random(7)
        pieces, i = [], 0
        while i < len(data):
            n = rng.randint(1, 40)
            pieces.append(data[i:i + n])
            i += n
    out = bytearray()
    for piece in pieces:
        out += flatten(protocol.receive(piece))
        while protocol.paused:
            out += flatten(protocol.resume())
    return bytes(out)


SPLITS = ["whole", "bytes", "random"]


@pytest.mark.parametrize("split", SPLITS)
def test_keep_alive_answers_several_requests_in_order(split: str) -> None:
    protocol = ServerProtocol(echo_handler)
    out = drive(protocol, get("/a") + get("/b"), split)
    first, second = parse_responses(out, 2)
    assert (first.status, first.body, second.body) == (200, b"/a", b"/b")
    assert first.getheader("Connection") is None
    assert first.getheader("Date") and first.getheader("Server", "").startswith("evserver/")
    assert not protocol.should_close and protocol.wants_read


@pytest.mark.parametrize("split", SPLITS)
def test_fifty_pipelined_requests_are_answered_in_order(split: str) -> None:
    protocol = ServerProtocol(echo_handler)
    data = b"".join(get(f"/{n}") for n in range(50))
    out = drive(protocol, data, split)
    bodies = [r.body for r in parse_responses(out, 50)]
    assert bodies == [f"/{n}".encode() for n in range(50)]


def test_backpressure_pauses_a_pipelining_client() -> None:
    protocol = ServerProtocol(echo_handler)
    items = protocol.receive(b"".join(get(f"/{n}") for n in range(50)))
    assert len(parse_responses(flatten(items), MAX_RESPONSES_PER_BATCH)) == MAX_RESPONSES_PER_BATCH
    assert protocol.paused and not protocol.wants_read
    rest = protocol.resume()
    assert len(parse_responses(flatten(rest), 50 - MAX_RESPONSES_PER_BATCH)) == 18
    assert not protocol.paused and protocol.wants_read


def test_connection_close_is_honoured_and_announced() -> None:
    protocol = ServerProtocol(echo_handler)
    out = flatten(protocol.receive(get("/x", "Connection: close") + get("/never")))
    (response,) = parse_responses(out, 1)
    assert response.getheader("Connection") == "close"
    assert protocol.should_close and not protocol.wants_read
    assert protocol.receive(get("/later")) == []


def test_http10_closes_unless_keep_alive_is_asked() -> None:
    protocol = ServerProtocol(echo_handler)
    (response,) = parse_responses(flatten(protocol.receive(get("/", version="1.0"))), 1)
    assert response.getheader("Connection") == "close" and protocol.should_close

    protocol = ServerProtocol(echo_handler)
    data = get("/1", "Connection: keep-alive", version="1.0") * 2
    first, second = parse_responses(flatten(protocol.receive(data)), 2)
    assert first.getheader("Connection") == "keep-alive"
    assert second.body == b"/1" and not protocol.should_close


@pytest.mark.parametrize("split", SPLITS)
def test_a_bad_request_gets_its_status_and_the_connection_closes(split: str) -> None:
    protocol = ServerProtocol(echo_handler)
    out = drive(protocol, get("/ok") + b"GET /bad HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"
                + get("/after"), split)
    ok, bad = parse_responses(out, 2)
    assert ok.status == 200 and bad.status == 400
    assert bad.getheader("Connection") == "close"
    assert bad.getheader("Content-Type", "").startswith("text/html")
    assert protocol.should_close
    assert protocol.receive(get("/more")) == []


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n", 417),
])
def test_parser_errors_become_responses_with_their_status(request_bytes: bytes,
                                                         status: int) -> None:
    protocol = ServerProtocol(echo_handler)
    (response,) = parse_responses(flatten(protocol.receive(request_bytes)), 1)
    assert response.status == status and protocol.should_close


def test_a_handler_bug_becomes_a_500_and_never_escapes() -> None:
    def broken(request: Request) -> Response:
        raise RuntimeError("bug")

    protocol = ServerProtocol(broken)
    (response,) = parse_responses(flatten(protocol.receive(get("/"))), 1)
    assert response.status == 500 and protocol.should_close


def test_request_bodies_are_consumed_and_a_hidden_request_is_never_answered() -> None:
    hidden = get("/hidden")
    post = (b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(hidden)) + hidden
    chunked = (b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(hidden) + hidden + b"\r\n0\r\n\r\n")
    for split in SPLITS:
        protocol = ServerProtocol(echo_handler)
        out = drive(protocol, post + chunked + get("/next"), split)
        bodies = [r.body for r in parse_responses(out, 3)]
        assert bodies == [b"/form", b"/chunks", b"/next"]


def test_expect_100_continue_gets_an_interim_response_before_the_body() -> None:
    protocol = ServerProtocol(echo_handler)
    head = b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    assert flatten(protocol.receive(head)) == CONTINUE_RESPONSE
    (response,) = parse_responses(flatten(protocol.receive(b"hello")), 1)
    assert response.status == 200 and response.body == b"/up"


def test_expect_without_body_or_in_http10_sends_no_interim_response() -> None:
    protocol = ServerProtocol(echo_handler)
    out = flatten(protocol.receive(get("/", "Expect: 100-continue")))
    assert not out.startswith(b"HTTP/1.1 100")
    protocol = ServerProtocol(echo_handler)
    head = b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
    out = flatten(protocol.receive(head))
    assert not out.startswith(b"HTTP/1.1 100") and b" 200 " in out.split(b"\r\n")[0] + b" "


def test_end_of_input_between_requests_closes_quietly() -> None:
    protocol = ServerProtocol(echo_handler)
    parse_responses(flatten(protocol.receive(get("/"))), 1)
    assert protocol.receive(b"") == [] and protocol.should_close


def test_requests_before_a_half_close_are_still_answered() -> None:
    protocol = ServerProtocol(echo_handler)
    out = flatten(protocol.receive(get("/a") + get("/b"))) + flatten(protocol.receive(b""))
    assert [r.body for r in parse_responses(out, 2)] == [b"/a", b"/b"]
    assert protocol.should_close


def test_mid_request_and_timeout_answer_408() -> None:
    protocol = ServerProtocol(echo_handler)
    assert not protocol.mid_request
    protocol.receive(b"GET / HTTP/1.1\r\nHo")
    assert protocol.mid_request
    (response,) = parse_responses(flatten(protocol.timed_out()), 1)
    assert response.status == 408 and protocol.should_close


def test_head_never_carries_a_body_and_releases_descriptors(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)

    def file_handler(request: Request) -> Response:
        fd = os.open(path, os.O_RDONLY)
        return Response(200, b"Content-Length: 10\r\n", (FileRegion(fd, 0, 10),), 10)

    before = len(os.listdir("/proc/self/fd"))
    protocol = ServerProtocol(file_handler)
    data = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(100):
        items = protocol.receive(data)
        assert all(isinstance(item, bytes) for item in items)
    assert len(os.listdir("/proc/self/fd")) == before


def test_access_log_and_stats_see_every_response() -> None:
    records: list[tuple[str, float, Request | None, int, int]] = []
    stats = Stats("test")
    before = time.time()
    protocol = ServerProtocol(echo_handler, peer="192.0.2.1", stats=stats,
                              access_log=lambda *record: records.append(record))
    protocol.receive(get("/a", "User-Agent: t/1", "Referer: /r") + b"BAD\r\n\r\n")
    (peer, when, request, status, size), error = records
    assert peer == "192.0.2.1" and before <= when <= time.time()
    assert request is not None and request.request_line == "GET /a HTTP/1.1"
    assert request.headers["user-agent"] == "t/1" and request.headers["referer"] == "/r"
    assert (status, size) == (200, 2)
    assert error[2:] == (None, 400, len(error_page(400)[1]))  # unparsed: no request to show
    assert stats.requests == 2 and stats.status_classes[2] == 1 and stats.status_classes[4] == 1


def test_the_log_line_and_the_date_field_share_one_clock_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One ``time.time()`` per response, shared by its Date field and its log record: a clock
    that moves a whole day at every read shows whether a second read slipped in."""
    reads = iter(range(1_700_000_000, 1_800_000_000, 86_400))
    monkeypatch.setattr("evserver.protocol.time.time", lambda: float(next(reads)))
    records: list[tuple[str, float, Request | None, int, int]] = []
    protocol = ServerProtocol(echo_handler, access_log=lambda *record: records.append(record))
    data = get("/ok") + b"BAD\r\n\r\n"
    responses = parse_responses(flatten(protocol.receive(data)), 2)
    for response, record in zip(responses, records, strict=True):
        assert response.getheader("Date") == email.utils.formatdate(record[1], usegmt=True)


def test_real_handler_serves_files_and_errors_in_order(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "big.bin").write_bytes(os.urandom(300_000))
    protocol = ServerProtocol(StaticHandler(str(tmp_path)))
    data = get("/a.txt") + get("/missing") + get("/big.bin") + get("/a.txt")
    for split in SPLITS:
        protocol = ServerProtocol(StaticHandler(str(tmp_path)))
        responses = parse_responses(drive(protocol, data, split), 4)
        assert [r.status for r in responses] == [200, 404, 200, 200]
        assert responses[2].body == (tmp_path / "big.bin").read_bytes()


# --- the teaching switch --split-writes ------------------------------------------------------


def test_split_writes_keeps_every_head_apart_from_its_body() -> None:
    joined = ServerProtocol(echo_handler).receive(get("/small"))
    assert len(joined) == 1  # the default: a small body joined to its head
    split = SplitWritesProtocol(echo_handler)
    items = split.receive(get("/small") + get("/again"))
    assert len(items) == 4 and all(type(item) is bytes for item in items)
    assert [item.endswith(b"\r\n\r\n") for item in items] == [True, False, True, False]
    assert [items[1], items[3]] == [b"/small", b"/again"]
    responses = parse_responses(flatten(items), 2)
    assert [r.body for r in responses] == [b"/small", b"/again"]
    error = split.receive(b"BAD\r\n\r\n")  # an error page is split too
    assert len(error) == 2 and error[0].endswith(b"\r\n\r\n")
    assert parse_responses(flatten(error), 1)[0].status == 400
