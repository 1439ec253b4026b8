"""A step-load shape for Locust: raise the user count in stages to find the knee.

What this file knows: time and user counts. What it must not know: the user classes (it is
loaded beside ``locustfile.py``: ``-f loadtests/locustfile.py,loadtests/shapes.py``), so the
plain locustfile keeps honouring ``-u``/``-t`` when the shape is not wanted.

Each stage holds for ``STEP_SECONDS``; the knee is the stage where requests/s stops rising
while response times start to climb (read it off Locust's charts or the ``--csv`` history).
Environment variables tune it without editing: ``STEP_USERS`` (users added per stage),
``STEP_SECONDS`` and ``STEP_COUNT``.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

STEP_USERS = int(os.environ.get("STEP_USERS", "50"))
"""Users added at each stage: coarse enough to finish in minutes, fine enough to see a knee."""

STEP_SECONDS = float(os.environ.get("STEP_SECONDS", "30"))
"""Seconds per stage: long enough for latency percentiles to settle after the ramp."""

STEP_COUNT = int(os.environ.get("STEP_COUNT", "10"))
"""Stages before the test stops (bounded: the shape always ends)."""


class StepLoadShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        stage = int(elapsed // STEP_SECONDS)
        if stage >= STEP_COUNT:
            return None
        users = STEP_USERS * (stage + 1)
        return users, float(STEP_USERS)  # spawn a whole stage within about a second
