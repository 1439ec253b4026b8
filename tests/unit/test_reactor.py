"""The reactor: readiness callbacks, timers on a fake clock, wake-ups, robustness."""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Iterator

import pytest

from evserver.event.reactor import (
    FD_SETSIZE,
    SELECTOR_NAMES,
    Reactor,
    available_selectors,
    exclusive_registration_available,
    make_selector,
    register_exclusive,
)
from evserver.event.timers import Timer, TimerQueue

HERE = [name for name in ("epoll", "poll", "select") if name in available_selectors()]
GENEROUS = 10.0  # seconds a blocking poll may wait in a test before something is surely wrong


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=HERE)
def reactor(request: pytest.FixtureRequest) -> Iterator[Reactor]:
    loop = Reactor(request.param)
    yield loop
    loop.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_auto_is_the_platform_default_and_names_are_known() -> None:
    loop = Reactor("auto")
    try:
        expected = type(selectors.DefaultSelector()).__name__.replace("Selector", "").lower()
        assert loop.selector_name == expected
    finally:
        loop.close()
    assert set(available_selectors()) <= set(SELECTOR_NAMES)


def test_unknown_or_missing_selector_is_a_clear_valueerror() -> None:
    with pytest.raises(ValueError, match="unknown selector"):
        make_selector("nope")
    missing = [n for n in ("kqueue", "devpoll", "epoll") if n not in available_selectors()]
    for name in missing:
        with pytest.raises(ValueError, match="not available"):
            make_selector(name)


def test_fd_limit_only_for_select() -> None:
    for name in HERE:
        loop = Reactor(name)
        assert loop.fd_limit == (FD_SETSIZE if name == "select" else None)
        loop.close()


def test_readable_callback_gets_the_mask(reactor: Reactor, pair: tuple[socket.socket, ...]) -> None:
    a, b = pair
    masks: list[int] = []
    reactor.register(a, selectors.EVENT_READ, masks.append)
    reactor.run_once(0)
    assert masks == []
    b.send(b"x")
    reactor.run_once(GENEROUS)
    assert masks == [selectors.EVENT_READ]


def test_modify_and_unregister(reactor: Reactor, pair: tuple[socket.socket, ...]) -> None:
    a, _ = pair
    masks: list[int] = []
    reactor.register(a.fileno(), selectors.EVENT_READ, masks.append)
    reactor.modify(a.fileno(), selectors.EVENT_WRITE, lambda mask: masks.append(-mask))
    reactor.run_once(GENEROUS)
    assert masks == [-selectors.EVENT_WRITE]  # the new callback, the new mask
    reactor.unregister(a.fileno())
    reactor.unregister(a.fileno())  # twice is harmless
    reactor.run_once(0)
    assert masks == [-selectors.EVENT_WRITE]


def test_timers_run_in_order_on_the_injected_clock() -> None:
    clock = FakeClock()
    loop = Reactor("poll" if "poll" in HERE else "select", clock=clock)
    try:
        seen: list[str] = []
        loop.call_later(2.0, lambda: seen.append("two"))
        loop.call_later(1.0, lambda: seen.append("one"))
        cancelled = loop.call_at(100.5, lambda: seen.append("cancelled"))
        cancelled.cancel()
        loop.run_once(0)
        assert seen == []
        clock.now = 101.0
        loop.run_once(0)
        assert seen == ["one"]
        clock.now = 105.0
        loop.run_once(0)
        assert seen == ["one", "two"]
        assert loop.time() == 105.0 and loop.now == 105.0
    finally:
        loop.close()


def test_the_heap_is_asked_for_due_timers_exactly_when_one_may_be_due() -> None:
    """The shortcut: ``pop_due`` is skipped while the next deadline is later than the poll's
    return. Pinned to the plain path, asking every iteration: the same timers, in order, at
    their deadline to the tick, behind a cancelled one, and with thread-safe work queued."""
    asked: list[float] = []

    class CountingQueue(TimerQueue):
        __slots__ = ()

        def pop_due(self, now: float) -> list[Timer]:
            asked.append(now)
            return super().pop_due(now)

    clock = FakeClock()
    loop = Reactor(HERE[0], clock=clock)
    loop._timers = CountingQueue()
    try:
        seen: list[str] = []
        loop.call_at(101.0, lambda: seen.append("a"))
        loop.call_at(100.5, lambda: seen.append("cancelled")).cancel()
        loop.call_at(101.0, lambda: seen.append("b"))
        loop.run_once(0)
        assert seen == [] and asked == []  # nothing due: the heap was not asked
        clock.now = 101.0  # exactly the deadline
        loop.call_soon_threadsafe(lambda: seen.append("queued"))
        loop.run_once(0)
        assert seen == ["a", "b", "queued"] and asked == [101.0]
        loop.run_once(0)
        assert asked == [101.0]  # no timer left: never asked again
    finally:
        loop.close()


