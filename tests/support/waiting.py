"""Deadlines: waiting for a condition, never for a fixed time.

What this module knows: the clock. Tests wait on sockets where they can; where the thing awaited
is a server's state that no socket reports (a counter, a descriptor closed a moment after the
client saw the close), they poll it here, and fail with a message once the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SETTLE_SECONDS = 10.0
"""Deadline for a state a server reaches a moment after the client sees it: reached only when
the server is broken."""

STOP_TIMEOUT = 30.0
"""Seconds a server may take to stop before the test fails (drain timeouts are shorter)."""

POLL_INTERVAL = 0.01
"""Between two looks at a condition: short against every deadline, long enough not to spin."""


def wait_until(condition: Callable[[], bool], what: str, seconds: float = SETTLE_SECONDS) -> None:
    """Poll ``condition`` until it is true; fail ("never happened: WHAT") after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(POLL_INTERVAL)
