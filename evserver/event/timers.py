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

COMPACT_MIN_SIZE = 256
"""Below this heap size cancelled timers are simply left to surface; rebuilding is not worth it."""


class Timer:
    """A callback due at ``when``. Keep it to ``cancel()`` it; cancelling twice is harmless."""

    __slots__ = ("_queue", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None],
                 queue: TimerQueue | None = None) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._queue = queue

    def cancel(self) -> None:
        """Mark the timer dead; the heap forgets it lazily."""
        if not self.cancelled:
            self.cancelled = True
            if self._queue is not None:
                self._queue.note_cancelled()
                self._queue = None

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer at {self.when:.3f}{state} {self.callback!r}>"


class TimerQueue:
    """The heap: ``(when, sequence, timer)`` entries, earliest first."""

    __slots__ = ("_cancelled", "_heap", "_sequence")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._sequence = itertools.count()
        self._cancelled = 0

    def __len__(self) -> int:
        """Live (not cancelled) timers."""
        return len(self._heap) - self._cancelled

    def add(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback, self)
        heapq.heappush(self._heap, (when, next(self._sequence), timer))
        return timer

    def note_cancelled(self) -> None:
        """Called by ``Timer.cancel``: count the corpse, rebuild when they are the majority."""
        self._cancelled += 1
        heap = self._heap
        if len(heap) >= COMPACT_MIN_SIZE and self._cancelled * 2 > len(heap):
            self._heap = [entry for entry in heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _drop_cancelled_top(self) -> None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1

    def next_deadline(self) -> float | None:
        """When the earliest live timer is due, or ``None`` if there is none."""
        self._drop_cancelled_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """Remove and return every live timer due at or before ``now``, earliest first."""
        heap = self._heap
        due: list[Timer] = []
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled:
                self._cancelled -= 1
            else:
                timer._queue = None  # it has left the heap: a late cancel() must not count it
                due.append(timer)
        return due
