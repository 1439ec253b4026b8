"""A request line that can never become valid is refused as soon as it ends (RFC 9112 3), not
when the rest of the head or the header timeout arrives: in the parser, and on the wire."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from evserver.http.errors import BadRequest, HTTPError
from evserver.http.events import NEED_DATA, Request
from evserver.http.parser import RequestParser
from tests.support.servers import MODEL_IDS, MODEL_PARAMS, RunningServer

NEVER_VALID = [
    b"GET /\r\n",  # HTTP/0.9's simple request: no version
    b"GET\r\n",
    b"GET / HTTP/1.1 extra\r\n",
    b"GET  / HTTP/1.1\r\n",
    b"GET / HTTP/x.y\r\n",
    b"hello world\r\n",
]


@pytest.mark.parametrize("line", NEVER_VALID)
def test_a_line_that_can_never_be_valid_is_refused_when_it_ends(line: bytes) -> None:
    parser = RequestParser()
    parser.feed(line)
    with pytest.raises(HTTPError):
        parser.next_event()


def test_a_valid_line_still_waits_for_its_fields() -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\n")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"Host: h\r\n\r\n")
    assert isinstance(parser.next_event(), Request)


def test_a_line_not_yet_ended_is_not_judged() -> None:
    parser = RequestParser()
    parser.feed(b"GET /")  # may still become "GET / HTTP/1.1"
    assert parser.next_event() is NEED_DATA
    parser.feed(b"\r\n")
    with pytest.raises(BadRequest):
        parser.next_event()


@pytest.mark.parametrize(("model", "selector"), MODEL_PARAMS, ids=MODEL_IDS)
def test_the_server_answers_400_and_closes_at_once(
        start_server: Callable[..., RunningServer], model: str, selector: str) -> None:
    running = start_server(model=model, selector=selector, header_timeout=30.0)
    with socket.create_connection(running.address, timeout=5) as client:
        started = time.monotonic()
        client.sendall(b"GET /\r\n")
        answer = b""
        while chunk := client.recv(4096):  # the server closes: no waiting for a timeout
            answer += chunk
        assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close\r\n" in answer
    running.stop()
