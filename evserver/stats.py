"""Counters a server keeps about itself, for the opt-in stats endpoint (``--stats-path``).

What this module knows: names of counters and how to add to them. What it must not know: who
reads them or how they are served. Every counter is a plain attribute so counting costs one
attribute add; with the threaded model several threads add at once and a rare lost update is
accepted (a statistic, not an account: no lock on the hot path).
"""

from __future__ import annotations

import time
from typing import Any


class Stats:
    """Counters for one server process. ``count_response`` is called once per response."""

    __slots__ = ("accept_pauses", "accepted", "body_bytes", "connections_open",
                 "connections_refused", "connections_total", "log_lines_lost",
                 "loop_iterations", "model",
                 "poll_seconds", "requests", "selector", "sendfile_bytes", "started",
                 "status_classes", "timeouts", "work_seconds")

    def __init__(self, model: str = "", selector: str = "") -> None:
        self.model = model
        self.selector = selector
        self.started = time.monotonic()
        self.connections_open = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.requests = 0
        self.status_classes = [0, 0, 0, 0, 0, 0]  # index 1..5 = 1xx..5xx
        self.body_bytes = 0
        self.sendfile_bytes = 0
        self.accept_pauses = 0
        self.accepted = 0
        """Connections ``accept()`` handed this process: its share of the port, which only a
        worker's row of the stats shows (a single process takes every connection)."""
        self.timeouts = {"header": 0, "idle": 0, "send": 0}
        self.log_lines_lost = 0
        """Access-log lines dropped because writing failed (a full disk)."""
        self.loop_iterations = 0
        self.poll_seconds = 0.0
        self.work_seconds = 0.0

    def count_response(self, status: int, body_bytes: int) -> None:
        self.requests += 1
        self.status_classes[status // 100 % 6] += 1
        self.body_bytes += body_bytes

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A JSON-ready dict of every counter, plus what the caller adds (e.g. live threads)."""
        data: dict[str, Any] = {
            "model": self.model,
            "selector": self.selector,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "connections_open": self.connections_open,
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "requests": self.requests,
            "responses": {f"{n}xx": self.status_classes[n] for n in range(1, 6)},
            "body_bytes": self.body_bytes,
            "sendfile_bytes": self.sendfile_bytes,
            "accept_pauses": self.accept_pauses,
            "timeouts": dict(self.timeouts),
            "access_log": {"lines_lost": self.log_lines_lost},
        }
        if self.model == "evented":
            data["loop"] = {
                "iterations": self.loop_iterations,
                "poll_seconds": round(self.poll_seconds, 6),
                "work_seconds": round(self.work_seconds, 6),
            }
        data.update(extra)
        return data
