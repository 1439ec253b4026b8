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
  for a file that shrinks under it). A body that is a version up to a point where that inode
  was later truncated, and other bytes after it, is counted apart: ``sendfile`` hands the page
  cache's pages to the socket by reference, so a truncation after the whole body was queued can
  change what leaves (a documented limit, which ``--no-sendfile`` avoids: with that option such
  a body fails the run). A complete body that is none of these (a mix) fails the run.

The churn keeps each inode's history to "grows, then at most one truncation, then replaced":
a file grown again after a truncation could refill, while a response is being sent, the bytes
that response announced, with other content, and no server that sends from the file could tell.

Each second the sampler reads the server's RSS and descriptors (summed over its workers) and its
stats. The verdict is PASS when nothing failed, the server lived, its descriptors came back to
their count before the load, and its RSS after the warm-up did not grow beyond
:data:`RSS_GROWTH_TOLERANCE`. Out: ``soak.json`` (verdict, reasons, counts, samples) and
``soak.png`` (when matplotlib is installed) in ``--out``. Exit status 0 PASS, 1 FAIL, 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import http.client
import importlib.util
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
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

WARMUP_FRACTION = 0.2
"""The first part of the run is not used for RSS drift: caches fill, threads start."""

WARMUP_MAX_SECONDS = 300.0
"""...but never more than five minutes of it (the note measures drift from the fifth minute)."""

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

    def problem(self, text: str) -> None:
        with self.lock:
            self.counts["problems"] += 1
            if len(self.problems) < 20:  # the first few say enough
                self.problems.append(text)


def checker(port: int, paths: list[str], versions: Versions, tally: Tally,
            stop: threading.Event, seed: int, sendfile: bool = True) -> None:
    """Ask for churned files on a keep-alive connection without pause; judge every body."""
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
            tally.problem(f"checker GET {path}: {type(error).__name__}: {error}")
            connection.close()
            connection = None
            continue
        if time.monotonic() - started > MAX_STALL_SECONDS:
            tally.stalls += 1
        if response.status == 404:
            tally.count("checker 404 (renamed away)")
        elif response.status != 200:
            tally.problem(f"checker GET {path}: status {response.status}")
        else:
            verdict = judge_body(body, announced, versions)
            tally.count(f"checker {verdict}")
            if verdict == "mix" or (verdict == "truncated under sendfile" and not sendfile):
                tally.problem(f"checker GET {path}: a complete body of {len(body)} bytes that "
                              "the file never held")
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
            tally.problem(f"slow GET {path}: {type(error).__name__}: {error}")
            continue
        if status != 200 or len(body) != announced or \
                hashlib.sha256(body).hexdigest() != expected:
            tally.problem(f"slow GET {path}: status {status}, {len(body)} of {announced} bytes")
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
            tally.problem(f"resetting GET {path}: {type(error).__name__}: {error}")
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


# -- the verdict ---------------------------------------------------------------------------------


def rss_drift(samples: list[dict[str, Any]], duration: float) -> tuple[int, int] | None:
    """RSS (KiB) just after the warm-up and at the end, or None if the run was too short."""
    warmup = min(duration * WARMUP_FRACTION, WARMUP_MAX_SECONDS)
    after = [entry["rss_kib"] for entry in samples if entry["t"] >= warmup]
    if len(after) < 4:
        return None
    return after[0], after[-1]


def verdict(record: dict[str, Any]) -> list[str]:
    """The reasons for FAIL (empty: PASS)."""
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
    missed = sum(1 for entry in record["samples"] if "stats_error" in entry)
    if missed:
        reasons.append(f"the stats endpoint did not answer {missed} sample(s)")
    drift = record.get("rss_kib_after_warmup_and_end")
    if drift:
        first, last = drift
        if last > first * (1 + RSS_GROWTH_TOLERANCE) + RSS_GROWTH_SLACK_KIB:
            reasons.append(f"RSS grew from {first} KiB after the warm-up to {last} KiB")
    before, after = record["fds_before"], record["fds_after"]
    if after > before + FD_SLACK:
        reasons.append(f"descriptors: {before} before the load, {after} after it")
    if not record["clients"]["counts"].get("checker ok"):
        reasons.append("no checker request was answered whole")
    return reasons


