"""A constant-rate (open-loop) HTTP client: latency counted from each request's intended time.

What this module knows: non-blocking client sockets on one ``selectors`` loop, and just enough
HTTP/1.1 to send a GET and find the end of its response by ``Content-Length`` (RFC 9112 6.3).
What it must not know: which server it talks to.

Why it exists: a closed loop (``wrk``, Locust, ``ab``) sends a connection's next request only when
the last one is answered, so while a server stalls it stops asking, and the few requests that
waited are all the stall leaves in its figures (coordinated omission; Gil Tene's talk and wrk2's
README). wrk 4 estimates the missing requests afterwards: it back-fills its latency histogram as
if each connection had kept its average pace. This client keeps a schedule instead: request
``i`` is due at ``start + i / rate`` whatever happened before, and its latency is measured from
that due time, not from the moment it could be sent. A request that finds every connection
busy waits in a queue here, and the wait counts, as it would for a user.

Connections: with keep-alive (the default) up to ``--connections`` are opened as the queue needs
them and reused; with ``--close`` each request opens its own connection (``Connection: close``),
at most ``--connections`` at once. ``--closed-loop`` drops the schedule, for comparison: each
connection asks again as soon as it is answered, and latency counts from the send, as in a
closed-loop tool before any correction. Everything is bounded: ``rate * duration`` requests, each
given up after ``--timeout`` seconds (recorded as ``timeout``), and the whole run ends at most
``duration + timeout + END_GRACE`` seconds after it began.

Output (``--out FILE``, else standard output): a JSON list, one object per request: ``i``,
``intended`` (seconds from the start), ``latency_ms`` (answer minus intended time; None when
it failed), ``service_ms`` (answer minus the moment it was sent), ``status`` (the HTTP status,
or a word: ``timeout``, ``refused``, ``reset``, ``unsent``). A summary line goes to standard
error.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``tools`` importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools.holdconns import _content_length as content_length
from tools.holdconns import _persistent as persistent
from tools.holdconns import raise_fd_limit

RECV_SIZE = 65536

MAX_HEAD = 16 * 1024
"""A response head longer than this is a failure (a sane server sends well under 1 KiB)."""

LOOP_TICK = 0.01
"""Longest wait of the loop: the schedule is kept to about this precision (10 ms)."""

END_GRACE = 1.0
"""Seconds after the last request's timeout before the run ends whatever is left."""

MAX_REQUESTS = 1_000_000
"""At most this many requests in one run: a typo in --rate must not exhaust memory."""

MAX_START_DELAY = 60.0
"""A ``--start-at`` further ahead than this is ignored (the run starts at once)."""

FD_HEADROOM = 64
"""Descriptors kept free above the connection count for the selector and stdio."""


@dataclass
class _Request:
    index: int
    intended: float
    sent: float = 0.0


