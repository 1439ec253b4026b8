"""Measure one keep-alive request through the evented server's Python code, in-process.

What it measures: the cost of one ``GET`` of a small cached file on a keep-alive connection, from
"the reactor says readable" to "the response is in the socket", split in layers:

1. ``syscalls``: a bare ``recv`` of the request plus a bare ``send`` of an equal-sized response on
   the same loopback TCP pair (what no Python server can avoid);
2. ``connection``: ``Connection._on_event(EVENT_READ)``, the whole evented path (recv, parse,
   handler with its ``os.stat``, head, send, interest mask, deadline), syscalls included; then the
   same with the access log on (written to /dev/null, flushed as the evented server does), and
   with the file's check shared (a busy loop iteration: an earlier request made the stat);
3. ``protocol``: ``ServerProtocol.receive`` alone (parser + handler + head), no socket;
4. ``parser``: the parser's events for one head; ``handler``: ``StaticHandler`` on a parsed
   request (which includes one ``os.stat``); ``stat``: that ``os.stat`` alone.

``connection - syscalls`` is the Python overhead per request the loop adds on top of the bare
system calls; the load benchmark (``tools/experiment.py bench``) is what counts, this tool only
says where the time goes. Each figure is the median of ``RUNS`` runs. Run it on a quiet machine:
``python tools/bench_hotpath.py`` (about 10 seconds). It asserts nothing.
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from selectors import EVENT_READ

from evserver.accesslog import FLUSH_LINES, AccessLog
from evserver.config import ServerConfig
from evserver.drivers.evented import Connection, ConnectionContext
from evserver.event.reactor import Reactor
from evserver.http.parser import RequestParser
from evserver.protocol import ServerProtocol
from evserver.static import RACY_WINDOW_SECONDS, StaticHandler
from evserver.stats import Stats

RUNS = 5
"""Median of 5 runs: smooths a scheduler hiccup on a shared machine."""

ITERATIONS = 20_000
"""Requests per run: long enough for a stable figure, short enough for a quick tool."""

FILE_SIZE = 1024
"""The 1 KiB file of the benchmark's keep-alive case."""

REQUEST = b"GET /1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8081\r\n\r\n"
"""What wrk sends (wrk adds nothing else to a plain GET)."""


def _median_us(run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(RUNS)) * 1e6


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def _make_root() -> str:
    root = tempfile.mkdtemp(prefix="bench_hotpath_")
    path = os.path.join(root, "1k.bin")
    with open(path, "wb") as file:
        file.write(os.urandom(FILE_SIZE))
    # The cache skips files changed within its racy window (ctime included, which utime cannot
    # set back): wait it out so every figure below is the cached path a real benchmark sees.
    time.sleep(RACY_WINDOW_SECONDS + 0.1)
    return root


def bench_syscalls(response_size: int) -> float:
    client, server = _tcp_pair()
    server.setblocking(False)
    response = b"x" * response_size

    def run() -> float:
        elapsed = 0.0
        for _ in range(ITERATIONS):
            client.send(REQUEST)
            started = time.perf_counter()
            server.recv(65536)
            server.send(response)
            elapsed += time.perf_counter() - started
            client.recv(65536)
        return elapsed / ITERATIONS

    try:
        return _median_us(run)
    finally:
        client.close()
        server.close()


def bench_connection(root: str, access_log: AccessLog | None = None,
                     shared_check: bool = False) -> tuple[float, int]:
    client, server = _tcp_pair()
    server.setblocking(False)
    reactor = Reactor()
    stats = Stats("evented", reactor.selector_name)
    config = ServerConfig(root=root, quiet=access_log is None)
    handler = StaticHandler(root)
    if shared_check:  # every request in one round: the file's stat was made by an earlier one
        handler.share_checks_per_round()
    protocol = ServerProtocol(handler, peer="127.0.0.1", stats=stats,
                              access_log=None if access_log is None else access_log.record)
    connection = Connection(reactor, server, protocol, ConnectionContext(config, stats))
    on_event = connection._on_event
    client.send(REQUEST)
    on_event(EVENT_READ)
    response_size = len(client.recv(65536))

    def run() -> float:
        elapsed = 0.0
        for _ in range(ITERATIONS):
            client.send(REQUEST)
            started = time.perf_counter()
            on_event(EVENT_READ)
            if access_log is not None and access_log.pending >= FLUSH_LINES:
                access_log.flush()  # what the evented server does before a poll
            elapsed += time.perf_counter() - started
            client.recv(65536)
        return elapsed / ITERATIONS

    try:
        return _median_us(run), response_size
    finally:
        connection.abort()
        reactor.close()
        client.close()


def bench_protocol(root: str) -> float:
    protocol = ServerProtocol(StaticHandler(root), stats=Stats())
    receive = protocol.receive
    receive(REQUEST)

    def run() -> float:
        started = time.perf_counter()
        for _ in range(ITERATIONS):
            receive(REQUEST)
        return (time.perf_counter() - started) / ITERATIONS

    return _median_us(run)


def bench_parser() -> float:
    parser = RequestParser()
    feed, next_event = parser.feed, parser.next_event

    def run() -> float:
        started = time.perf_counter()
        for _ in range(ITERATIONS):
            feed(REQUEST)
            next_event()
            next_event()
            next_event()
        return (time.perf_counter() - started) / ITERATIONS

    return _median_us(run)


def bench_handler(root: str) -> float:
    handler = StaticHandler(root)
    parser = RequestParser()
    parser.feed(REQUEST)
    request = parser.next_event()
    handler(request)  # type: ignore[arg-type]

    def run() -> float:
        started = time.perf_counter()
        for _ in range(ITERATIONS):
            handler(request)  # type: ignore[arg-type]
        return (time.perf_counter() - started) / ITERATIONS

    return _median_us(run)


def bench_stat(root: str) -> float:
    path = os.path.join(root, "1k.bin")

    def run() -> float:
        started = time.perf_counter()
        for _ in range(ITERATIONS):
            os.stat(path)
        return (time.perf_counter() - started) / ITERATIONS

    return _median_us(run)


def main() -> int:
    root = _make_root()
    connection, response_size = bench_connection(root)
    syscalls = bench_syscalls(response_size)
    with open(os.devnull, "w") as devnull:
        logged, _ = bench_connection(root, AccessLog(devnull))
    rows = [
        ("syscalls (bare recv + send)", syscalls),
        ("connection (whole evented path)", connection),
        ("  = python overhead", connection - syscalls),
        ("connection, access log on", logged),
        ("connection, stat shared by a round", bench_connection(root, shared_check=True)[0]),
        ("protocol.receive (no socket)", bench_protocol(root)),
        ("parser (3 events)", bench_parser()),
        ("handler (cached, with stat)", bench_handler(root)),
        ("os.stat alone", bench_stat(root)),
    ]
    print(f"one keep-alive GET of a {FILE_SIZE} B file, response {response_size} B, "
          f"median of {RUNS} x {ITERATIONS}")
    for name, micros in rows:
        print(f"  {name:34s} {micros:6.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
