"""A heap of timers with lazy cancellation.

What this module knows: numbers that mean "when" and callables to run then. What it must not
know: where the time comes from (the reactor passes ``now`` in: the clock is injected there), and
anything about sockets or HTTP.

A discussion about cancelling. Removing an entry from the middle of a binary heap costs O(n).
Instead, ``Timer.cancel()`` only marks the timer; a cancelled timer stays in the heap until it
reaches the top, where it is dropped without being run (the trick of curio's ``timequeue``). So
arming and cancelling are both O(log n) and O(1). The price is memory: a program that arms and
cancels far-future timers in a loop would fill the heap with corpses, so when more than half the
heap is cancelled (and it is not tiny) it is rebuilt once, which keeps the cost amortised O(1).

Invariants:

- ``pop_due(now)`` returns timers in deadline order, ties in the order they were armed (a
  sequence number breaks ties, so timers never compare callbacks).
- A cancelled timer is never returned; a timer is returned at most once.
- Timers armed while the due ones are being run wait for the next ``pop_due``: a timer that
  re-arms itself with zero delay cannot starve the loop.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

COMPACT_MIN_SIZE = 256
"""Below this heap size cancelled timers are simply left to surface; rebuilding is not worth it."""


_CANCELLED = "cancelled"
"""A timer's state once ``cancel()`` was called (otherwise its queue, or None once it has left
the heap)."""

_WHEN, _SEQUENCE, _CALLBACK, _STATE = range(4)
"""The places of a timer's fields in its list."""


class Timer(list[Any]):
    """A callback due at ``when``. Keep it to ``cancel()`` it; cancelling twice is harmless.

    A timer is its own heap entry: the list ``[when, sequence, callback, state]``, which the heap
    orders by deadline, then by arming order (sequences are unique, so a comparison never reaches
    the callback). A separate object inside a ``(when, sequence, timer)`` tuple was 32 bytes more
    per timer, and a server holds a timer per connection: saves 32 bytes per idle connection.
    ``state`` is the queue while the timer waits in it, None once it has left, or
    ``_CANCELLED``.
    """

    __slots__ = ()

    @property
    def when(self) -> float:
        return float(self[_WHEN])

    @property
    def callback(self) -> Callable[[], None]:
        callback: Callable[[], None] = self[_CALLBACK]
        return callback

    @property
    def cancelled(self) -> bool:
        return self[_STATE] is _CANCELLED

    def cancel(self) -> None:
        """Mark the timer dead; the heap forgets it lazily."""
        state = self[_STATE]
        if state is not _CANCELLED:
            self[_STATE] = _CANCELLED
            if state is not None:
                state.note_cancelled()

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when:.3f}{state} {self.callback!r}>"


class TimerQueue:
    """The heap of timers, earliest first."""

    __slots__ = ("_cancelled", "_heap", "_sequence")

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._sequence = itertools.count()
        self._cancelled = 0

    def __len__(self) -> int:
        """Live (not cancelled) timers."""
        return len(self._heap) - self._cancelled

    def add(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer((when, next(self._sequence), callback, self))
        heapq.heappush(self._heap, timer)
        return timer

    def note_cancelled(self) -> None:
        """Called by ``Timer.cancel``: count the corpse, rebuild when they are the majority."""
        self._cancelled += 1
        heap = self._heap
        if len(heap) >= COMPACT_MIN_SIZE and self._cancelled * 2 > len(heap):
            self._heap = [timer for timer in heap if timer[_STATE] is not _CANCELLED]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _drop_cancelled_top(self) -> None:
        heap = self._heap
        while heap and heap[0][_STATE] is _CANCELLED:
            heapq.heappop(heap)
            self._cancelled -= 1

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, or ``None`` if there is none."""
        heap = self._heap
        if heap and heap[0][_STATE] is _CANCELLED:  # tested here: a call saved per iteration
            self._drop_cancelled_top()
        return heap[0][_WHEN] if heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return every live timer due at or before ``now``, earliest first."""
        heap = self._heap
        due: list[Timer] = []
        while heap and heap[0][_WHEN] <= now:
            timer = heapq.heappop(heap)
            if timer[_STATE] is _CANCELLED:
                self._cancelled -= 1
            else:
                timer[_STATE] = None  # it has left the heap: a late cancel() must not count it
                due.append(timer)
        return due
