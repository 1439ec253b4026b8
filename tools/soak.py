"""Soak one evserver under a mixed load while its files change, check every answer, and judge.

What this module knows: how to start evserver (``tools/servers.py``, any model, options passed
through as a server spec), Locust's command line and the scenarios of ``loadtests/``, the idle
crowd of ``tools/holdconns.py``, raw sockets for slow and resetting clients, ``/proc`` for the
server's memory and descriptors, and its stats endpoint. What it must not know: the server's
code; it talks to it over HTTP and watches it through ``/proc``.

Everything runs together for ``--duration`` seconds:

- Locust users (browsing, large downloads, ranges, revalidation, 404s) on a generated tree that
  never changes (``tools/docroot.py``; its manifest tells Locust what is there);
- an idle crowd of keep-alive connections (``holdconns``);
- slow clients (a head sent byte by byte, a large body read in small sips) and resetting clients
  (a download cut by an RST), checking that a complete body is the file;
- a churn thread that replaces (rename over), truncates, grows and renames the files of
  ``churn/``, remembering the SHA-256 of every content each file has had (:class:`Versions`);
- checker clients asking for the churned files without pause. A complete body must be one of
  the versions; a connection aborted before the announced length is fine (the server's promise
  for a file that shrinks under it). A complete body that is none of the versions (a mix) fails
  the run;
- with ``--pause`` (on by default for long runs), the whole server stopped by SIGSTOP at mid-run
  and continued by SIGCONT (:class:`Pause`).

Bodies *truncated under sendfile* are a known limit, counted apart and not a failure: a body of
the full announced length that is a version up to the page where that inode was later truncated
in place, and other bytes after it. ``sendfile`` hands the page cache's pages to the socket by
reference, so a truncation after the whole body was queued changes what leaves, and the server,
whose last ``sendfile`` has returned, cannot notice: the connection is not aborted, and the
client cannot tell. It never happens with ``--no-sendfile`` (the server sends copies), so with
that option such a body is a failed request.

The churn keeps each inode's history to "grows, then at most one truncation, then replaced":
a file grown again after a truncation could refill, while a response is being sent, the bytes
that response announced, with other content, and no server that sends from the file could tell.

Each second the sampler reads the server's RSS and descriptors (summed over its workers) and its
stats, from the load's start until the load has stopped and the clients have left. Figures (in
``soak.json`` and the summary printed at the end): requests served and failed by client, and the
server's own count; descriptors before the load (the idle server), under it (most are the idle
crowd's) and after it (load stopped, clients gone); the drift of RSS and descriptors from the
warm-up's end (the fifth minute, or a quarter of a shorter run) to the load's end; the pause's
recovery time and the client errors around it; the access log's lines lost (the server's stats)
and its lines counted against the responses the server counted (the soak gives the server an
access log in the results folder unless the spec names one, or ``--no-access-log``).

The verdict is PASS when no request failed, the server lived, its descriptors came back to their
count before the load, its RSS after the warm-up did not grow beyond
:data:`RSS_GROWTH_TOLERANCE`, every checker was answered again after the pause, and the access
log lost no line. Out: ``soak.json`` (verdict, reasons, figures, samples) and ``soak.png`` (when
matplotlib is installed) in ``--out``. Exit status 0 PASS, 1 FAIL, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import http.client
import importlib.util
import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``tools`` importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import docroot, servers

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCUSTFILE = os.path.join(PROJECT_DIR, "loadtests", "locustfile.py")
LOCUST_CONF = os.path.join(PROJECT_DIR, "loadtests", "locust.conf")
HOLDCONNS = os.path.join(PROJECT_DIR, "tools", "holdconns.py")
LOCUST_SCENARIOS = ("Browser", "Downloader", "ResumingDownloader", "Revalidator", "Prober")
"""The Locust user classes of the soak: every scenario that asks for files, none that idles
(the idle crowd is holdconns')."""

STATS_PATH = "/-/stats"
CHURN_FOLDER = "churn"
CHURN_SIZES = (4 * 1024, 48 * 1024, 300 * 1024, 2 * 1024 * 1024)
"""Sizes of the churned files: two served from the small-file cache, two by sendfile."""

CHURN_INTERVAL = 0.05
"""Seconds between two churn operations (each on one file, in turn)."""

GROW_BYTES = 16 * 1024
"""Bytes one grow appends (one write)."""

PAGE_SIZE = 4096
"""A write becomes visible page by page: every page-boundary prefix of a grow is a version."""

SAMPLE_INTERVAL = 1.0
"""Seconds between two samples of the server (RSS, descriptors, stats)."""

CLIENT_TIMEOUT = 30.0
"""Seconds a checker, slow or resetting client waits for the server before counting an error."""

WARMUP_FRACTION = 0.25
"""The first part of the run is not used for drift: caches fill, threads start..."""

WARMUP_MAX_SECONDS = 300.0
"""...but never more than five minutes of it (the note measures drift from the fifth minute)."""

DRIFT_WINDOW_SECONDS = 10.0
"""Each end of a drift is the median of the samples of this many seconds before it (or of half
the warm-up, if shorter): descriptors move by a few with every connection opened or closed."""

RSS_GROWTH_TOLERANCE = 0.25
"""RSS at the end may exceed the post-warm-up level by this fraction (plus the slack below)."""

RSS_GROWTH_SLACK_KIB = 16 * 1024
"""...and by this much: allocator noise and the small-file cache's last entries."""

FD_SLACK = 4
"""Descriptors the idle server may hold beyond its count before the load (log reopen, etc.)."""

SETTLE_SECONDS = 15.0
"""After the load, how long descriptors may take to come back (drain, idle closes)."""

SLOW_SIP = 2048
SLOW_SIP_PAUSE = 0.01
"""A slow client reads this many bytes, then waits this long: about 200 KB/s."""

SLOW_HEAD_PAUSE = 0.02
"""Seconds between two bytes of a slow client's head (well inside the header timeout)."""

MAX_STALL_SECONDS = 5.0
"""A checker answer slower than this is reported (not a failure: the machine may be loaded)."""

PROBLEMS_KEPT = 20
"""How many failed requests the record describes one by one (the first few say enough)."""

DEFAULT_PAUSE_SECONDS = 5.0
PAUSE_FROM_DURATION = 120.0
"""Without ``--pause``, runs this long or longer stop the server for the default pause."""

RECOVERY_LIMIT_SECONDS = CLIENT_TIMEOUT
"""After SIGCONT, how long every checker may take to be answered again before the run fails."""

RECOVERY_POLL_SECONDS = 0.005
"""How often the pause looks whether every checker has been answered again."""

PAUSE_AFTERMATH_SECONDS = 10.0
"""Client errors are counted from SIGSTOP until this long after SIGCONT."""

FINAL_QUIET_SECONDS = 2.0
"""After the load, time for the workers' counters to reach the fleet's board (each publishes
its own once a second) before the last stats are read."""

ACCESS_LOG_NAME = "access.log"
"""The access log the soak gives the server (in the run folder) unless told otherwise."""


# -- what the files were ------------------------------------------------------------------------


class Versions:
    """Every content a churned file has had, by SHA-256 (shared by the churn and the checkers)."""

    def __init__(self) -> None:
        self._digests: set[str] = set()
        self._truncated: dict[int, set[tuple[int, str]]] = {}
        """Length of a content whose inode was then truncated -> (intact bytes, their digest)."""
        self._lock = threading.Lock()

    def add(self, content: bytes) -> None:
        digest = hashlib.sha256(content).hexdigest()
        with self._lock:
            self._digests.add(digest)

    def add_truncation(self, content: bytes, cut: int) -> None:
        """``content``, the file's inode, is cut at ``cut``: a response of ``content`` wholly
        queued by ``sendfile`` before the cut may carry, from the cut's page on, bytes the file
        never held (the socket holds the page cache's pages by reference, and truncation frees
        them). Remembered as the length and the digest of the part before that page."""
        intact = cut // PAGE_SIZE * PAGE_SIZE
        if intact >= len(content):
            return
        digest = hashlib.sha256(content[:intact]).hexdigest()
        with self._lock:
            self._truncated.setdefault(len(content), set()).add((intact, digest))

    def add_grow(self, old: bytes, appended: bytes) -> None:
        """The old content, the new, and every page-boundary prefix in between."""
        self.add(old + appended)
        boundary = (len(old) // PAGE_SIZE + 1) * PAGE_SIZE
        while boundary < len(old) + len(appended):
            self.add((old + appended)[:boundary])
            boundary += PAGE_SIZE

    def known(self, body: bytes) -> bool:
        digest = hashlib.sha256(body).hexdigest()
        with self._lock:
            return digest in self._digests

    def truncated_under_sendfile(self, body: bytes) -> bool:
        """``body`` is a content of a truncated inode up to the truncation's page, and then
        anything (see :meth:`add_truncation`)."""
        with self._lock:
            candidates = list(self._truncated.get(len(body), ()))
        return any(hashlib.sha256(body[:intact]).hexdigest() == digest
                   for intact, digest in candidates)


def judge_body(body: bytes, announced: int, versions: Versions) -> str:
    """``"ok"`` (complete, a version), ``"aborted"`` (shorter than announced),
    ``"truncated under sendfile"`` (see :meth:`Versions.add_truncation`) or ``"mix"``."""
    if len(body) < announced:
        return "aborted"
    if versions.known(body):
        return "ok"
    return "truncated under sendfile" if versions.truncated_under_sendfile(body) else "mix"


# -- the churn -----------------------------------------------------------------------------------


class Churn:
    """Changes the files of ``churn/`` one operation at a time until stopped."""

    def __init__(self, folder: str, versions: Versions, seed: int) -> None:
        self.folder = folder
        self.versions = versions
        self.random = random.Random(seed)
        self.operations: Counter[str] = Counter()
        self.paths = [os.path.join(folder, f"f{n}.bin") for n in range(len(CHURN_SIZES))]
        self.truncated = [False] * len(self.paths)
        """This file's inode was truncated: it is replaced before it may grow again."""
        self.inode_contents: list[list[bytes]] = [[] for _ in self.paths]
        """Every content of each file's current inode (a truncation may zero a page of any)."""
        for index, size in enumerate(CHURN_SIZES):
            self._replace(index, size)

    def _content(self, size: int) -> bytes:
        return self.random.randbytes(size)

    def _replace(self, index: int, size: int) -> None:
        content = self._content(size)
        self.versions.add(content)
        temporary = self.paths[index] + ".new"
        with open(temporary, "wb") as out:
            out.write(content)
        os.replace(temporary, self.paths[index])
        self.truncated[index] = False
        self.inode_contents[index] = [content]

    def step(self, index: int) -> None:
        path = self.paths[index]
        choices = ["replace", "rename", "truncate"] + ([] if self.truncated[index] else ["grow"])
        operation = self.random.choice(choices)
        if operation == "replace":
            self._replace(index, CHURN_SIZES[index])
        elif operation == "rename":  # gone for a moment (404), then back, the same inode
            os.rename(path, path + ".away")
            os.rename(path + ".away", path)
        elif operation == "truncate":
            with open(path, "r+b") as file:
                old = file.read()
                cut = self.random.randrange(len(old) // 4, len(old) // 2 + 1)
                self.versions.add(old[:cut])
                for content in self.inode_contents[index]:
                    self.versions.add_truncation(content, cut)
                file.truncate(cut)
            self.inode_contents[index].append(old[:cut])
            self.truncated[index] = True
        else:
            appended = self._content(GROW_BYTES)
            with open(path, "r+b") as file:
                old = file.read()
                self.versions.add_grow(old, appended)
                file.write(appended)  # one write, at the end (the file position after read)
            self.inode_contents[index].append(old + appended)
        self.operations[operation] += 1

    def run(self, stop: threading.Event) -> None:
        index = 0
        while not stop.wait(CHURN_INTERVAL):
            self.step(index)
            index = (index + 1) % len(self.paths)


# -- clients -------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the soak's own clients saw, by kind; ``problems`` make the verdict FAIL."""

    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    stalls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def problem(self, client: str, text: str) -> None:
        """A request of ``client`` (checker, slow, resetting) failed; ``text`` says how."""
        with self.lock:
            self.counts["problems"] += 1
            self.counts[f"{client} errors"] += 1
            if len(self.problems) < PROBLEMS_KEPT:
                self.problems.append(text)

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)


def checker(port: int, paths: list[str], versions: Versions, tally: Tally,
            stop: threading.Event, seed: int, sendfile: bool = True,
            answered: Callable[[], None] = lambda: None) -> None:
    """Ask for churned files on a keep-alive connection without pause; judge every body.
    ``answered`` is called after each answer that is right (a whole version, or a 404)."""
    chooser = random.Random(seed)
    connection: http.client.HTTPConnection | None = None
    while not stop.is_set():
        path = chooser.choice(paths)
        if connection is None:
            connection = http.client.HTTPConnection(servers.HOST, port, timeout=CLIENT_TIMEOUT)
        started = time.monotonic()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            announced = int(response.getheader("Content-Length", "-1"))
            try:
                body = response.read()
            except http.client.IncompleteRead as short:
                body = short.partial
        except (ConnectionError, http.client.RemoteDisconnected):
            tally.count("reconnects")  # a keep-alive close crossed our request, or an abort
            connection.close()
            connection = None
            continue
        except (OSError, http.client.HTTPException, ValueError) as error:
            tally.problem("checker", f"checker GET {path}: {type(error).__name__}: {error}")
            connection.close()
            connection = None
            continue
        if time.monotonic() - started > MAX_STALL_SECONDS:
            tally.stalls += 1
        if response.status == 404:
            tally.count("checker 404 (renamed away)")
            answered()
        elif response.status != 200:
            tally.problem("checker", f"checker GET {path}: status {response.status}")
        else:
            verdict = judge_body(body, announced, versions)
            tally.count(f"checker {verdict}")
            if verdict == "mix" or (verdict == "truncated under sendfile" and not sendfile):
                tally.problem("checker", f"checker GET {path}: a complete body of {len(body)} "
                              "bytes that the file never held")
            elif verdict != "aborted":
                answered()
        if response.will_close or len(body) < announced:
            connection.close()
            connection = None
    if connection is not None:
        connection.close()


def _read_response(sock: socket.socket, sip: int, pause: float) -> tuple[int, int, bytes]:
    """Status, announced length and body of one response, read ``sip`` bytes at a time."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(sip)
        if not chunk:
            raise ConnectionError("closed before the head's end")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    announced = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            announced = int(value)
    while len(body) < announced:
        chunk = sock.recv(min(sip, announced - len(body)))
        if not chunk:
            break
        body += chunk
        if pause:
            time.sleep(pause)  # the slowness is the point
    return status, announced, body


def slow_client(port: int, path: str, expected: str, tally: Tally,
                stop: threading.Event) -> None:
    """A head sent byte by byte, a large body read in sips: it must arrive whole."""
    request = f"GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode()
    while not stop.is_set():
        try:
            with socket.create_connection((servers.HOST, port), timeout=CLIENT_TIMEOUT) as sock:
                for byte in request:
                    sock.sendall(bytes([byte]))
                    time.sleep(SLOW_HEAD_PAUSE)
                status, announced, body = _read_response(sock, SLOW_SIP, SLOW_SIP_PAUSE)
        except OSError as error:
            tally.problem("slow", f"slow GET {path}: {type(error).__name__}: {error}")
            continue
        if status != 200 or len(body) != announced or \
                hashlib.sha256(body).hexdigest() != expected:
            tally.problem("slow", f"slow GET {path}: status {status}, {len(body)} of "
                                  f"{announced} bytes")
        else:
            tally.count("slow ok")


def resetting_client(port: int, path: str, tally: Tally, stop: threading.Event) -> None:
    """Ask for a large file, read a little of it, then reset the connection (SO_LINGER 0)."""
    request = f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode()
    while not stop.wait(0.02):
        try:
            with socket.create_connection((servers.HOST, port), timeout=CLIENT_TIMEOUT) as sock:
                sock.sendall(request)
                sock.recv(16 * 1024)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError as error:
            tally.problem("resetting", f"resetting GET {path}: {type(error).__name__}: "
                                       f"{error}")
            continue
        tally.count("resets")


# -- watching the server ---------------------------------------------------------------------------


def _family(pid: int) -> list[int]:
    """The server and its worker processes (children)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [pid, *(int(child) for child in children.read().split())]
    except OSError:
        return [pid]


def rss_kib(pid: int) -> int:
    total = 0
    for member in _family(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def open_fds(pid: int) -> int:
    total = 0
    for member in _family(pid):
        try:
            total += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            continue
    return total


def sample(server: servers.RunningServer, started: float) -> dict[str, Any]:
    record: dict[str, Any] = {"t": round(time.monotonic() - started, 3),
                              "rss_kib": rss_kib(server.pid), "fds": open_fds(server.pid)}
    try:
        assert server.stats_url is not None
        with urllib.request.urlopen(server.stats_url, timeout=CLIENT_TIMEOUT) as answer:
            stats = json.load(answer)
        record["stats"] = {key: stats.get(key) for key in
                           ("requests", "connections_open", "responses", "timeouts",
                            "access_log")}
    except (OSError, ValueError) as error:
        record["stats_error"] = f"{type(error).__name__}: {error}"
    return record


def sampler(server: servers.RunningServer, started: float, samples: list[dict[str, Any]],
            stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_INTERVAL):
        samples.append(sample(server, started))


# -- the pause -----------------------------------------------------------------------------------


class Pause:
    """The whole server stopped with SIGSTOP under load, continued with SIGCONT, and what the
    soak's own clients saw.

    The server leads its own process group (``servers.start``), so one ``killpg`` stops its
    master and every worker at once. Recovery is the time from SIGCONT until every checker has
    had a right answer again (the request the pause held, or a later one). Errors are the failed
    requests of the soak's clients from SIGSTOP until :data:`PAUSE_AFTERMATH_SECONDS` after
    SIGCONT: each waits :data:`CLIENT_TIMEOUT`, longer than a pause, so a pause must cost them
    time and nothing else.
    """

    def __init__(self, group: int, seconds: float, at: float, checkers: int,
                 tally: Tally) -> None:
        self.group, self.seconds, self.at = group, seconds, at
        self.checkers, self.tally = checkers, tally
        self.resumed: float | None = None
        self.first_answers: dict[int, float] = {}
        """Checker -> when it was first answered after SIGCONT."""
        self.report: dict[str, Any] = {"seconds": seconds, "at": round(at, 3)}

    def answered(self, checker: int) -> None:
        """Checker number ``checker`` has had a right answer (called after each one)."""
        if self.resumed is not None and checker not in self.first_answers:
            self.first_answers[checker] = time.monotonic()

    def run(self, started: float, stop: threading.Event) -> None:
        if stop.wait(max(0.0, started + self.at - time.monotonic())):
            return
        before = self.tally.snapshot()
        try:
            os.killpg(self.group, signal.SIGSTOP)
        except ProcessLookupError:
            self.report["error"] = "the server was gone when it was to be stopped"
            return
        stopped = time.monotonic()
        try:
            stop.wait(self.seconds)
        finally:
            self.resumed = time.monotonic()  # nothing can be answered before the SIGCONT
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.group, signal.SIGCONT)
        deadline = self.resumed + RECOVERY_LIMIT_SECONDS
        while len(self.first_answers) < self.checkers and time.monotonic() < deadline \
                and not stop.is_set():
            time.sleep(RECOVERY_POLL_SECONDS)
        answers = dict(self.first_answers)
        stop.wait(max(0.0, self.resumed + PAUSE_AFTERMATH_SECONDS - time.monotonic()))
        after = self.tally.snapshot()
        everyone = bool(answers) and len(answers) == self.checkers
        self.report.update(
            stopped_at=round(stopped - started, 3), stopped_for=round(self.resumed - stopped, 3),
            checkers=self.checkers, checkers_answered_again=len(answers),
            recovery_seconds=round(max(answers.values()) - self.resumed, 3) if everyone
            else None,
            errors_counted_for=round(time.monotonic() - stopped, 3),
            client_errors=after["problems"] - before["problems"],
            reconnects=after["reconnects"] - before["reconnects"])


# -- the figures ---------------------------------------------------------------------------------


def warmup_seconds(duration: float) -> float:
    """When drift starts: the fifth minute's end, or a quarter of a shorter run."""
    return min(duration * WARMUP_FRACTION, WARMUP_MAX_SECONDS)


def _median_before(samples: list[dict[str, Any]], key: str, end: float,
                   window: float) -> int | None:
    values = [entry[key] for entry in samples if end - window < entry["t"] <= end]
    return statistics.median_low(values) if values else None


def drift(samples: list[dict[str, Any]], warmup: float, load_end: float) -> dict[str, Any] | None:
    """RSS (KiB) and descriptors at the warm-up's end and at the load's end, and the change;
    each end is the median of the samples of the window before it (see
    :data:`DRIFT_WINDOW_SECONDS`). None when the load did not outlast the warm-up by a window."""
    window = min(DRIFT_WINDOW_SECONDS, warmup / 2)
    if load_end - warmup < window:
        return None
    found: dict[str, Any] = {"from_seconds": round(warmup, 3), "to_seconds": round(load_end, 3),
                             "window_seconds": round(window, 3)}
    for key in ("rss_kib", "fds"):
        first = _median_before(samples, key, warmup, window)
        last = _median_before(samples, key, load_end, window)
        if first is None or last is None:
            return None
        found[key] = {"from": first, "to": last, "change": last - first}
    return found


def descriptors(before: int, samples: list[dict[str, Any]], load_end: float,
                after: int) -> dict[str, Any]:
    """Open descriptors (summed over the server's processes) in the three phases: the idle
    server before the load, under the load (the idle crowd holds most), and once the load
    has stopped and every client has left."""
    under = [entry["fds"] for entry in samples if entry["t"] <= load_end]
    return {"before_load": before,
            "under_load": {"min": min(under), "median": statistics.median_low(under),
                           "max": max(under)} if under else None,
            "after_load": after}


def served_and_failed(record: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Requests answered right and requests failed, by client. Served: Locust's requests
    without its failures; the checkers' whole bodies, bodies ended early by an abort (the
    promise for a file that shrinks), bodies truncated under sendfile when that is a known
    limit, and 404s; the slow clients' whole bodies; the idle crowd's first requests and
    refreshes. Failed: every request a client counted as failed (no answer, an error, a wrong
    status or body). The resetting clients' requests are neither: they cut them themselves."""
    counts, locust = record["clients"]["counts"], record["locust"]
    crowd = record.get("idle_crowd", {})
    checker_kinds = ["ok", "aborted", "404 (renamed away)"]
    if record["sendfile"]:
        checker_kinds.append("truncated under sendfile")
    return {
        "served": {"locust": locust.get("requests", 0) - locust.get("failures", 0),
                   "checkers": sum(counts.get(f"checker {kind}", 0) for kind in checker_kinds),
                   "slow": counts.get("slow ok", 0),
                   "idle crowd": crowd.get("held", 0) + crowd.get("refreshes", 0)},
        "failed": {"locust": locust.get("failures", 0),
                   "checkers": counts.get("checker errors", 0),
                   "slow": counts.get("slow errors", 0),
                   "resetting": counts.get("resetting errors", 0),
                   "idle crowd": crowd.get("failed", 0)},
        "reset by the client": {"resetting": counts.get("resets", 0)},
    }


# -- the verdict ---------------------------------------------------------------------------------


def verdict(record: dict[str, Any]) -> list[str]:
    """The reasons for FAIL (empty: PASS). Bodies truncated under sendfile are not one: they
    are a known limit of sendfile, counted apart (with ``--no-sendfile`` the checkers count
    them as failed requests)."""
    reasons: list[str] = []
    if record["server_died"]:
        reasons.append("the server exited during the soak")
    if record["server_exit"] not in (0, None):
        reasons.append(f"the server's exit status on SIGTERM was {record['server_exit']}")
    reasons += record["clients"]["problems"]
    locust = record["locust"]
    if locust.get("failures"):
        reasons.append(f"Locust counted {locust['failures']} failed requests")
    if locust.get("error"):
        reasons.append(locust["error"])
    crowd_failed = record.get("idle_crowd", {}).get("failed")
    if crowd_failed:
        reasons.append(f"{crowd_failed} connections of the idle crowd failed")
    missed = sum(1 for entry in record["samples"] if "stats_error" in entry)
    if missed:
        reasons.append(f"the stats endpoint did not answer {missed} sample(s)")
    moved = record.get("drift")
    if moved:
        first, last = moved["rss_kib"]["from"], moved["rss_kib"]["to"]
        if last > first * (1 + RSS_GROWTH_TOLERANCE) + RSS_GROWTH_SLACK_KIB:
            reasons.append(f"RSS grew from {first} KiB after the warm-up to {last} KiB")
    fds = record["descriptors"]
    if fds["after_load"] > fds["before_load"] + FD_SLACK:
        reasons.append(f"descriptors: {fds['before_load']} before the load, "
                       f"{fds['after_load']} after it")
    if not record["clients"]["counts"].get("checker ok"):
        reasons.append("no checker request was answered whole")
    pause = record.get("pause")
    if pause:
        if pause.get("error"):
            reasons.append(f"pause: {pause['error']}")
        elif pause.get("checkers") and pause.get("recovery_seconds") is None:
            reasons.append(f"after SIGCONT, {pause.get('checkers_answered_again', 0)} of "
                           f"{pause['checkers']} checkers were answered again within "
                           f"{RECOVERY_LIMIT_SECONDS:g} s")
    lost = record["access_log"].get("lines_lost")
    if lost:
        reasons.append(f"the access log lost {lost} lines (the disk was never full)")
    return reasons


# -- the plot ------------------------------------------------------------------------------------


def plot(record: dict[str, Any], path: str) -> bool:
    """RSS and descriptors over time, both from zero, with the warm-up's end, the pause and the
    load's end marked and the drift written on; False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return False
    samples = record["samples"]
    times = [entry["t"] for entry in samples]
    rss = [entry["rss_kib"] / 1024 for entry in samples]
    fds = [entry["fds"] for entry in samples]
    figure, (memory, descriptors_axes) = pyplot.subplots(2, 1, sharex=True, figsize=(9, 6))
    memory.plot(times, rss, color="tab:blue")
    memory.set_ylim(0, max(rss, default=1) * 1.3)
    memory.set_ylabel("RSS (MiB, all processes)")
    descriptors_axes.plot(times, fds, color="tab:green")
    descriptors_axes.set_ylim(0, max(fds, default=1) * 1.3)
    descriptors_axes.set_ylabel("open descriptors")
    descriptors_axes.set_xlabel("seconds since the load started")
    pause, moved = record.get("pause") or {}, record.get("drift")
    for axes in (memory, descriptors_axes):
        if moved:
            axes.axvline(moved["from_seconds"], color="grey", linestyle="--")
        if "stopped_at" in pause:
            axes.axvspan(pause["stopped_at"], pause["stopped_at"] + pause["stopped_for"],
                         color="tab:red", alpha=0.3)
        axes.axvline(record["load_seconds"], color="black", linestyle=":")
    top = memory.get_xaxis_transform()
    if moved:
        memory.text(moved["from_seconds"], 1.01, " warm-up end", transform=top, fontsize=8)
    if "stopped_at" in pause:
        memory.text(pause["stopped_at"], 1.01, f" SIGSTOP {pause['seconds']:g} s",
                    transform=top, fontsize=8, color="tab:red")
    memory.text(record["load_seconds"], 1.01, "load stopped ", transform=top, fontsize=8,
                ha="right")
    if moved:
        for axes, key, scale in ((memory, "rss_kib", 1024), (descriptors_axes, "fds", 1)):
            ends = moved[key]
            axes.plot([moved["from_seconds"], moved["to_seconds"]],
                      [ends["from"] / scale, ends["to"] / scale], "o", color="tab:orange")
        memory.text(0.01, 0.06, f"drift from warm-up end to load end: "
                    f"{moved['rss_kib']['change']:+,} KiB ({moved['rss_kib']['from']:,} -> "
                    f"{moved['rss_kib']['to']:,} KiB; orange dots, medians of "
                    f"{moved['window_seconds']:g} s)", transform=memory.transAxes, fontsize=8)
    phases = record["descriptors"]
    descriptors_axes.plot([0, record["after_load"]["t"]],
                          [phases["before_load"], phases["after_load"]], "s", color="grey")
    under = phases["under_load"] or {"median": "-"}
    descriptors_axes.text(
        0.01, 0.06, f"{phases['before_load']} before the load, median {under['median']} under "
        f"it, {phases['after_load']} after it stopped and the clients left (grey squares)"
        + (f"; drift {moved['fds']['change']:+}" if moved else ""),
        transform=descriptors_axes.transAxes, fontsize=8)
    figure.suptitle(f"evserver soak: {record['server']}, {record['duration']:g} s: "
                    f"{record.get('verdict', '')}")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return True


# -- the run -------------------------------------------------------------------------------------


def _locust(server: servers.RunningServer, args: argparse.Namespace, rundir: str,
            ) -> subprocess.Popen[bytes] | None:
    if importlib.util.find_spec("locust") is None:  # never imported here: it patches threads
        return None
    prefix = os.path.join(rundir, "locust")
    argv = [sys.executable, "-m", "locust", "--config", LOCUST_CONF, "-f", LOCUSTFILE,
            "-H", server.url("").rstrip("/"), "-u", str(args.users), "-r", str(args.users),
            "-t", f"{args.duration:g}s", "--csv", prefix, *LOCUST_SCENARIOS]
    with open(prefix + ".log", "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=rundir)


def _locust_counts(rundir: str) -> dict[str, Any]:
    """Locust's totals from its ``--csv`` statistics (``<prefix>_stats.csv``, row Aggregated)."""
    path = os.path.join(rundir, "locust_stats.csv")
    try:
        with open(path, newline="") as stats:
            for row in csv.DictReader(stats):
                if row["Name"] == "Aggregated":
                    return {"requests": int(row["Request Count"]),
                            "failures": int(row["Failure Count"])}
    except (OSError, KeyError, ValueError) as error:
        return {"error": f"Locust's statistics could not be read ({error}; see locust.log)"}
    return {"error": f"Locust's statistics have no Aggregated row ({path}; see locust.log)"}


def _holdconns(server: servers.RunningServer, count: int,
               duration: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, HOLDCONNS, servers.HOST, str(server.port), "-n",
                             str(count), "--path", "/index.html", "--hold", f"{duration:g}",
                             "--until-stdin-eof"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def access_log_file(spec: servers.ServerSpec) -> str | None:
    """The file the spec's ``--access-log`` names (absolute: the server starts in this folder);
    None when it names none or standard error."""
    words = spec.extra_args
    for index, word in enumerate(words):
        if word.startswith("--access-log="):
            value = word.split("=", 1)[1]
        elif word == "--access-log" and index + 1 < len(words):
            value = words[index + 1]
        else:
            continue
        return None if value == "-" else os.path.abspath(value)
    return None


def with_access_log(spec: servers.ServerSpec, rundir: str) -> servers.ServerSpec:
    """``spec`` with an access log in the run folder, unless it names one itself."""
    if any(word == "--access-log" or word.startswith("--access-log=")
           for word in spec.extra_args):
        return spec
    return replace(spec, extra_args=(*spec.extra_args, "--access-log",
                                     os.path.join(rundir, ACCESS_LOG_NAME)))


def count_lines(path: str) -> int:
    lines = 0
    with open(path, "rb") as log:
        while chunk := log.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


@dataclass
class Site:
    """The served tree: a generated part that never changes, and the churned files."""

    root: str
    big_path: str
    """The largest generated file (for the slow and resetting clients)..."""
    big_digest: str
    """...and its SHA-256."""
    versions: Versions
    churn: Churn
    churn_paths: list[str]


def make_site(rundir: str, seed: int) -> Site:
    root = os.path.join(rundir, "site")
    manifest = docroot.generate(root, seed=seed, profile_name="quick")
    big = max(manifest["files"], key=lambda entry: entry["size"])
    with open(root + big["path"], "rb") as big_file:
        big_digest = hashlib.sha256(big_file.read()).hexdigest()
    churn_folder = os.path.join(root, CHURN_FOLDER)
    os.makedirs(churn_folder, exist_ok=True)
    versions = Versions()
    churn = Churn(churn_folder, versions, seed)
    return Site(root, big["path"], big_digest, versions, churn,
                [f"/{CHURN_FOLDER}/{os.path.basename(path)}" for path in churn.paths])


def client_threads(args: argparse.Namespace, port: int, site: Site, tally: Tally,
                   stop: threading.Event, sendfile: bool,
                   pause: Pause | None) -> list[threading.Thread]:
    """The churn and the soak's own clients, not started."""
    threads = [threading.Thread(target=site.churn.run, args=(stop,), name="churn")]
    for n in range(args.checkers):
        answered = functools.partial(pause.answered, n) if pause else lambda: None
        threads.append(threading.Thread(
            target=checker, name=f"checker-{n}",
            args=(port, site.churn_paths, site.versions, tally, stop, args.seed + n, sendfile,
                  answered)))
    threads += [threading.Thread(target=slow_client, name=f"slow-{n}",
                                 args=(port, site.big_path, site.big_digest, tally, stop))
                for n in range(args.slow)]
    threads += [threading.Thread(target=resetting_client, name=f"reset-{n}",
                                 args=(port, site.big_path, tally, stop))
                for n in range(args.resetters)]
    return threads


def soak(args: argparse.Namespace, spec: servers.ServerSpec, rundir: str) -> dict[str, Any]:
    """Run the whole mix for ``args.duration`` seconds and return the record (no verdict)."""
    site = make_site(rundir, args.seed)
    if not args.no_access_log:
        spec = with_access_log(spec, rundir)
    sendfile = "--no-sendfile" not in spec.extra_args
    server = servers.start(spec, site.root, rundir, None, stats_path=STATS_PATH)
    record: dict[str, Any] = {"server": spec.text or spec.label, "argv": server.argv,
                              "duration": args.duration, "sendfile": sendfile,
                              "server_died": False, "server_exit": None, "samples": []}
    stop, sampling, tally = threading.Event(), threading.Event(), Tally()
    fds_before = open_fds(server.pid)
    started = time.monotonic()
    pause = Pause(server.pid, args.pause, args.duration / 2, args.checkers, tally) \
        if args.pause else None
    threads = client_threads(args, server.port, site, tally, stop, sendfile, pause)
    if pause:
        threads.append(threading.Thread(target=pause.run, args=(started, stop), name="pause"))
    watcher = threading.Thread(target=sampler, name="sampler",
                               args=(server, started, record["samples"], sampling))
    watcher.start()
    locust = _locust(server, args, rundir)
    crowd = _holdconns(server, args.idle, args.duration) if args.idle else None
    try:
        for thread in threads:
            thread.start()
        deadline = started + args.duration
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                record["server_died"] = True
                break
            time.sleep(min(SAMPLE_INTERVAL, max(0.0, deadline - time.monotonic())))
    finally:
        stop.set()
        record["load_seconds"] = round(time.monotonic() - started, 3)
        for thread in threads:
            thread.join(CLIENT_TIMEOUT)
        record["locust"] = _end_locust(locust, rundir)
        if crowd is not None:
            out, _ = crowd.communicate(timeout=CLIENT_TIMEOUT)  # closes its stdin: it stops
            lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
            record["idle_crowd"] = lines[-1] if lines else {}
        fds_after = _settle(server, fds_before)
        sampling.set()
        watcher.join(CLIENT_TIMEOUT)
        record["after_load"] = sample(server, started)  # the server's last counters
        if server.process.poll() is not None:
            record["server_died"] = True
        record["server_exit"] = server.stop()
    record["descriptors"] = descriptors(fds_before, record["samples"], record["load_seconds"],
                                        fds_after)
    record["drift"] = drift(record["samples"], warmup_seconds(args.duration),
                            record["load_seconds"])
    record["pause"] = pause.report if pause else None
    record["access_log"] = _access_log_figures(access_log_file(spec), record["after_load"])
    record["churn"] = dict(site.churn.operations)
    record["clients"] = {"counts": dict(tally.counts), "problems": tally.problems,
                         "stalls": tally.stalls}
    record["requests"] = served_and_failed(record)
    return record


def _end_locust(locust: subprocess.Popen[bytes] | None, rundir: str) -> dict[str, Any]:
    """Wait for Locust to end its run (it stops itself) and read its totals."""
    if locust is None:
        return {"skipped": "Locust is not installed"}
    try:
        locust.wait(CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        locust.kill()
        locust.wait()
    return _locust_counts(rundir)


def _settle(server: servers.RunningServer, fds_before: int) -> int:
    """The server's descriptors once the load has stopped and the clients have left: waited for
    until they are back near their count before the load (or :data:`SETTLE_SECONDS`), then
    :data:`FINAL_QUIET_SECONDS` more so that the last stats are complete."""
    settle = time.monotonic() + SETTLE_SECONDS
    while open_fds(server.pid) > fds_before + FD_SLACK and time.monotonic() < settle:
        time.sleep(SAMPLE_INTERVAL / 4)
    time.sleep(FINAL_QUIET_SECONDS)
    return open_fds(server.pid)


def _access_log_figures(path: str | None, last: dict[str, Any]) -> dict[str, Any]:
    """Lines lost (the server's own count) and, when the log is a file the soak can read, its
    lines against the responses the server counted. Read once the server has stopped (it
    writes what it buffered on SIGTERM); the last stats answer was counted before it was sent
    and logged after, so a log that lost nothing has one line more than it says."""
    stats = last.get("stats") or {}
    figures: dict[str, Any] = {"file": path,
                               "lines_lost": (stats.get("access_log") or {}).get("lines_lost"),
                               "responses_counted": stats.get("requests")}
    if path is None:
        figures["lines"] = None
    else:
        try:
            figures["lines"] = count_lines(path)
        except OSError as error:
            figures["lines"] = None
            figures["error"] = f"{type(error).__name__}: {error}"
    if figures["lines"] is not None and figures["responses_counted"] is not None:
        figures["lines_minus_responses"] = figures["lines"] - figures["responses_counted"]
    return figures


def summary(record: dict[str, Any], rundir: str, drew: bool) -> list[str]:
    """The lines printed at the end: every figure the note asks for, each said for what it is."""
    counts = record["clients"]["counts"]
    requests = record["requests"]
    served, failed = requests["served"], requests["failed"]
    server_count = (record["after_load"].get("stats") or {}).get("requests")
    lines = [f"soak {record['server']}, {record['duration']:g} s: {record['verdict']}",
             f"  requests served: {sum(served.values()):,} ("
             + ", ".join(f"{name} {count:,}" for name, count in served.items()) + ")",
             f"  requests failed: {sum(failed.values()):,} ("
             + ", ".join(f"{name} {count:,}" for name, count in failed.items()) + ")",
             f"  also {requests['reset by the client']['resetting']:,} requests cut by the "
             f"resetting clients; the server counted {_number(server_count)} responses in all",
             f"  checker bodies: {counts.get('checker ok', 0):,} whole, "
             f"{counts.get('checker aborted', 0):,} aborted (the file shrank: the connection "
             f"ended before the announced length), {counts.get('checker 404 (renamed away)', 0):,}"
             f" 404 (renamed away), {counts.get('checker mix', 0):,} mixed",
             "  churn: " + ", ".join(f"{count:,} {operation}"
                                     for operation, count in record["churn"].items())]
    truncated = counts.get("checker truncated under sendfile", 0)
    if record["sendfile"]:
        lines += [f"  truncated under sendfile: {truncated:,} -- a known limit, counted apart, "
                  "not a failure:",
                  "    a body of the full announced length whose bytes from a truncation's page "
                  "on are not any",
                  "    version of the file (truncated in place after sendfile had queued its "
                  "pages); the connection",
                  "    is not aborted, so the client cannot tell; never with --no-sendfile"]
    else:
        lines.append(f"  truncated under sendfile: {truncated:,} (with --no-sendfile each is a "
                     "failed request)")
    lines += _memory_lines(record)
    lines += _pause_and_log_lines(record)
    for reason in record["reasons"]:
        lines.append(f"  FAIL: {reason}")
    lines.append(f"  results: {rundir}/soak.json" + (f", {rundir}/soak.png" if drew else ""))
    return lines


def _number(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _memory_lines(record: dict[str, Any]) -> list[str]:
    fds, moved = record["descriptors"], record["drift"]
    under = fds["under_load"]
    lines = [f"  descriptors: {fds['before_load']} before the load (idle server), "
             + (f"{under['min']}-{under['max']} under it (median {under['median']}), "
                if under else "")
             + f"{fds['after_load']} after it stopped and the clients left"]
    if moved is None:
        lines.append("  drift: none measured (the load did not outlast the warm-up)")
        return lines
    rss, descriptors_moved = moved["rss_kib"], moved["fds"]
    lines.append(
        f"  drift from the warm-up's end ({moved['from_seconds']:g} s) to the load's end "
        f"({moved['to_seconds']:g} s), medians of {moved['window_seconds']:g} s: RSS "
        f"{rss['from']:,} -> {rss['to']:,} KiB ({rss['change']:+,} KiB), descriptors "
        f"{descriptors_moved['from']} -> {descriptors_moved['to']} "
        f"({descriptors_moved['change']:+})")
    return lines


def _pause_and_log_lines(record: dict[str, Any]) -> list[str]:
    lines = []
    pause = record["pause"]
    if pause is None:
        lines.append("  pause: none (--pause 0, or a run shorter than "
                     f"{PAUSE_FROM_DURATION:g} s without --pause)")
    elif "stopped_at" not in pause:
        lines.append(f"  pause: {pause.get('error', 'not made (the run ended first)')}")
    else:
        recovery = pause["recovery_seconds"]
        lines.append(
            f"  pause: SIGSTOP at {pause['stopped_at']:g} s for {pause['stopped_for']:g} s; "
            + (f"every checker answered again {recovery:g} s after SIGCONT"
               if recovery is not None else
               f"{pause['checkers_answered_again']} of {pause['checkers']} checkers answered "
               "again")
            + f"; {pause['client_errors']} client errors and {pause['reconnects']} reconnects "
            f"from SIGSTOP to {PAUSE_AFTERMATH_SECONDS:g} s after SIGCONT")
    log = record["access_log"]
    if log["file"] is None:
        lines.append(f"  access log: lines lost {_number(log['lines_lost'])} (the server's "
                     "stats); no file to count lines in")
    else:
        difference = log.get("lines_minus_responses")
        lines.append(
            f"  access log: lines lost {_number(log['lines_lost'])} (the server's stats); "
            f"{_number(log['lines'])} lines in {log['file']} for "
            f"{_number(log['responses_counted'])} responses in the server's last stats ("
            + ("?" if difference is None else f"{difference:+}")
            + "; +1 when no line is missing: that stats answer is logged after it counts; "
            "with --workers it may be more, since the other workers' counts are those of "
            "their last heartbeat)")
    return lines


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above zero: {text}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=_positive, default=60.0, help="seconds (default 60)")
    parser.add_argument("--server", default="evented",
                        help="a server spec: a model and evserver options, e.g. "
                             "'threaded --max-connections 64' (default: evented)")
    parser.add_argument("--out", help="folder for the results (default: a new temporary one)")
    parser.add_argument("--users", type=int, default=10, help="Locust users (default 10)")
    parser.add_argument("--idle", type=int, default=200, help="idle connections (default 200)")
    parser.add_argument("--checkers", type=int, default=4, help="checker clients (default 4)")
    parser.add_argument("--slow", type=int, default=2, help="slow clients (default 2)")
    parser.add_argument("--resetters", type=int, default=2, help="resetting clients (default 2)")
    parser.add_argument("--pause", type=_not_negative, metavar="SECONDS",
                        help="stop the server with SIGSTOP for this long at mid-run, then "
                             "SIGCONT, and measure the recovery; 0: no pause (default "
                             f"{DEFAULT_PAUSE_SECONDS:g} for runs of {PAUSE_FROM_DURATION:g} s "
                             "or more, else 0)")
    parser.add_argument("--no-access-log", action="store_true",
                        help="no access log (by default the server writes one to the results "
                             "folder, unless the server spec names one; a busy run writes "
                             "about 100 bytes a request)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for name in ("users", "idle", "checkers", "slow", "resetters"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must not be negative")
    if args.pause is None:
        args.pause = DEFAULT_PAUSE_SECONDS if args.duration >= PAUSE_FROM_DURATION else 0.0
    if args.pause >= args.duration / 2:
        parser.error(f"--pause {args.pause:g} must end before the run does: it starts at "
                     "mid-run")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # argparse exits with status 2 on bad arguments
    try:
        spec = servers.parse_spec(args.server)
    except servers.SpecError as error:
        print(f"soak: error: {error}", file=sys.stderr)
        return 2
    if spec.kind != "evserver":
        print(f"soak: error: the soak runs evserver, not {spec.kind}", file=sys.stderr)
        return 2
    # Absolute: Locust runs in the run folder, and a relative ``--csv`` prefix would put its
    # statistics one folder deeper than where they are read.
    rundir = os.path.abspath(args.out or tempfile.mkdtemp(prefix="evserver-soak-"))
    os.makedirs(rundir, exist_ok=True)
    spec = servers.label_specs([spec])[0]  # the server's log is named after its label
    record = soak(args, spec, rundir)
    reasons = verdict(record)
    record["verdict"] = "FAIL" if reasons else "PASS"
    record["reasons"] = reasons
    with open(os.path.join(rundir, "soak.json"), "w") as out:
        json.dump(record, out, indent=1)
    drew = plot(record, os.path.join(rundir, "soak.png"))
    print("\n".join(summary(record, rundir, drew)))
    return 1 if reasons else 0


if __name__ == "__main__":
    raise SystemExit(main())