class _Conn:
    __slots__ = ("buffer", "busy", "connected", "deadline", "out", "request", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.connected = False
        self.busy = False
        self.request: _Request | None = None
        self.out = b""
        self.buffer = b""
        self.deadline = float("inf")


class OpenLoop:
    """One run: ``run()`` returns the records (see the module docstring)."""

    def __init__(self, host: str, port: int, path: str, rate: float, duration: float,
                 connections: int = 64, close: bool = False, timeout: float = 5.0,
                 start_at: float | None = None, closed_loop: bool = False) -> None:
        self.address = (host, port)
        self.rate = rate
        self.count = min(MAX_REQUESTS, int(rate * duration))
        self.duration = duration
        self.limit = max(1, connections)
        self.close = close
        self.timeout = timeout
        self.start_at = start_at
        self.closed_loop = closed_loop
        self.scheduled = 0
        """Requests made so far (the index of the next one)."""
        header = "Connection: close\r\n" if close else ""
        self.request_bytes = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                              f"User-Agent: evserver-openloop\r\n{header}\r\n").encode()
        self.selector = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.queue: collections.deque[_Request] = collections.deque()
        self.records: list[dict[str, Any]] = []
        self.start = 0.0
        raise_fd_limit(self.limit + FD_HEADROOM)

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        self.start = time.monotonic()
        if self.start_at is not None and self.start < self.start_at <= self.start + \
                MAX_START_DELAY:  # the caller's schedule: its clock is this one (see --start-at)
            time.sleep(self.start_at - self.start)
            self.start = self.start_at
        end = self.start + self.duration + self.timeout + END_GRACE
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                all_asked = self._ask_closed(now) if self.closed_loop else self._ask_due(now)
                self._dispatch(now)
                if all_asked and not self.queue and not any(
                        c.busy for c in self.conns.values()):
                    break
                next_due = (self.start + self.scheduled / self.rate
                            if not all_asked and not self.closed_loop else now + LOOP_TICK)
                wait = min(LOOP_TICK, max(0.0, next_due - time.monotonic()))
                for key, mask in self.selector.select(wait):
                    self._on_event(key.data, mask)
                self._expire(time.monotonic())
        finally:
            for request in self.queue:
                self._done(request, "unsent", None)
            for conn in list(self.conns.values()):
                if conn.request is not None:
                    self._done(conn.request, "unsent", None)
                self._drop(conn)
            self.selector.close()
        self.records.sort(key=lambda record: record["i"])
        return self.records

    def _ask_due(self, now: float) -> bool:
        """Open loop: queue every request whose time has come; True once all are asked."""
        while self.scheduled < self.count and self.start + self.scheduled / self.rate <= now:
            self.queue.append(_Request(self.scheduled, self.start + self.scheduled / self.rate))
            self.scheduled += 1
        return self.scheduled == self.count

    def _ask_closed(self, now: float) -> bool:
        """Closed loop: a new request for every connection without one, until the duration
        is over (its latency then counts from now, as a closed-loop tool counts it)."""
        if now >= self.start + self.duration or self.scheduled >= MAX_REQUESTS:
            return True
        idle = self.limit - len(self.queue) - sum(1 for c in self.conns.values() if c.busy)
        for _ in range(idle):
            self.queue.append(_Request(self.scheduled, now))
            self.scheduled += 1
        return False

    def _dispatch(self, now: float) -> None:
        """Give queued requests to idle connections, opening new ones up to the limit."""
        idle = [c for c in self.conns.values() if c.connected and not c.busy]
        while self.queue and idle:
            self._send(idle.pop(), self.queue.popleft(), now)
        waiting = sum(1 for c in self.conns.values() if not c.connected)
        while len(self.queue) > waiting and len(self.conns) < self.limit:
            if not self._connect():
                break
            waiting += 1

    def _connect(self) -> bool:
        sock = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code not in (0, 115):  # 115 = EINPROGRESS
            sock.close()
            if self.queue:
                self._done(self.queue.popleft(), "refused", None)
            return False
        conn = _Conn(sock)
        self.conns[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_WRITE, conn)
        return True

    def _send(self, conn: _Conn, request: _Request, now: float) -> None:
        conn.busy, conn.request, conn.buffer = True, request, b""
        request.sent = now
        conn.deadline = now + self.timeout
        conn.out = self.request_bytes
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._fail(conn, "reset")
            return
        conn.out = conn.out[sent:]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.out else 0)
        self.selector.modify(conn.sock, events, conn)

    def _on_event(self, conn: _Conn, mask: int) -> None:
        if conn.sock.fileno() not in self.conns:
            return
        if not conn.connected:
            if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._drop(conn)
                if self.queue:  # one request pays for each refusal: no reconnecting spin
                    self._done(self.queue.popleft(), "refused", None)
                return
            conn.connected = True
            if self.queue:
                self._send(conn, self.queue.popleft(), time.monotonic())
            else:
                self.selector.modify(conn.sock, selectors.EVENT_READ, conn)
            return
        if mask & selectors.EVENT_WRITE and conn.out:
            self._write(conn)
        if mask & selectors.EVENT_READ:
            self._read(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            self._fail(conn, "reset")
            return
        if not data:
            self._fail(conn, "reset")
            return
        if conn.request is None:
            self._drop(conn)  # bytes nobody asked for
            return
        conn.buffer += data
        end = conn.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buffer) > MAX_HEAD:
                self._fail(conn, "bad response")
            return
        head = conn.buffer[:end]
        if len(conn.buffer) - end - 4 < content_length(head):
            return
        status = int(head[9:12]) if head[9:12].isdigit() else 0
        request, conn.request, conn.busy = conn.request, None, False
        conn.deadline = float("inf")
        self._done(request, status, time.monotonic())
        if self.close or not persistent(head):
            self._drop(conn)
        elif self.queue:
            self._send(conn, self.queue.popleft(), time.monotonic())

    def _expire(self, now: float) -> None:
        for conn in [c for c in self.conns.values() if c.deadline <= now]:
            self._fail(conn, "timeout")

    def _fail(self, conn: _Conn, status: str) -> None:
        if conn.request is not None:
            self._done(conn.request, status, None)
            conn.request = None
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd in self.conns:
            self.selector.unregister(conn.sock)
            del self.conns[fd]
        conn.sock.close()

    def _done(self, request: _Request, status: int | str, finished: float | None) -> None:
        self.records.append({
            "i": request.index, "intended": round(request.intended - self.start, 6),
            "latency_ms": None if finished is None else
            round((finished - request.intended) * 1000, 3),
            "service_ms": None if finished is None or not request.sent else
            round((finished - request.sent) * 1000, 3),
            "status": status})


def summary(records: list[dict[str, Any]]) -> str:
    answered = sorted(r["latency_ms"] for r in records if r["latency_ms"] is not None)
    if not answered:
        return f"{len(records)} requests, none answered"

    def at(share: float) -> float:
        return float(answered[min(len(answered) - 1, int(share * len(answered)))])

    return (f"{len(records)} requests, {len(answered)} answered; latency from the intended "
            f"time: p50 {at(0.5):.2f} ms, p99 {at(0.99):.2f} ms, max {answered[-1]:.2f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A constant-rate (open-loop) HTTP client.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--path", default="/")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of schedule")
    parser.add_argument("--connections", type=int, default=64, help="at most this many open")
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    parser.add_argument("--closed-loop", action="store_true",
                        help="no schedule: each connection asks again as soon as it is "
                             "answered, for --duration, as wrk does (--rate is ignored); for "
                             "comparison with the open loop")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds after which an unanswered request counts as failed")
    parser.add_argument("--out", help="write the records here (default: standard output)")
    parser.add_argument("--start-at", type=float, metavar="T",
                        help="start the schedule at T, a reading of Python's time.monotonic() "
                             "(on Linux CLOCK_MONOTONIC, the same in every process), so a "
                             "caller knows when each request was due; default: at once")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error("--rate and --duration must be positive")
    records = OpenLoop(args.host, args.port, args.path, args.rate, args.duration,
                       args.connections, args.close, args.timeout, args.start_at,
                       args.closed_loop).run()
    text = json.dumps(records)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text)
    else:
        print(text)
    print(summary(records), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
