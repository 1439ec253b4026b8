"""Benchmark the request parser against the standard library's header parsing.

What it measures, each as the median of 5 runs:

1. heads/s for a typical browser request (request line plus Host, User-Agent, Accept, Cookie,
   Cache-Control, If-Modified-Since) parsed by ``evserver.http.parser.RequestParser`` up to its
   END_OF_MESSAGE, with a fresh parser per head (a new connection each time) and with one parser
   reused (keep-alive);
2. heads/s for the same head through the standard library's path: ``http.server`` reads the
   request line with ``readline()`` and the fields with ``http.client.parse_headers``;
3. the ratio of the two (target: at least 4);
4. the cost of a 60 KiB head fed one byte at a time against fed whole: if the buffer search were
   quadratic, the byte-by-byte figure would be thousands of times the whole one.

Run it alone on a quiet machine: ``python tools/bench_parser.py`` (about 10 seconds).
It asserts nothing; it prints figures for the report.
"""

from __future__ import annotations

import http.client
import io
import statistics
import sys
import time
from collections.abc import Callable

from evserver.http.events import END_OF_MESSAGE, Request
from evserver.http.parser import RequestParser

RUNS = 5
"""The median of 5 runs smooths out a scheduler hiccup without making the tool slow."""

RUN_SECONDS = 0.4
"""Each run loops for about this long, enough for a stable rate on a busy 2-core machine."""

BIG_HEAD_SIZE = 60 * 1024
"""The linearity check's head size: just under the parser's 64 KiB head limit."""

FIELD_SIZE = 700
"""Bytes per field line of the big head, so that 60 KiB stay under the 100-field limit."""

TYPICAL_HEAD = (
    b"GET /index.html HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
    b"image/webp,*/*;q=0.8\r\n"
    b"Cookie: session=4f2a9c1e77d04b6f; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"If-Modified-Since: Sat, 29 Oct 2023 19:43:31 GMT\r\n"
    b"\r\n"
)


def parse_fresh(head: bytes) -> None:
    """One head through a new parser, up to END_OF_MESSAGE."""
    parser = RequestParser()
    parser.feed(head)
    parser.next_event()
    parser.next_event()


def make_parse_reused() -> Callable[[bytes], None]:
    """One head through a parser kept across calls, as on a keep-alive connection."""
    parser = RequestParser()

    def parse_reused(head: bytes) -> None:
        parser.feed(head)
        parser.next_event()
        parser.next_event()

    return parse_reused


def parse_stdlib(head: bytes) -> None:
    """The same head the way ``http.server.BaseHTTPRequestHandler`` reads it."""
    stream = io.BytesIO(head)
    stream.readline(65537)
    http.client.parse_headers(stream)


def rate(function: Callable[[bytes], None], head: bytes) -> float:
    """Calls per second, median of RUNS runs of about RUN_SECONDS each."""
    batch = 1000
    start = time.perf_counter()
    for _ in range(batch):
        function(head)
    per_call = (time.perf_counter() - start) / batch
    loops = max(1000, int(RUN_SECONDS / per_call))
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(loops):
            function(head)
        rates.append(loops / (time.perf_counter() - start))
    return statistics.median(rates)


def big_head() -> bytes:
    """A valid head of BIG_HEAD_SIZE bytes made of FIELD_SIZE-byte fields (under 100 of them)."""
    lines = [b"GET / HTTP/1.1\r\n", b"Host: example.com\r\n"]
    size = sum(map(len, lines)) + 2
    number = 0
    while size + 2 * FIELD_SIZE <= BIG_HEAD_SIZE:
        line = b"X-Filler-%02d: " % number
        line += b"v" * (FIELD_SIZE - 2 - len(line)) + b"\r\n"
        lines.append(line)
        size += len(line)
        number += 1
    lines.append(b"X-Pad: " + b"p" * (BIG_HEAD_SIZE - size - 9) + b"\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    assert len(head) == BIG_HEAD_SIZE, len(head)
    return head


def feed_big_head(head: bytes, piece: int) -> tuple[float, int]:
    """Seconds to parse ``head`` fed in pieces of ``piece`` bytes, and the bytes searched."""
    parser = RequestParser()
    start = time.perf_counter()
    event = None
    for offset in range(0, len(head), piece):
        parser.feed(head[offset : offset + piece])
        event = parser.next_event()
    elapsed = time.perf_counter() - start
    assert isinstance(event, Request), event
    assert parser.next_event() is END_OF_MESSAGE
    return elapsed, parser.bytes_scanned


def main() -> int:
    print(f"python {sys.version.split()[0]}, median of {RUNS} runs")
    print(f"typical head: {len(TYPICAL_HEAD)} bytes, 6 fields")
    fresh = rate(parse_fresh, TYPICAL_HEAD)
    reused = rate(make_parse_reused(), TYPICAL_HEAD)
    stdlib = rate(parse_stdlib, TYPICAL_HEAD)
    print(f"  evserver, new parser per head : {fresh:10,.0f} heads/s  ({1e6 / fresh:5.2f} us)")
    print(f"  evserver, keep-alive parser   : {reused:10,.0f} heads/s  ({1e6 / reused:5.2f} us)")
    print(f"  stdlib readline+parse_headers : {stdlib:10,.0f} heads/s  ({1e6 / stdlib:5.2f} us)")
    print(f"  ratio (new parser / stdlib)   : {fresh / stdlib:10.2f} x   (target >= 4)")
    print(f"  ratio (keep-alive / stdlib)   : {reused / stdlib:10.2f} x")

    head = big_head()
    whole_times, byte_times = [], []
    for _ in range(RUNS):
        whole_times.append(feed_big_head(head, len(head))[0])
        elapsed, scanned = feed_big_head(head, 1)
        byte_times.append(elapsed)
    whole, by_byte = statistics.median(whole_times), statistics.median(byte_times)
    print(f"{len(head) // 1024} KiB head:")
    print(f"  fed whole        : {whole * 1e3:8.3f} ms")
    print(f"  fed byte by byte : {by_byte * 1e3:8.3f} ms  ({len(head)} feed+next_event calls,"
          f" {by_byte / len(head) * 1e6:.2f} us per byte)")
    print(f"  bytes searched while incomplete: {scanned} ({scanned / len(head):.1f} per byte)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
