"""The evented driver against its own table: every move it makes is in ``LIFE_MOVES``, and in
every state the deadline armed is the one ``LIFE_STATES`` names.

Each test drives one ``Connection`` over real loopback TCP with small buffers (so responses back
up), calling its event and timer callbacks by hand with a fake clock: the loop never runs, so
every state in between can be read. What the table says and what the driver does can then not
drift apart without a failure here (and the diagram drawn from the table, ``tools/
statediagram.py``, is checked against the table in ``tests/tooling``).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from selectors import EVENT_READ, EVENT_WRITE

import pytest

from evserver.bodies import Response
from evserver.config import ServerConfig
from evserver.drivers.evented import (
    HIGH_WATER,
    LIFE_MOVES,
    LIFE_STATES,
    Connection,
    ConnectionContext,
)
from evserver.drivers.policy import LINGER_SECONDS
from evserver.event.reactor import Reactor
from evserver.http.events import Request
from evserver.protocol import MAX_RESPONSES_PER_BATCH, ServerProtocol

SMALL_BUFFER = 4096
"""SO_SNDBUF of the server's end and SO_RCVBUF of the client's: a few tens of KiB in flight."""

BACKED_UP = 40_000
"""A body larger than the buffers hold and smaller than HIGH_WATER: the connection sends on."""

OVER_HIGH_WATER = 300_000
"""A body far above HIGH_WATER: the connection stops reading while it sends."""

WAIT = 10.0

TABLE = {(start, end) for start, end, _ in LIFE_MOVES}


def sized_handler(request: Request) -> Response:
    """``/N`` answers N bytes."""
    size = int(request.target[1:])
    return Response(200, b"Content-Length: %d\r\n" % size, (b"x" * size,), size)


def get(size: int, *extra: str) -> bytes:
    return "\r\n".join([f"GET /{size} HTTP/1.1", "Host: x", *extra, "", ""]).encode()


class Life:
    """One connection, its client, a fake clock, and every move seen."""

    def __init__(self, tmp_path: Path) -> None:
        self.now = 1000.0
        self.reactor = Reactor("poll", clock=lambda: self.now)
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.client = socket.socket()
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
            self.client.connect(listener.getsockname())
            server_end, _ = listener.accept()
        server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        server_end.setblocking(False)
        self.config = ServerConfig(root=str(tmp_path))
        self.conn = Connection(self.reactor, server_end, ServerProtocol(sized_handler),
                               ConnectionContext(self.config))
        self.moves: set[tuple[str, str]] = set()
        self.received = 0

    def step(self, action: Callable[[], None]) -> str:
        """Run one driver callback; record the move; check the deadline of the new state."""
        before = self.conn.state
        action()
        after = self.conn.state
        if after != before:
            self.moves.add((before, after))
        deadline = LIFE_STATES[after][0]
        if deadline is not None:
            assert self.conn._kind == deadline, (after, self.conn._kind)
        return after

    def send(self, data: bytes) -> None:
        """The client sends; the server reads once it is readable (as its loop would)."""
        self.client.sendall(data)
        self.readable()

    def readable(self) -> str:
        assert select.select([self.conn.fd], [], [], WAIT)[0], "nothing arrived"
        return self.step(lambda: self.conn._on_event(EVENT_READ))

    def writable(self) -> str:
        return self.step(lambda: self.conn._on_event(EVENT_WRITE))

    def later(self, seconds: float) -> str:
        """The clock moves on and the connection's timer fires (the callback it armed: the
        connection itself, standing for ``_on_timer``)."""
        self.now += seconds
        self.reactor.now = self.now
        timer = self.conn._timer
        assert timer is not None and not timer.cancelled
        assert timer.callback is self.conn
        return self.step(timer.callback)

    def drain(self) -> int:
        """The client reads whatever has arrived (at least one byte)."""
        assert select.select([self.client], [], [], WAIT)[0], "nothing to read"
        self.client.setblocking(False)
        got = 0
        try:
            while chunk := self.client.recv(1 << 20):
                got += len(chunk)
        except BlockingIOError:
            pass
        finally:
            self.client.setblocking(True)
        self.received += got
        return got

    def flush_until(self, state: str) -> None:
        """Client reads and server writes, until the connection leaves the sending states."""
        for _ in range(10_000):
            if self.conn.state == state:
                return
            self.drain()
            self.writable()
        raise AssertionError(f"never reached {state}: {self.conn!r}")


@pytest.fixture
def lives(tmp_path: Path) -> Iterator[Callable[[], Life]]:
    made: list[Life] = []

    def make() -> Life:
        made.append(Life(tmp_path))
        return made[-1]

    yield make
    for life in made:
        life.conn.abort()
        life.client.close()
        life.reactor.close()
    seen = set().union(*(life.moves for life in made))
    assert seen <= TABLE, f"moves the table lacks: {sorted(seen - TABLE)}"


def test_keep_alive_requests_idle_receiving_and_the_idle_timeout(
        lives: Callable[[], Life]) -> None:
    life = lives()
    assert life.conn.state == "idle"
    life.send(get(10))
    assert life.conn.state == "idle" and life.drain() > 0
    life.send(get(10)[:7])
    assert life.conn.state == "receiving"
    life.send(get(10)[7:])
    assert life.conn.state == "idle"
    assert life.later(life.config.idle_timeout + 1) == "closed"
    assert ("receiving", "idle") in life.moves and ("idle", "closed") in life.moves


def test_a_response_that_backs_up_is_sent_while_reading_goes_on(
        lives: Callable[[], Life]) -> None:
    life = lives()
    life.send(get(BACKED_UP))
    assert life.conn.state == "sending"
    life.send(get(1)[:5])  # the next request begins while the answer is still going out
    assert life.conn.state == "sending"
    life.flush_until("receiving")
    life.send(get(1)[5:])
    assert life.conn.state == "idle"
    life.send(get(1)[:5])
    life.send(get(1)[5:-2] + b"Connection: close\r\n\r\n")  # the rest, and a close
    life.drain()
    assert life.conn.state == "closed"  # the client asked to close and left nothing unread


def test_a_response_over_high_water_stops_reading_until_it_drains(
        lives: Callable[[], Life]) -> None:
    life = lives()
    life.send(get(OVER_HIGH_WATER))
    assert life.conn.state == "paused"
    assert life.conn.transport.pending_bytes >= HIGH_WATER
    life.flush_until("sending")  # under HIGH_WATER: reading again
    life.send(get(OVER_HIGH_WATER))  # pipelined behind it: over HIGH_WATER again
    assert life.conn.state == "paused"
    life.flush_until("idle")
    assert {("idle", "paused"), ("paused", "sending"), ("sending", "paused")} <= life.moves


def test_a_pipelined_batch_pauses_the_protocol_until_its_answers_are_sent(
        lives: Callable[[], Life]) -> None:
    life = lives()
    life.send(get(1000) * (MAX_RESPONSES_PER_BATCH + 1))  # one more than a batch
    assert life.conn.protocol.paused and life.conn.state == "paused"
    life.flush_until("idle")  # flushed: the last request answered, and all of it sent at once
    assert ("paused", "idle") in life.moves


def test_the_send_timeout_drops_a_client_that_reads_nothing(lives: Callable[[], Life]) -> None:
    sending, paused = lives(), lives()
    sending.send(get(BACKED_UP))
    paused.send(get(OVER_HIGH_WATER))
    for life in (sending, paused):
        assert life.later(life.config.send_timeout + 1) == "closed"
    assert ("sending", "closed") in sending.moves and ("paused", "closed") in paused.moves


def test_closing_after_a_bad_request_lingers_until_the_client_closes(
        lives: Callable[[], Life]) -> None:
    life = lives()
    life.send(b"BAD\r\n\r\n")
    assert life.conn.state == "lingering" and life.drain() > 0
    life.client.shutdown(socket.SHUT_WR)
    assert life.readable() == "closed"


def test_a_header_timeout_answers_408_then_lingers_until_its_own_timeout(
        lives: Callable[[], Life]) -> None:
    life = lives()
    life.send(get(1)[:5])
    assert life.later(life.config.header_timeout + 1) == "lingering"
    assert b" 408 " in life.client.recv(1000)
    assert life.later(LINGER_SECONDS + 1) == "closed"
    assert ("receiving", "lingering") in life.moves and ("lingering", "closed") in life.moves


def test_moves_out_of_receiving(lives: Callable[[], Life]) -> None:
    for size, expected in ((BACKED_UP, "sending"), (OVER_HIGH_WATER, "paused")):
        life = lives()
        life.send(get(size)[:5])
        life.send(get(size)[5:])
        assert life.conn.state == expected
    eof = lives()
    eof.send(get(1)[:5])
    eof.client.shutdown(socket.SHUT_WR)  # the client gives up mid-request
    assert eof.readable() == "closed"


def test_draining_a_paused_connection_ends_in_each_of_its_ways(
        lives: Callable[[], Life]) -> None:
    behind = lives()  # a request begun behind a large answer: answered after the flush
    behind.send(get(OVER_HIGH_WATER) + get(1)[:5])
    assert behind.conn.state == "paused"
    behind.flush_until("receiving")
    closing = lives()  # a bad request behind a large answer: the connection will close
    closing.send(get(OVER_HIGH_WATER) + b"BAD\r\n\r\n")
    assert closing.conn.state == "paused"
    closing.flush_until("lingering")
    asked = lives()  # the client asked to close: a plain close once all is sent
    asked.send(get(OVER_HIGH_WATER, "Connection: close"))
    asked.flush_until("closed")
    while asked.client.recv(1 << 20):  # what was still in flight, then the end
        pass
    assert {("paused", "receiving"), ("paused", "lingering"), ("paused", "closed")} <= (
        behind.moves | closing.moves | asked.moves)


def test_every_state_and_deadline_of_the_table_is_known() -> None:
    names = set(LIFE_STATES)
    assert {"idle", "receiving", "sending", "paused", "lingering", "closed"} == names
    assert all(start in names and end in names for start, end in TABLE)
    assert not any(start == "closed" for start, _ in TABLE)  # closed is final
