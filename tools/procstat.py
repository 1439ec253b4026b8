"""What a server process tree costs, read from ``/proc`` once a second.

What this module knows: the Linux ``/proc`` files (``stat``, ``status``, ``fd/``,
``task/*/children``) and, optionally, an HTTP stats URL to fetch alongside. What it must not
know: which server runs.

A *tree* is the process and all its descendants: nginx serves from a worker child of its master,
so a single pid would miss the work. Figures are summed over the tree: RSS (KiB), threads,
descriptors, sockets, CPU seconds (user + system). A process that vanished mid-read is skipped.
"""

from __future__ import annotations

import itertools
import json
import os
import ssl
import statistics
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""/proc/<pid>/stat reports CPU time in these units (100 per second on Linux)."""

SAMPLE_INTERVAL = 1.0
"""Seconds between samples: enough to draw memory over a 10 s point; finer adds noise and load."""

STATS_TIMEOUT = 0.5
"""A stats request that takes longer than this is skipped (an iterative server is busy)."""


@dataclass
class TreeSample:
    t: float
    rss_kib: int
    threads: int
    fds: int
    sockets: int
    cpu_seconds: float
    processes: int


def descendants(pid: int) -> list[int]:
    """``pid`` and every descendant, via the kernel's per-task ``children`` lists."""
    found: list[int] = []
    queue = [pid]
    while queue and len(found) < 4096:  # bounded: a fork bomb must not hang the sampler
        current = queue.pop()
        found.append(current)
        try:
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as children:
                    queue.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return found


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may contain spaces: split after its closing parenthesis.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def _status(pid: int) -> tuple[int, int]:
    rss = threads = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def _descriptors(pid: int) -> tuple[int, int]:
    fds = sockets = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                sockets += 1
        except OSError:
            pass
    return fds, sockets


def sample_tree(pid: int) -> TreeSample | None:
    """One sample of the tree rooted at ``pid``, or None when the root is gone."""
    total = TreeSample(time.time(), 0, 0, 0, 0, 0.0, 0)
    for member in descendants(pid):
        try:
            rss, threads = _status(member)
            cpu = _cpu_seconds(member)
            fds, sockets = _descriptors(member)
        except (OSError, IndexError, ValueError):
            continue
        total.rss_kib += rss
        total.threads += threads
        total.cpu_seconds += cpu
        total.fds += fds
        total.sockets += sockets
        total.processes += 1
    return total if total.processes else None


def cpu_seconds_tree(pid: int) -> float:
    """CPU seconds of the tree, cheaper than a full sample (used around each wrk run)."""
    total = 0.0
    for member in descendants(pid):
        try:
            total += _cpu_seconds(member)
        except (OSError, IndexError, ValueError):
            continue
    return total


def busy_percent(records: list[dict[str, Any]]) -> float | None:
    """How busy a tree kept its CPUs, in percent of one core: the median over the one-second
    intervals between samples (a median, so the start-up and the stop do not count)."""
    rates = []
    for earlier, later in itertools.pairwise(records):
        elapsed = later["t"] - earlier["t"]
        if elapsed > 0:
            rates.append((later["cpu_seconds"] - earlier["cpu_seconds"]) / elapsed * 100)
    return round(statistics.median(rates), 1) if rates else None


def _loopback_tls() -> ssl.SSLContext:
    """For a stats URL over HTTPS: the runner's own server on 127.0.0.1, with the certificate
    the run made for it; nothing to verify it against, and nothing to protect."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch_stats(url: str, timeout: float = STATS_TIMEOUT) -> dict[str, Any] | None:
    context = _loopback_tls() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (OSError, ValueError):
        return None


class Sampler:
    """A background thread that samples one tree each second until ``stop()``.

    Each record is a dict: the ``TreeSample`` fields plus ``stats`` (the endpoint's JSON or
    None) and whatever labels were given (server, case, point), ready for a CSV/JSON dump.
    """

    def __init__(self, pid: int, stats_url: str | None, labels: dict[str, Any],
                 interval: float = SAMPLE_INTERVAL) -> None:
        self.pid = pid
        self.stats_url = stats_url
        self.labels = labels
        self.interval = interval
        self.records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = sample_tree(self.pid)
            if sample is None:
                return
            record: dict[str, Any] = {**self.labels, **asdict(sample)}
            record["stats"] = fetch_stats(self.stats_url) if self.stats_url else None
            self.records.append(record)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return self.records