def test_poll_timeout_comes_from_the_next_deadline(reactor: Reactor) -> None:
    fired = threading.Event()
    reactor.call_later(0.01, fired.set)
    for _ in range(1000):  # with no timeout given, each poll waits for the timer, not forever
        reactor.run_once()
        if fired.is_set():
            break
    assert fired.is_set()


def test_a_timer_armed_by_a_timer_waits_for_the_next_iteration() -> None:
    clock = FakeClock()
    loop = Reactor(HERE[0], clock=clock)
    try:
        count = [0]

        def again() -> None:
            count[0] += 1
            loop.call_later(0, again)

        loop.call_later(0, again)
        loop.run_once(0)
        loop.run_once(0)
        assert count[0] == 2  # one per iteration, not an endless loop inside one
    finally:
        loop.close()


def test_a_raising_callback_is_logged_and_the_loop_goes_on(
        reactor: Reactor, pair: tuple[socket.socket, ...],
        caplog: pytest.LogCaptureFixture) -> None:
    a, b = pair
    ran: list[str] = []

    def broken(mask: int) -> None:
        raise RuntimeError("boom")

    reactor.register(a, selectors.EVENT_WRITE, broken)
    reactor.register(b, selectors.EVENT_WRITE, lambda mask: ran.append("fd"))
    reactor.call_later(0, lambda: 1 / 0)  # type: ignore[func-returns-value]
    reactor.call_later(0, lambda: ran.append("timer"))
    with caplog.at_level(logging.ERROR, logger="evserver.event"):
        reactor.run_once(GENEROUS)
    assert sorted(ran) == ["fd", "timer"]
    assert "boom" in caplog.text and "ZeroDivisionError" in caplog.text


def test_wake_and_call_soon_threadsafe_interrupt_a_blocking_poll(reactor: Reactor) -> None:
    done = threading.Event()

    def from_thread() -> None:
        reactor.call_soon_threadsafe(done.set)

    thread = threading.Thread(target=from_thread)
    thread.start()
    for _ in range(100):  # each iteration blocks until woken (no timers are armed)
        reactor.run_once(GENEROUS)
        if done.is_set():
            break
    thread.join()
    assert done.is_set()


def test_run_until_stop_from_another_thread_and_counters(reactor: Reactor) -> None:
    thread = threading.Thread(target=reactor.run)
    thread.start()
    reactor.call_soon_threadsafe(reactor.stop)
    thread.join(GENEROUS)
    assert not thread.is_alive()
    assert reactor.iterations >= 1
    assert reactor.poll_seconds >= 0 and reactor.work_seconds >= 0


def test_calls_after_close_do_not_raise() -> None:
    loop = Reactor(HERE[0])
    loop.close()
    loop.close()
    loop.wake()
    loop.call_soon_threadsafe(lambda: None)


@pytest.mark.skipif(not exclusive_registration_available("epoll"), reason="no EPOLLEXCLUSIVE")
def test_an_exclusive_listener_is_reported_like_any_other_and_can_come_and_go() -> None:
    loop = Reactor("epoll")
    seen: list[int] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        try:
            for _ in range(2):  # registered, unregistered, registered again (never modified)
                loop.register_exclusive(listener, seen.append)
                with socket.create_connection(listener.getsockname(), timeout=GENEROUS):
                    loop.run_once(GENEROUS)
                    assert seen[-1] == selectors.EVENT_READ
                    listener.accept()[0].close()
                loop.unregister(listener)
        finally:
            loop.close()


def test_exclusive_registration_needs_epoll() -> None:
    assert not exclusive_registration_available("poll")
    with (socket.socket() as sock, selectors.PollSelector() as poll,
          pytest.raises(ValueError, match="epoll")):
        register_exclusive(poll, sock, None)
