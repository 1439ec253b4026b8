"""The event layer: a single-threaded reactor on ``selectors`` and its timer heap.

What this package knows: file descriptors, readiness and time. What it must not know: HTTP,
connections, sockets' contents. ``reactor`` is the loop (three phases: poll, timers, ready
callbacks); ``timers`` is the heap with lazy cancellation the loop uses; ``trace`` writes what
the loop does, an iteration and an event a line (``--trace``).
"""

from evserver.event.reactor import SELECTOR_NAMES, Reactor, make_selector
from evserver.event.timers import Timer

__all__ = ["SELECTOR_NAMES", "Reactor", "Timer", "make_selector"]