def plot(samples: list[dict[str, Any]], path: str) -> bool:
    """RSS and descriptors over time; False when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        return False
    times = [entry["t"] for entry in samples]
    figure, (memory, descriptors) = pyplot.subplots(2, 1, sharex=True, figsize=(8, 5))
    memory.plot(times, [entry["rss_kib"] / 1024 for entry in samples])
    memory.set_ylabel("RSS (MiB)")
    descriptors.plot(times, [entry["fds"] for entry in samples])
    descriptors.set_ylabel("open descriptors")
    descriptors.set_xlabel("seconds")
    memory.set_title("evserver soak")
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


def soak(args: argparse.Namespace, spec: servers.ServerSpec, rundir: str) -> dict[str, Any]:
    site = os.path.join(rundir, "site")
    manifest = docroot.generate(site, seed=args.seed, profile_name="quick")
    big = max(manifest["files"], key=lambda entry: entry["size"])
    with open(site + big["path"], "rb") as big_file:
        big_digest = hashlib.sha256(big_file.read()).hexdigest()
    churn_folder = os.path.join(site, CHURN_FOLDER)
    os.makedirs(churn_folder, exist_ok=True)
    versions = Versions()
    churn = Churn(churn_folder, versions, args.seed)
    churn_paths = [f"/{CHURN_FOLDER}/{os.path.basename(path)}" for path in churn.paths]

    server = servers.start(spec, site, rundir, None, stats_path=STATS_PATH)
    record: dict[str, Any] = {"server": spec.text or spec.label, "argv": server.argv,
                              "duration": args.duration, "server_died": False,
                              "server_exit": None, "samples": []}
    stop, tally = threading.Event(), Tally()
    started = time.monotonic()
    record["fds_before"] = open_fds(server.pid)
    threads = [threading.Thread(target=churn.run, args=(stop,), name="churn"),
               threading.Thread(target=sampler, args=(server, started, record["samples"], stop),
                                name="sampler")]
    threads += [threading.Thread(target=checker, name=f"checker-{n}",
                                 args=(server.port, churn_paths, versions, tally, stop,
                                       args.seed + n, "--no-sendfile" not in spec.extra_args))
                for n in range(args.checkers)]
    threads += [threading.Thread(target=slow_client, name=f"slow-{n}",
                                 args=(server.port, big["path"], big_digest, tally, stop))
                for n in range(args.slow)]
    threads += [threading.Thread(target=resetting_client, name=f"reset-{n}",
                                 args=(server.port, big["path"], tally, stop))
                for n in range(args.resetters)]
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
        for thread in threads:
            thread.join(CLIENT_TIMEOUT)
        if locust is not None:
            try:
                locust.wait(CLIENT_TIMEOUT)
            except subprocess.TimeoutExpired:
                locust.kill()
                locust.wait()
        if crowd is not None:
            out, _ = crowd.communicate(timeout=CLIENT_TIMEOUT)  # closes its stdin: it stops
            lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
            record["idle_crowd"] = lines[-1] if lines else {}
        settle = time.monotonic() + SETTLE_SECONDS
        while open_fds(server.pid) > record["fds_before"] + FD_SLACK and \
                time.monotonic() < settle:
            time.sleep(SAMPLE_INTERVAL / 4)
        record["fds_after"] = open_fds(server.pid)
        if server.process.poll() is not None:
            record["server_died"] = True
        record["server_exit"] = server.stop()
    record["locust"] = _locust_counts(rundir) if locust is not None else \
        {"skipped": "Locust is not installed"}
    record["churn"] = dict(churn.operations)
    record["clients"] = {"counts": dict(tally.counts), "problems": tally.problems,
                         "stalls": tally.stalls}
    record["rss_kib_after_warmup_and_end"] = rss_drift(record["samples"], args.duration)
    return record


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above zero: {text}")
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
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for name in ("users", "idle", "checkers", "slow", "resetters"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must not be negative")
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
    drew = plot(record["samples"], os.path.join(rundir, "soak.png"))
    counts = record["clients"]["counts"]
    print(f"soak {record['server']}, {args.duration:g} s: {record['verdict']}")
    print(f"  checkers: {counts.get('checker ok', 0)} whole, {counts.get('checker aborted', 0)} "
          f"aborted, {counts.get('checker truncated under sendfile', 0)} truncated under sendfile, "
          f"{counts.get('checker mix', 0)} mixed; churn {record['churn']}")
    print(f"  locust: {record['locust']}; idle crowd: {record.get('idle_crowd', {})}")
    print(f"  RSS after warm-up and at the end (KiB): {record['rss_kib_after_warmup_and_end']}; "
          f"descriptors {record['fds_before']} -> {record['fds_after']}")
    for reason in reasons:
        print(f"  FAIL: {reason}")
    print(f"  results: {rundir}/soak.json" + (f", {rundir}/soak.png" if drew else ""))
    return 1 if reasons else 0


if __name__ == "__main__":
    raise SystemExit(main())
