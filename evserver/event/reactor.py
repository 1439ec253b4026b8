"""The reactor: one thread, one selector, a timer heap, and a loop in three phases.

What this module knows: file descriptors, readiness masks (``selectors.EVENT_READ`` and
``EVENT_WRITE``), time. What it must not know: HTTP, sockets' contents, connections. It calls
``callback(mask)`` when a registered descriptor is ready and ``callback()`` when a timer is due;
what those callbacks do is their business.

The loop, one iteration (``run_once``)::

    1. poll     wait for readiness, at most until the next timer deadline (0 if work is queued)
    2. timers   run every timer due now
    3. ready    run queued thread-safe callbacks, then every ready descriptor's callback

The callback is kept in ``SelectorKey.data``, so a ready event costs one attribute read and one
call. ``now`` is the loop's cached clock: read once when the poll returns and used by everyone
during the iteration (libuv's ``uv_now``), so a connection can stamp its deadlines without a
system call per event. Exactly two clock reads are made per iteration, and from them the loop
counts the time spent waiting (``poll_seconds``) and working (``work_seconds``).

Tracing (``--trace``, :mod:`evserver.event.trace`): with a tracer set, each iteration hands it,
after the poll, the iteration's number, the poll's duration, the ready list and the due timers,
and it writes one line for the iteration and one per event. Speed bought that shape: the loop
tests ``tracer`` once per iteration (one attribute test, the whole cost of tracing when it is
off) and never once per event; the tracer sees every event of the iteration at once and writes
them before they run, in the order they will run. A tracer that fails is logged and removed.

Invariants:

- A callback that raises is logged (logger ``evserver.event``) and the loop goes on.
- ``wake()`` and ``call_soon_threadsafe()`` may be called from any thread or a signal handler:
  they only append to a deque and write one byte to a socketpair (the self-pipe trick).
- ``select()`` cannot watch descriptors >= FD_SETSIZE (1024); ``fd_limit`` says so, and the
  server refuses such connections instead of registering them.

``EPOLLEXCLUSIVE`` (:func:`register_exclusive`): several processes watching one listening socket
are all woken by each new connection (the thundering herd) unless each registers it with this
flag, which makes the kernel wake one waiting epoll per event. ``selectors`` has no way to pass
it, so the descriptor is registered through the selector (its table of keys, so ``select()``
reports it as usual) and then re-registered with the flag on the ``select.epoll`` object the
selector wraps. It has to be the loop's own epoll: an epoll holding the listener, itself watched
by the loop's epoll, does not work, since the kernel stops at the first epoll that has a task
blocked in ``epoll_wait`` on it, and a nested one never has (it is polled), so every nested one
is woken and the herd is back. A descriptor registered so must not be ``modify()``-ed
(``EPOLL_CTL_MOD`` refuses the flag): unregister it and register it again.
"""

from __future__ import annotations

import logging
import select
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from evserver.event.timers import Timer, TimerQueue
from evserver.event.trace import LoopTracer

log = logging.getLogger("evserver.event")

SELECTOR_NAMES = ("auto", "epoll", "poll", "select", "kqueue", "devpoll")

_SELECTOR_CLASSES = {
    "epoll": "EpollSelector",
    "poll": "PollSelector",
    "select": "SelectSelector",
    "kqueue": "KqueueSelector",
    "devpoll": "DevpollSelector",
}

FD_SETSIZE = 1024
"""select(2) cannot watch a descriptor number at or above this (glibc's fixed fd_set size)."""

WAKE_DRAIN_SIZE = 4096
"""Bytes read from the wake socket at once; each wake writes one, so one read drains many."""

EventCallback = Callable[[int], None]


def available_selectors() -> list[str]:
    """The selector names (other than ``auto``) this platform provides."""
    return [name for name, cls in _SELECTOR_CLASSES.items() if hasattr(selectors, cls)]


_NONE_DUE: list[Timer] = []
"""The due timers of an iteration that has none (shared, never written)."""


