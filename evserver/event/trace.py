"""Watching the loop: one line per iteration of the reactor and one per event it dispatches.

What this module knows: descriptors, readiness masks, timers, callbacks' names, a text stream.
What it must not know: HTTP, connections, what the callbacks do. The reactor hands the tracer,
once per iteration, everything that iteration is about to run; the tracer writes it as lines::

    iteration 7: polled 12.034 ms, 2 ready (fd 6, fd 9), 1 timer due
      timer                Connection._on_timer
      accept  fd 6 read    EventedServer._on_listener_ready
      read    fd 9 read    Connection._on_event

An iteration line gives the iteration's number, how long the poll waited, which descriptors it
found ready and how many timers are due. Then one line per thing that runs, in the order it
runs (due timers, callbacks queued from other threads, ready descriptors), each saying what ran,
on which descriptor and readiness, and the callback's name. What ran is the name its owner gave
the callback (``labels``: the server names its accept callback ``accept``), else for a
descriptor its readiness (``read``, ``write``, ``read+write``), for a timer ``timer`` and for a
queued callback ``call``.

Lines are written once per iteration, in one ``write`` followed by a ``flush``, so a trace read
while the server runs is never more than one iteration behind. Tracing is slow on purpose: it
formats every event. When it is off the reactor never calls in here (see its docstring).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from selectors import EVENT_READ, EVENT_WRITE, SelectorKey
from typing import Any, TextIO

from evserver.event.timers import Timer

MASK_NAMES = {EVENT_READ: "read", EVENT_WRITE: "write", EVENT_READ | EVENT_WRITE: "read+write"}
"""What a readiness mask says, in the words of the trace."""

STANDARD_ERROR = "-"
"""The trace destination that means standard error (as for the access log)."""


def callback_name(callback: Callable[..., Any]) -> str:
    """``Class.method`` for a bound method, the qualified name for a function, the name of its
    class's ``__call__`` for an object called as its own callback, else its repr."""
    name = getattr(callback, "__qualname__", None)
    if name is None:  # an object called as its own callback: name its class's __call__
        name = getattr(type(callback).__call__, "__qualname__", None)
    return str(name) if name else repr(callback)


class LoopTracer:
    """Writes the reactor's iterations and events to ``stream``."""

    def __init__(self, stream: TextIO, labels: Mapping[Callable[..., Any], str] | None = None,
                 close_stream: bool = False) -> None:
        self.stream = stream
        self.labels: dict[Callable[..., Any], str] = dict(labels or {})
        """Callbacks (bound methods compare equal when they bind the same object) and what
        the trace calls them; ``name()`` adds more."""
        self._close_stream = close_stream

    @classmethod
    def open(cls, destination: str,
             labels: Mapping[Callable[..., Any], str] | None = None) -> LoopTracer:
        """A tracer writing to standard error (``"-"``) or appending to the file named."""
        if destination == STANDARD_ERROR:
            return cls(sys.stderr, labels)
        return cls(open(destination, "a", encoding="utf-8"), labels, close_stream=True)

    def name(self, callback: Callable[..., Any], label: str) -> None:
        """Call ``callback`` ``label`` in event lines (``accept`` for a listener's callback)."""
        self.labels[callback] = label

    def iteration(self, number: int, poll_seconds: float,
                  ready: list[tuple[SelectorKey, int]], due: list[Timer],
                  queued: Iterable[Callable[[], None]] = ()) -> None:
        """Write iteration ``number`` and the events it is about to run, in that order."""
        labels = self.labels
        fds = ", ".join(f"fd {key.fd}" for key, _ in ready)
        timers = f"{len(due)} timer{'' if len(due) == 1 else 's'} due"
        lines = [f"iteration {number}: polled {poll_seconds * 1000:.3f} ms, "
                 f"{len(ready)} ready{f' ({fds})' if fds else ''}, {timers}"]
        for timer in due:
            lines.append(_event_line(labels.get(timer.callback, "timer"), "", timer.callback))
        for callback in queued:
            lines.append(_event_line(labels.get(callback, "call"), "", callback))
        for key, mask in ready:
            readiness = MASK_NAMES.get(mask, str(mask))
            what = labels.get(key.data, readiness)
            lines.append(_event_line(what, f"fd {key.fd} {readiness}", key.data))
        lines.append("")
        self.stream.write("\n".join(lines))
        self.stream.flush()

    def close(self) -> None:
        """Close the file the trace goes to (never standard error)."""
        if self._close_stream:
            self.stream.close()


def _event_line(what: str, where: str, callback: Callable[..., Any]) -> str:
    return f"  {what:<7} {where:<12} {callback_name(callback)}"
