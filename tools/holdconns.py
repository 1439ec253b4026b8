"""Open N keep-alive connections to a server, keep them alive, and report how many held.

What this module knows: non-blocking client sockets, just enough HTTP/1.1 to send a GET and
find the end of a response by its Content-Length (RFC 9112 section 6.3), and ``RLIMIT_NOFILE``.
What it must not know: which server it talks to or how that server is built.

A connection *holds* when it has received one complete response and the server has not closed
it. Everything runs on one ``selectors`` loop, so tens of thousands of connections cost a few
MiB here, not a thread each. Connects are started at most ``MAX_PENDING_CONNECTS`` at a time,
so the server's listen backlog is not overrun (an overrun costs a 1 s SYN retry and skews the
time to open).

Protocol on stdout when run as a program (one JSON object per line):
``{"event": "held", ...}`` once the opening phase is over (all held, or the open timeout hit),
then ``{"event": "done", ...}`` when the hold time is over, stdin reaches EOF, or SIGTERM
arrives. The runner reads the first line, measures the server, then stops the holder.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

MAX_PENDING_CONNECTS = 256
"""Connects in flight at once: a quarter of evserver's default backlog of 1024."""

FD_HEADROOM = 64
"""Descriptors kept free above N for the selector, stdio and the odd probe."""

LOOP_TICK = 0.25
"""Longest select() wait, so the stop flag and deadlines are noticed promptly."""

MAX_HEAD = 16 * 1024
"""A response head longer than this is treated as a failure (a sane server sends < 1 KiB)."""

RECV_SIZE = 65536

CONNECTING, WAITING, HELD = "connecting", "waiting", "held"


class _Conn:
    """One client connection: a socket, what is still to send, and the response being read."""

    __slots__ = ("body_left", "head", "outbox", "sock", "state")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = CONNECTING
        self.outbox = b""
        self.head = b""
        self.body_left = -1  # -1 while the head is incomplete


@dataclass
class HoldResult:
    requested: int
    held: int = 0
    failed: int = 0
    closed_by_server: int = 0
    refreshes: int = 0
    seconds_to_open: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


def raise_fd_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward ``needed`` (up to the hard limit); return the soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _content_length(head: bytes) -> int:
    """Content-Length of a response head, 0 when absent (then only 204/304 make sense here)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0


def _persistent(head: bytes) -> bool:
    """RFC 9112 section 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"."""
    lowered = head.lower()
    if b"\r\nconnection: close" in lowered:
        return False
    return head.startswith(b"HTTP/1.1") or b"\r\nconnection: keep-alive" in lowered