def make_selector(name: str) -> selectors.BaseSelector:
    """A new selector by name; ``auto`` is the platform's best (epoll on Linux)."""
    if name == "auto":
        return selectors.DefaultSelector()
    if name not in _SELECTOR_CLASSES:
        raise ValueError(f"unknown selector {name!r}; choose from {', '.join(SELECTOR_NAMES)}")
    cls = getattr(selectors, _SELECTOR_CLASSES[name], None)
    if cls is None:
        raise ValueError(f"selector {name!r} is not available on this platform "
                         f"(available: {', '.join(available_selectors())})")
    selector: selectors.BaseSelector = cls()
    return selector


def _report(message: str, argument: object) -> None:
    """Log the exception a callback raised, with its traceback; when there is not even the
    memory to format it (a ``MemoryError``, or one while logging), say nothing: the loop, and
    every other connection, must go on."""
    try:
        log.exception(message, argument)
    except MemoryError:
        pass


def exclusive_registration_available(selector: str) -> bool:
    """Whether ``register_exclusive`` works with a selector of that name (``auto``: the default)."""
    if not hasattr(select, "EPOLLEXCLUSIVE") or not hasattr(selectors, "EpollSelector"):
        return False
    return selector == "epoll" or (selector == "auto"
                                   and selectors.DefaultSelector is selectors.EpollSelector)


