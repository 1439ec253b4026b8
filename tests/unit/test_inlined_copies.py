"""Each hand-inlined copy on the hot path, pinned to the function it copies.

Speed bought a few copies: a property or a small method written out where it runs per request
(the comment beside each names what it copies). These tests put the copy and its original side
by side in every state they can see, so that a change to one that forgets the other fails here.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator
from pathlib import Path
from selectors import EVENT_READ

import pytest

from evserver.bodies import Response
from evserver.config import ServerConfig
from evserver.drivers.evented import HIGH_WATER, Connection, ConnectionContext
from evserver.drivers.policy import IDLE
from evserver.event.reactor import Reactor
from evserver.http.events import Request
from evserver.protocol import ServerProtocol
from evserver.stats import Stats
from tests.unit.test_protocol import echo_handler, get

SMALL_SNDBUF = 4096
"""A tiny send buffer, so that pipelined responses back up into the transport's queue."""


def status_handler(request: Request) -> Response:
    """Answers ``/NNN`` with status NNN and a body as long as the target."""
    status = int(request.target[1:4])
    body = request.target.encode("latin-1")
    fields = b"Content-Length: %d\r\n" % len(body)
    return Response(status, fields, (body,), len(body))


def test_the_protocols_response_count_is_stats_count_response() -> None:
    counted, reference = Stats(), Stats()
    protocol = ServerProtocol(status_handler, stats=counted)
    targets = ["/200", "/204x", "/301yy", "/404zzz", "/500", "/200/long/target"]
    for target in targets:
        protocol.receive(get(target))
        status = int(target[1:4])
        reference.count_response(status, 0 if status == 204 else len(target))
    protocol.receive(b"BAD\r\n\r\n")  # a malformed request is counted too, as a 400
    reference.count_response(400, counted.body_bytes - reference.body_bytes)
    assert counted.requests == reference.requests == len(targets) + 1
    assert counted.status_classes == reference.status_classes
    assert counted.body_bytes == reference.body_bytes


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[tuple[Connection, socket.socket, list[float]]]:
    """An evented Connection on one end of a socket pair, its loop never run: each test calls
    the event callback itself and reads the state between calls."""
    now = [1000.0]
    reactor = Reactor("poll", clock=lambda: now[0])
    server_end, client = socket.socketpair()
    server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SNDBUF)
    server_end.setblocking(False)
    config = ServerConfig(root=str(tmp_path))
    conn = Connection(reactor, server_end, ServerProtocol(echo_handler),
                      ConnectionContext(config))
    try:
        yield conn, client, now
    finally:
        conn.abort()
        client.close()
        reactor.close()


def read_interest_matches_wants_read(conn: Connection) -> None:
    """The mask's read bit against ``protocol.wants_read`` plus what only the driver knows."""
    expected = (conn.protocol.wants_read and not conn._peer_eof
                and conn.transport.pending_bytes < HIGH_WATER)
    assert bool(conn._mask & EVENT_READ) == expected, repr(conn)


def test_the_drivers_read_interest_is_protocol_wants_read(
        connection: tuple[Connection, socket.socket, list[float]]) -> None:
    conn, client, _ = connection
    read_interest_matches_wants_read(conn)  # fresh
    client.sendall(b"GET / HTTP/1.1\r\n")
    conn._on_event(EVENT_READ)
    read_interest_matches_wants_read(conn)  # mid request
    client.sendall(b"Host: x\r\n\r\n")
    conn._on_event(EVENT_READ)
    read_interest_matches_wants_read(conn)  # answered, idle
    pipelined = memoryview(get("/" + "x" * 2000) * 300)  # never read: backs up, pauses
    client.setblocking(False)
    for _ in range(50):
        try:
            pipelined = pipelined[client.send(pipelined):]
        except BlockingIOError:
            pass  # the server end's receive buffer is full until it reads
        conn._on_event(EVENT_READ)
        read_interest_matches_wants_read(conn)
    client.setblocking(True)
    assert conn.protocol.paused or conn.transport.pending_bytes >= HIGH_WATER
    client.recv(1 << 20)
    conn._on_event(EVENT_READ)
    read_interest_matches_wants_read(conn)


def test_the_idle_deadline_shortcut_is_set_deadline(
        connection: tuple[Connection, socket.socket, list[float]]) -> None:
    conn, client, now = connection
    for step in range(3):  # each request pushes the idle deadline later: the shortcut's case
        now[0] += 1.0
        conn._reactor.now = now[0]
        client.sendall(get(f"/{step}"))
        conn._on_event(EVENT_READ)
        client.recv(65536)
        shortcut = (conn._kind, conn._deadline, conn._timer_when, conn._timer)
        conn._set_deadline(IDLE, now[0] + conn.config.idle_timeout)  # the original
        assert (conn._kind, conn._deadline, conn._timer_when, conn._timer) == shortcut
        assert conn._kind == IDLE and conn._deadline == now[0] + conn.config.idle_timeout


def test_the_caches_stat_check_is_signature() -> None:
    """The per-request stat check compares the same fields, in the same order, as
    ``signature``; a field added to one and not the other fails here."""
    from evserver.static import cache

    original = inspect.getsource(cache.signature).split("return ", 1)[1].strip()
    assert original.startswith("(st.") and original.endswith(")")
    assert original in inspect.getsource(cache.FileCache.lookup)