class Holder:
    """The holding loop. ``open_all()`` then ``hold(seconds)``; ``close()`` always."""

    def __init__(self, host: str, port: int, count: int, path: str = "/") -> None:
        self.address = (host, port)
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"User-Agent: evserver-holdconns\r\n\r\n").encode()
        self.result = HoldResult(requested=count)
        self.selector = selectors.DefaultSelector()
        self.conns: dict[int, _Conn] = {}
        self.stop_requested = False
        raise_fd_limit(count + FD_HEADROOM)

    def _error(self, name: str) -> None:
        self.result.errors[name] = self.result.errors.get(name, 0) + 1

    def _start_connect(self) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex(self.address)
        if code not in (0, 115):  # 115 = EINPROGRESS
            self._error(os.strerror(code))
            self.result.failed += 1
            sock.close()
            return
        conn = _Conn(sock)
        self.conns[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_WRITE, conn)

    def _drop(self, conn: _Conn, reason: str, by_server: bool = False) -> None:
        if conn.state == HELD:
            self.result.held -= 1
        if by_server:
            self.result.closed_by_server += 1
        else:
            self.result.failed += 1
        self._error(reason)
        self.selector.unregister(conn.sock)
        del self.conns[conn.sock.fileno()]
        conn.sock.close()

    def _send_request(self, conn: _Conn) -> None:
        conn.state, conn.head, conn.body_left = WAITING, b"", -1
        conn.outbox = self.request
        self._on_writable(conn)

    def _on_writable(self, conn: _Conn) -> None:
        if conn.state == CONNECTING:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                self._drop(conn, os.strerror(code))
                return
            self._send_request(conn)
            return
        try:
            sent = conn.sock.send(conn.outbox)
        except BlockingIOError:
            sent = 0
        except OSError as error:
            self._drop(conn, type(error).__name__)
            return
        conn.outbox = conn.outbox[sent:]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbox else 0)
        self.selector.modify(conn.sock, events, conn)

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            self._drop(conn, type(error).__name__, by_server=True)
            return
        if not data:
            self._drop(conn, "closed by server", by_server=True)
            return
        if conn.state != WAITING:
            self._drop(conn, "unexpected bytes")
            return
        if conn.body_left < 0:
            conn.head += data
            end = conn.head.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.head) > MAX_HEAD:
                    self._drop(conn, "response head too long")
                return
            head, data = conn.head[:end], conn.head[end + 4:]
            if not head.startswith(b"HTTP/1.") or head[9:10] != b"2":  # RFC 9112 4: status
                self._drop(conn, "status " + head[:12].decode("latin-1"))
                return
            if not _persistent(head):
                self._drop(conn, "server does not keep alive", by_server=True)
                return
            conn.body_left = _content_length(head)
        conn.body_left -= len(data)
        if conn.body_left <= 0:
            conn.state = HELD
            self.result.held += 1

    def _run_once(self, timeout: float) -> None:
        for key, mask in self.selector.select(timeout):
            conn = key.data
            if mask & selectors.EVENT_READ and conn.sock.fileno() in self.conns:
                self._on_readable(conn)
            if mask & selectors.EVENT_WRITE and conn.sock.fileno() in self.conns:
                self._on_writable(conn)

    def open_all(self, timeout: float) -> HoldResult:
        """Open every connection and get one response on each, or stop at ``timeout``."""
        started = time.monotonic()
        deadline = started + timeout
        to_start = self.result.requested
        while not self.stop_requested and time.monotonic() < deadline:
            pending = sum(1 for conn in self.conns.values() if conn.state != HELD)
            while to_start and pending < MAX_PENDING_CONNECTS:
                self._start_connect()
                to_start -= 1
                pending += 1
            if not to_start and pending == 0:
                break
            self._run_once(LOOP_TICK)
        self.result.seconds_to_open = round(time.monotonic() - started, 3)
        return self.result

    def hold(self, seconds: float, refresh_interval: float) -> HoldResult:
        """Keep connections open for ``seconds``; each sends a request every refresh_interval."""
        now = time.monotonic()
        deadline = now + seconds
        fds = list(self.conns)
        spread = refresh_interval / max(1, len(fds))
        due = [(now + refresh_interval + i * spread, fd) for i, fd in enumerate(fds)]
        heapq.heapify(due)
        while not self.stop_requested and time.monotonic() < deadline:
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, fd = heapq.heappop(due)
                conn = self.conns.get(fd)
                if conn is not None and conn.state == HELD:
                    self.result.held -= 1
                    self.result.refreshes += 1
                    self._send_request(conn)
                    heapq.heappush(due, (now + refresh_interval, fd))
            self._run_once(min(LOOP_TICK, max(0.0, deadline - now)))
        return self.result

    def close(self) -> None:
        for conn in self.conns.values():
            conn.sock.close()
        self.conns.clear()
        self.selector.close()


def hold_connections(host: str, port: int, count: int, path: str = "/",
                     open_timeout: float = 30.0, hold_seconds: float = 0.0,
                     refresh_interval: float = 20.0) -> HoldResult:
    """Library form: open, hold for ``hold_seconds``, close; return the counts."""
    holder = Holder(host, port, count, path)
    try:
        holder.open_all(open_timeout)
        return holder.hold(hold_seconds, refresh_interval)
    finally:
        holder.close()


def _emit(event: str, result: HoldResult) -> None:
    print(json.dumps({"event": event, **asdict(result)}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Open and hold N keep-alive connections.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("-n", "--count", type=int, default=1000)
    parser.add_argument("--path", default="/", help="what each request asks for (small file)")
    parser.add_argument("--open-timeout", type=float, default=30.0)
    parser.add_argument("--hold", type=float, default=30.0, help="seconds to hold, at most")
    parser.add_argument("--refresh", type=float, default=20.0,
                        help="seconds between keep-alive requests on each connection "
                             "(below the server's idle timeout)")
    parser.add_argument("--until-stdin-eof", action="store_true",
                        help="also stop when standard input closes (used by the runner)")
    args = parser.parse_args(argv)
    holder = Holder(args.host, args.port, args.count, args.path)

    def request_stop(*_: object) -> None:
        holder.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if args.until_stdin_eof:
        _watch_stdin(holder)
    try:
        _emit("held", holder.open_all(args.open_timeout))
        _emit("done", holder.hold(args.hold, args.refresh))
    finally:
        holder.close()
    return 0


def _watch_stdin(holder: Holder) -> None:
    """Stop holding when the parent closes our stdin (or dies): no orphan holds 10k sockets."""
    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        holder.stop_requested = True

    threading.Thread(target=wait_for_eof, daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main())
