"""The loop trace: what the reactor tells its tracer, and the lines the tracer writes.

A fake clock makes the poll's duration exact; socket pairs make descriptors ready on demand.
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from evserver.event.reactor import Reactor
from evserver.event.trace import LoopTracer, callback_name


class FakeClock:
    """Advances by ``step`` seconds at every reading: each poll then seems to take ``step``."""

    def __init__(self, step: float) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class Owner:
    """Stands for a server: one callback it names ``accept``, one it leaves to the mask."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_listener(self, mask: int) -> None:
        self.calls.append("listener")

    def on_connection(self, mask: int) -> None:
        self.calls.append("connection")

    def on_timer(self) -> None:
        self.calls.append("timer")


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(2)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def test_a_traced_iteration_names_its_poll_its_events_and_what_ran(
        pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    clock = FakeClock(step=0.0025)
    reactor = Reactor("poll", clock=clock)
    owner = Owner()
    (listener, listener_peer), (conn, conn_peer) = pairs
    try:
        reactor.register(listener, selectors.EVENT_READ, owner.on_listener)
        reactor.register(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, owner.on_connection)
        reactor.call_at(0.0, owner.on_timer)  # due at once
        stream = io.StringIO()
        reactor.trace(LoopTracer(stream, {owner.on_listener: "accept"}))
        listener_peer.send(b"x")
        conn_peer.send(b"y")
        reactor.run_once(timeout=0)
    finally:
        reactor.close()
    lines = stream.getvalue().splitlines()
    head, events = lines[0], sorted(line.split() for line in lines[1:])
    fds = sorted([listener.fileno(), conn.fileno()])
    assert head.startswith("iteration 1: polled 2.500 ms, 2 ready (fd ")
    assert all(f"fd {fd}" in head for fd in fds) and head.endswith(", 1 timer due")
    assert events == sorted([
        ["accept", "fd", str(listener.fileno()), "read", "Owner.on_listener"],
        ["read+write", "fd", str(conn.fileno()), "read+write", "Owner.on_connection"],
        ["timer", "Owner.on_timer"],
    ])
    assert lines[1].split()[0] == "timer"  # in the order they run: timers first
    assert sorted(owner.calls) == ["connection", "listener", "timer"]


def test_iterations_are_numbered_and_wakes_and_queued_calls_are_named() -> None:
    reactor = Reactor("poll", clock=FakeClock(step=0.0))
    stream = io.StringIO()
    reactor.trace(LoopTracer(stream))
    owner = Owner()
    try:
        reactor.run_once(timeout=0)
        reactor.call_soon_threadsafe(owner.on_timer)  # queues a call and wakes the loop
        reactor.run_once(timeout=0)
    finally:
        reactor.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "iteration 1: polled 0.000 ms, 0 ready, 0 timers due"
    assert lines[1].startswith("iteration 2: polled 0.000 ms, 1 ready (fd ")
    assert [line.split()[0] for line in lines[2:]] == ["call", "wake"]
    assert lines[3].split()[-1] == "Reactor._drain_wake"


def test_no_tracer_no_lines_and_tracing_can_stop(
        pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    reactor = Reactor("poll")
    (a, b), _ = pairs
    stream = io.StringIO()
    try:
        assert reactor.tracer is None  # the default: the loop never calls a tracer
        reactor.register(a, selectors.EVENT_READ, lambda mask: None)
        b.send(b"x")
        reactor.run_once(timeout=0)
        reactor.trace(LoopTracer(stream))
        reactor.trace(None)
        reactor.run_once(timeout=0)  # fd ready again (never read): an event, and no line
    finally:
        reactor.close()
    assert stream.getvalue() == ""


def test_a_failing_tracer_is_logged_and_removed_and_the_loop_goes_on(
        pairs: list[tuple[socket.socket, socket.socket]],
        caplog: pytest.LogCaptureFixture) -> None:
    reactor = Reactor("poll")
    (a, b), _ = pairs
    received: list[bytes] = []
    stream = io.StringIO()
    stream.close()  # writing fails
    try:
        reactor.register(a, selectors.EVENT_READ, lambda mask: received.append(a.recv(10)))
        reactor.trace(LoopTracer(stream))
        b.send(b"x")
        with caplog.at_level(logging.ERROR, logger="evserver.event"):
            reactor.run_once(timeout=0)
    finally:
        reactor.close()
    assert received == [b"x"] and reactor.tracer is None
    assert "tracing failed" in caplog.text


def test_callback_names() -> None:
    owner = Owner()
    assert callback_name(owner.on_timer) == "Owner.on_timer"
    assert callback_name(test_callback_names) == "test_callback_names"
    assert callback_name(print) == "print"

    class Driver:  # an object that is its own timer callback (the evented Connection)
        def on_timer(self) -> None:
            pass

        __call__ = on_timer

    assert callback_name(Driver()) == "test_callback_names.<locals>.Driver.on_timer"


def test_a_trace_file_is_appended_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "trace.txt"
    path.write_text("earlier\n")
    tracer = LoopTracer.open(str(path))
    tracer.iteration(7, 0.001, [], [])
    tracer.close()
    assert path.read_text() == "earlier\niteration 7: polled 1.000 ms, 0 ready, 0 timers due\n"
    to_stderr = LoopTracer.open("-")
    to_stderr.close()
    assert to_stderr.stream is sys.stderr and not sys.stderr.closed