def register_exclusive(selector: selectors.BaseSelector, fileobj: Any, data: Any) -> None:
    """Watch ``fileobj`` for reading with ``EPOLLEXCLUSIVE`` (see the module docstring).

    Raises ``ValueError`` for a selector other than epoll, ``OSError`` where the kernel refuses
    the flag (Linux before 4.5).
    """
    poller = getattr(selector, "_selector", None)  # the select.epoll an EpollSelector wraps
    if not isinstance(selector, getattr(selectors, "EpollSelector", ())) or poller is None:
        raise ValueError("EPOLLEXCLUSIVE needs the epoll selector")
    key = selector.register(fileobj, selectors.EVENT_READ, data)
    try:
        poller.unregister(key.fd)
        poller.register(key.fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
    except BaseException:
        selector.unregister(fileobj)
        raise


def selector_name(selector: selectors.BaseSelector) -> str:
    """The short name of a selector object ("epoll" for an EpollSelector)."""
    for name, cls in _SELECTOR_CLASSES.items():
        if type(selector).__name__ == cls:
            return name
    return type(selector).__name__


class Reactor:
    """The event loop. Register descriptors and timers, then ``run()`` until ``stop()``."""

    def __init__(self, selector: str = "auto",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._selector = make_selector(selector)
        self.selector_name = selector_name(self._selector)
        self.fd_limit: int | None = FD_SETSIZE if self.selector_name == "select" else None
        self._clock = clock
        self._timers = TimerQueue()
        self._threadsafe: deque[Callable[[], None]] = deque()
        self._running = False
        self._closed = False
        self.now = clock()
        """The time the last poll returned (read it instead of calling the clock)."""
        self.before_poll: Callable[[], None] | None = None
        """Called once per iteration before polling (the server flushes its access log there)."""
        self.tracer: LoopTracer | None = None
        """Set by ``trace()``: told of every iteration and event (None: no tracing at all)."""
        self.iterations = 0
        self.poll_seconds = 0.0
        self.work_seconds = 0.0
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, self._drain_wake)

    # -- descriptors ----------------------------------------------------------------------

    def register(self, fileobj: Any, events: int, callback: EventCallback) -> None:
        """Call ``callback(mask)`` whenever ``fileobj`` (a socket or an fd) is ready."""
        self._selector.register(fileobj, events, callback)

    def register_exclusive(self, fileobj: Any, callback: EventCallback) -> None:
        """Call ``callback(mask)`` when ``fileobj`` is readable, woken alone among the processes
        watching it (``EPOLLEXCLUSIVE``, epoll only); never ``modify()`` it."""
        register_exclusive(self._selector, fileobj, callback)

    def modify(self, fileobj: Any, events: int, callback: EventCallback) -> None:
        """Change what is watched (a system call for epoll and poll: call only on change)."""
        self._selector.modify(fileobj, events, callback)

    def unregister(self, fileobj: Any) -> None:
        """Stop watching; unknown descriptors are ignored (closing paths call this twice)."""
        try:
            self._selector.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    # -- time -----------------------------------------------------------------------------

    def time(self) -> float:
        """The injected clock's current reading."""
        return self._clock()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback()`` once the clock reaches ``when``; ``cancel()`` the result to undo."""
        return self._timers.add(when, callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback()`` after ``delay`` seconds."""
        return self._timers.add(self._clock() + delay, callback)

    # -- other threads and signal handlers -------------------------------------------------

    def wake(self) -> None:
        """Interrupt a blocking poll; safe from any thread and from a signal handler."""
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass  # buffer full (a wake is already pending) or the reactor is closed

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` in the loop's thread at the next iteration."""
        self._threadsafe.append(callback)
        self.wake()

    def _drain_wake(self, mask: int) -> None:
        try:
            while self._wake_reader.recv(WAKE_DRAIN_SIZE):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    # -- watching the loop ---------------------------------------------------------------

    def trace(self, tracer: LoopTracer | None) -> None:
        """Describe every iteration and event to ``tracer`` from now on (None: stop)."""
        if tracer is not None:
            tracer.name(self._drain_wake, "wake")
        self.tracer = tracer

    def _trace(self, tracer: LoopTracer, poll_seconds: float,
               ready: list[tuple[selectors.SelectorKey, int]], due: list[Timer]) -> None:
        try:
            tracer.iteration(self.iterations, poll_seconds, ready, due, tuple(self._threadsafe))
        except Exception:  # a full disk or a closed file must not stop the server
            log.exception("tracing failed; tracing stops")
            self.tracer = None

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> None:
        """Run iterations until ``stop()`` is called."""
        self._running = True
        while self._running:
            self.run_once()

    def stop(self) -> None:
        """Make ``run()`` return after the current iteration (call from the loop's thread)."""
        self._running = False

    def run_once(self, timeout: float | None = None) -> None:
        """One iteration: poll (at most ``timeout`` s; None: until a timer), timers, ready."""
        if self.before_poll is not None:
            self.before_poll()
        # Phase 1: poll, no longer than until the next timer is due.
        started = self._clock()
        self.work_seconds += started - self.now
        deadline = self._timers.next_deadline()
        if self._threadsafe:
            timeout = 0
        elif deadline is not None:
            until = max(0.0, deadline - started)
            timeout = until if timeout is None else min(timeout, until)
        ready = self._selector.select(timeout)
        self.now = now = self._clock()
        self.poll_seconds += now - started
        self.iterations += 1
        # No timer is armed between the two calls, and the earliest live one is not due before
        # ``deadline``: asking the heap only then saves a call and a list per iteration.
        due = self._timers.pop_due(now) if deadline is not None and deadline <= now else _NONE_DUE
        if self.tracer is not None:  # once per iteration, never per event: see the docstring
            self._trace(self.tracer, now - started, ready, due)

        # Phase 2: timers due now. (Those they arm wait for the next iteration.)
        for timer in due:
            if not timer.cancelled:
                self._run(timer.callback)

        # Phase 3: callbacks queued from other threads, then ready descriptors.
        threadsafe = self._threadsafe
        while threadsafe:
            self._run(threadsafe.popleft())
        for key, mask in ready:
            try:
                key.data(mask)
            except Exception:
                _report("callback for fd %d failed", key.fd)

    def _run(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            _report("callback %r failed", callback)

    def close(self) -> None:
        """Release the selector and the wake socketpair (registered descriptors stay open)."""
        if self._closed:
            return
        self._closed = True
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()

    def __repr__(self) -> str:
        return (f"<Reactor {self.selector_name} fds={len(self._selector.get_map())} "
                f"timers={len(self._timers)}>")
