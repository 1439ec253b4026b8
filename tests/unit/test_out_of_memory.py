"""Running out of memory outside the handler (whose ``MemoryError`` is a 503 already): in the
parser, a 503 that closes after the responses already made; in a driver or the transport, that
one connection closed; in a loop callback, even one whose traceback cannot be logged, the loop
goes on. ``MemoryError`` is raised by monkeypatching, where a real shortage would strike (the
address-space limit itself: tests/servers/test_faults.py)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from evserver.drivers import blocking as blocking_driver
from evserver.event import reactor as reactor_module
from evserver.event.reactor import Reactor
from evserver.http.parser import RequestParser
from evserver.net.transport import Transport
from evserver.protocol import ServerProtocol
from tests.support.servers import RunningServer
from tests.unit.test_protocol import echo_handler, flatten, get, parse_responses


def no_memory(*args: Any, **kwargs: Any) -> Any:
    raise MemoryError


def test_the_parser_out_of_memory_answers_503_and_closes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RequestParser, "feed", no_memory)
    protocol = ServerProtocol(echo_handler)
    (response,) = parse_responses(flatten(protocol.receive(get("/a"))), 1)
    assert response.status == 503
    assert response.getheader("Connection") == "close"
    assert protocol.should_close
    assert protocol.receive(get("/b")) == []  # nothing more is parsed


def test_the_next_head_out_of_memory_keeps_the_responses_already_made(
        monkeypatch: pytest.MonkeyPatch) -> None:
    answered: list[str] = []

    def handler(request: Any) -> Any:
        answered.append(request.target)
        return echo_handler(request)

    parse = RequestParser.next_event

    def next_event(self: RequestParser) -> Any:
        if answered:  # the first request is answered: parsing the second runs out
            raise MemoryError
        return parse(self)

    monkeypatch.setattr(RequestParser, "next_event", next_event)
    protocol = ServerProtocol(handler)
    first, second = parse_responses(flatten(protocol.receive(get("/a") + get("/b"))), 2)
    assert (first.status, first.body) == (200, b"/a")
    assert second.status == 503 and protocol.should_close


def test_a_callback_out_of_memory_never_stops_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not even the memory to log the traceback: the loop says nothing and goes on.
    monkeypatch.setattr(reactor_module.log, "exception", no_memory)
    reactor = Reactor("auto")
    ran: list[str] = []
    try:
        reactor.call_later(0, no_memory)
        reactor.call_later(0, lambda: ran.append("timer"))
        reactor.call_soon_threadsafe(no_memory)
        reactor.call_soon_threadsafe(lambda: ran.append("queued"))
        reactor.run_once(0)
    finally:
        reactor.close()
    assert sorted(ran) == ["queued", "timer"]


def failing_once(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, raising ``MemoryError`` the first time it is called."""
    calls: list[None] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(None)
        if len(calls) == 1:
            raise MemoryError
        return real(*args, **kwargs)

    return call


def assert_only_the_first_connection_fails(server: RunningServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """The first connection gets no response (closed or reset), the next one is served, and
    nothing logged a traceback."""
    request = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
    with caplog.at_level(logging.DEBUG):
        with socket.create_connection(server.address, timeout=10) as unlucky:
            unlucky.sendall(request)
            try:
                assert unlucky.recv(4096) == b""  # closed without a word
            except ConnectionResetError:
                pass  # or reset: either way, no response
        with socket.create_connection(server.address, timeout=10) as next_one:
            next_one.sendall(request)
            assert next_one.recv(4096).startswith(b"HTTP/1.1 200")
    assert not [record for record in caplog.records if record.exc_info]


def test_sending_out_of_memory_closes_that_connection_only(
        server: RunningServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # The evented transport's write, the blocking driver's send: whichever this model uses.
    monkeypatch.setattr(Transport, "write", failing_once(Transport.write))
    monkeypatch.setattr(blocking_driver, "send_items", failing_once(blocking_driver.send_items))
    assert_only_the_first_connection_fails(server, caplog)


@pytest.mark.parametrize("model", ["threaded", "iterative"])
def test_a_receive_buffer_out_of_memory_closes_that_connection_only(
        start_server: Callable[..., RunningServer], model: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    server = start_server(model=model)
    failing = failing_once(bytearray)

    def buffers(size: int = 0) -> bytearray:  # only the connection's buffer has a size
        return failing(size) if size else bytearray()

    monkeypatch.setattr(blocking_driver, "bytearray", buffers, raising=False)
    assert_only_the_first_connection_fails(server, caplog)
    assert server.server.stats.connections_open <= 1
