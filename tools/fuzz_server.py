"""Fuzz a live HTTP/1.1 server with mutated requests, checking it after every input.

What this module knows: sockets, ``/proc``, a seeded byte-level mutator, and how to judge a
server's answers. What it must not know: how the server is built. Like the other tools it never
imports ``evserver``: a target is an address, and optionally a process whose descriptors can be
counted. It shares the tests' support code that imports only the standard library: the strict
response reader (``tests/support/responses.py``), the standard document tree and the child-process
starter.

The loop, once per input::

    input = mutate(random corpus entry)          # seeded: the same seed gives the same inputs
    connect, send it in random pieces, shut down our sending side (the server sees EOF),
    read until the server closes, parse every response strictly         -> "malformed"
    probe: a plain GET on a fresh connection must get its 200            -> "dead"
    descriptors: at most baseline + slack now; exactly baseline at the end -> "fd leak"

"Malformed" is the strict reader's verdict (its docstring says what strict means); inputs that
may contain a HEAD request are read knowing a response to HEAD has no body.

Over TLS (``--tls``) each input travels inside a verified TLS connection, so the server's
TLS layer -- records, pending bytes, close_notify, the lingering close -- carries the same
mutations; our side's end is a TCP half-close without close_notify (a TLS socket cannot
half-close otherwise), which the server reads as the end of input.

Run it by hand for long sessions (the CI runs a few hundred inputs per model, fewer over TLS, from
``tests/hostile/test_hostile_fuzz.py``)::

    .venv/bin/python -m tools.fuzz_server --seconds 600 --seed 1
    .venv/bin/python -m tools.fuzz_server --count 100000 --model threaded --save /tmp/fuzz-fail
    .venv/bin/python -m tools.fuzz_server --seconds 600 --tls
    .venv/bin/python -m tools.fuzz_server --port 8000 --pid 1234   # a server you started

Without ``--port`` it starts ``python -m evserver`` on a fresh document root with short timeouts
(with ``--tls``, on a certificate made for the run).
It prints how many inputs it tried, the statuses seen, and any failure with its input (``--save``
writes failing inputs to files for replay with ``--replay FILE``). Exit status 1 on a failure.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``tests.support`` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.processes import ServerDidNotStart, ServerProcess, spawn_server
from tests.support.procfs import open_fds
from tests.support.responses import (
    Connect,
    HTTPResponse,
    MalformedResponse,
    exchange,
    parse_responses,
    read_until_close,
)
from tests.support.tls import Certificate, client_context, connector, make_certificate
from tests.support.trees import make_docroot

# ---------------------------------------------------------------------------------------------
# The corpus and the mutator.

CORPUS: tuple[bytes, ...] = (
    b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /small.txt HTTP/1.1\r\nHost: fuzz\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /kib.bin HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /kib.bin HTTP/1.1\r\nHost: fuzz\r\nRange: bytes=0-9,20-29,-5\r\n\r\n",
    b"GET /kib.bin HTTP/1.1\r\nHost: fuzz\r\nRange: bytes=1000-\r\nIf-Range: \"x\"\r\n\r\n",
    b"GET /sub HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /sub/?a=1&b=%20 HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /with%20space%20%C3%A9.txt HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /noindex/ HTTP/1.1\r\nHost: fuzz\r\nIf-None-Match: *\r\n\r\n",
    b"GET /small.txt HTTP/1.1\r\nHost: fuzz\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"
    b"\r\n\r\n",
    b"GET http://fuzz/small.txt HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"POST /small.txt HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 11\r\n\r\nhello=world",
    b"POST / HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-Field: x\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: fuzz\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: fuzz\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /../etc/passwd HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: fuzz\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
)
"""Seeds: valid requests of every shape the server knows, plus known-tricky framing."""

_INTERESTING_BYTES = b"\r\n\x00 \t:;,%/.?#\\\"'=-+0123456789afAF\x7f\x85\xa0\xff\x0b\x0c"
_INTERESTING_TOKENS = (
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\r\n ", b"%00", b"%2e%2e/", b"../", b"%2F", b"%c0%ae",
    b"//", b"0", b"-1", b"+5", b"0x10", b"4294967296", b"2147483648", b"18446744073709551616",
    b"99999999999999999999", b"ffffffffffffffff", b"\xef\xbc\x95", b"chunked", b"identity",
    b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"bytes=0-0,-1", b"bytes=-0",
    b"100-continue", b"close", b"keep-alive", b"HEAD", b"*",
)
_INTERESTING_FIELDS = (
    b"Content-Length: 0\r\n", b"Content-Length: 3\r\n", b"Content-Length: 1, 2\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding : chunked\r\n", b"Host: other\r\n", b"Expect: 100-continue\r\n",
    b"Range: bytes=0-1,3-4,5-6,7-8\r\n", b"Connection: close\r\n", b"X: \x00\r\n",
    b" folded\r\n", b"If-None-Match: \"x\", W/\"y\"\r\n",
)


def mutate(data: bytes, rng: random.Random, corpus: Sequence[bytes] = CORPUS) -> bytes:
    """One to four random edits of ``data`` (pure function of the rng's state)."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(10)
        position = rng.randint(0, len(buffer))
        if kind == 0 and buffer:  # flip a bit
            index = rng.randrange(len(buffer))
            buffer[index] ^= 1 << rng.randrange(8)
        elif kind == 1:  # insert an interesting byte
            buffer[position:position] = bytes([rng.choice(_INTERESTING_BYTES)])
        elif kind == 2 and buffer:  # delete a range
            end = min(len(buffer), position + rng.randint(1, 8))
            del buffer[position:end]
        elif kind == 3:  # insert an interesting token
            buffer[position:position] = rng.choice(_INTERESTING_TOKENS)
        elif kind == 4:  # insert a whole field line after a line break
            line_break = buffer.find(b"\r\n", position)
            at = line_break + 2 if line_break >= 0 else len(buffer)
            buffer[at:at] = rng.choice(_INTERESTING_FIELDS)
        elif kind == 5 and buffer:  # duplicate a slice
            end = min(len(buffer), position + rng.randint(1, 40))
            buffer[end:end] = buffer[position:end]
        elif kind == 6:  # splice in (part of) another corpus entry: pipelining, hidden requests
            other = rng.choice(corpus)
            cut = rng.randint(0, len(other))
            buffer[position:position] = other[:cut] if rng.random() < 0.5 else other
        elif kind == 7:  # CRLF -> LF (or the reverse) once
            index = buffer.find(b"\r\n", position)
            if index >= 0:
                del buffer[index]
            else:
                buffer[position:position] = b"\r"
        elif kind == 8:  # replace a run of digits with a boundary number
            match = re.search(rb"[0-9]+", bytes(buffer[position:]))
            if match is not None:
                start, end = position + match.start(), position + match.end()
                buffer[start:end] = rng.choice(_INTERESTING_TOKENS[11:20])
        elif buffer:  # truncate
            del buffer[rng.randint(1, len(buffer)):]
    return bytes(buffer)


# ---------------------------------------------------------------------------------------------
# The fuzzing loop.

FD_SLACK = 8
"""Descriptors the server may still hold for connections it is closing right now (a closed
client's socket is released when the server's loop next notices EOF)."""

SETTLE_SECONDS = 10.0
"""How long the final descriptor check waits for the count to return to its baseline."""

PROBE = b"GET /small.txt HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"


@dataclass
class Failure:
    """An input and what went wrong with it."""

    index: int
    data: bytes
    reason: str


@dataclass
class FuzzReport:
    tried: int = 0
    responses: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        return (f"tried {self.tried} inputs in {self.seconds:.1f} s, {self.responses} responses "
                f"({statuses}), {len(self.failures)} failures")


@dataclass
class Target:
    """What the fuzzer talks to: an address, and how to check the server is well."""

    address: tuple[str, int]
    count_fds: Callable[[], int] | None = None
    is_alive: Callable[[], bool] = lambda: True
    probe_path: bytes = PROBE
    probe_body: bytes | None = None
    connect: Connect = socket.create_connection
    """How a connection is opened: plain TCP, or TLS (``tests.support.tls.connector``)."""


def send_input(address: tuple[str, int], data: bytes, rng: random.Random,
               timeout: float, connect: Connect = socket.create_connection) -> tuple[bytes, str]:
    """Send ``data`` in random pieces, half-close, read until close."""
    with connect(address, timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        position = 0
        try:
            while position < len(data):
                step = len(data) if rng.random() < 0.6 else rng.randint(1, 64)
                sock.sendall(data[position : position + step])
                position += step
            socket.socket.shutdown(sock, socket.SHUT_WR)  # TLS's own would drop its TLS object
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server gave up on us early (an error): read what it said
        return read_until_close(sock)


def check_input(target: Target, data: bytes, rng: random.Random,
                timeout: float) -> tuple[list[HTTPResponse], str | None]:
    """Send one input and check the answer and the server; ``(responses, failure or None)``."""
    try:
        raw, _how = send_input(target.address, data, rng, timeout, target.connect)
    except TimeoutError:
        return [], f"the server neither answered nor closed within {timeout} s"
    except OSError as error:
        return [], f"connection failed: {error!r}"
    try:
        responses = parse_responses(raw, maybe_head=b"HEAD" in data)
    except MalformedResponse as error:
        return [], f"malformed response: {error}; got {raw[:300]!r}"
    problem = probe(target, timeout)
    return responses, problem


def probe(target: Target, timeout: float) -> str | None:
    """A normal request on a fresh connection must still get a complete 200."""
    if not target.is_alive():
        return "the server process is gone"
    try:
        responses, _ = exchange(target.address, target.probe_path, timeout=timeout,
                                connect=target.connect)
    except (OSError, MalformedResponse) as error:
        return f"probe failed: {error!r}"
    if len(responses) != 1 or responses[0].status != 200:
        return f"probe got {responses!r}"
    if target.probe_body is not None and responses[0].body != target.probe_body:
        return "probe body differs"
    return None


def wait_for_fds(target: Target, baseline: int, deadline_seconds: float) -> int:
    """Poll the descriptor count until it is back to ``baseline`` (or the deadline); return it."""
    assert target.count_fds is not None
    deadline = time.monotonic() + deadline_seconds
    count = target.count_fds()
    while count > baseline and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for a condition (the server closing), not for readiness
        count = target.count_fds()
    return count


def fuzz(target: Target, *, seed: int, max_inputs: int | None = None,
         max_seconds: float | None = None, corpus: Sequence[bytes] = CORPUS,
         timeout: float = 10.0, max_failures: int = 5,
         on_input: Callable[[int, bytes], None] | None = None) -> FuzzReport:
    """Run the loop until ``max_inputs`` or ``max_seconds`` (at least one must be given)."""
    if max_inputs is None and max_seconds is None:
        raise ValueError("bound the run with max_inputs or max_seconds")
    rng = random.Random(seed)
    report = FuzzReport()
    started = time.monotonic()
    baseline = 0
    if target.count_fds is not None:
        # Counted after one request: a server may open a descriptor of its own when it starts
        # serving (the blocking models' accept selector); the probe's socket may still be
        # closing, hence "before + 1" at most.
        before = target.count_fds()
        probe(target, timeout)
        baseline = wait_for_fds(target, before + 1, SETTLE_SECONDS)
    while (max_inputs is None or report.tried < max_inputs) and \
            (max_seconds is None or time.monotonic() - started < max_seconds):
        data = corpus[rng.randrange(len(corpus))]
        if rng.random() < 0.9:
            data = mutate(data, rng, corpus)
        if on_input is not None:
            on_input(report.tried, data)
        responses, problem = check_input(target, data, rng, timeout)
        report.tried += 1
        report.responses += len(responses)
        report.statuses.update(r.status for r in responses)
        if problem is None and target.count_fds is not None:
            count = target.count_fds()
            if count > baseline + FD_SLACK:
                count = wait_for_fds(target, baseline + FD_SLACK, SETTLE_SECONDS)
                if count > baseline + FD_SLACK:
                    problem = f"descriptors: {count} open, baseline {baseline}"
        if problem is not None:
            report.failures.append(Failure(report.tried - 1, data, problem))
            if len(report.failures) >= max_failures or not target.is_alive():
                break
    if target.count_fds is not None and not report.failures:
        count = wait_for_fds(target, baseline, SETTLE_SECONDS)
        if count > baseline:
            report.failures.append(Failure(report.tried, b"", f"descriptors after the run: "
                                                              f"{count}, baseline {baseline}"))
    report.seconds = time.monotonic() - started
    return report


# ---------------------------------------------------------------------------------------------
# Running it by hand.

SERVER_TIMEOUTS = ("--header-timeout", "2", "--idle-timeout", "2", "--send-timeout", "5")
"""Short timeouts for the server it starts: an input the server wrongly waits on ends soon."""


def start_evserver(root: Path, model: str, selector: str,
                   certificate: Certificate | None = None) -> ServerProcess:
    """``python -m evserver`` (quiet, short timeouts) on a free port, over ``root``; serving
    HTTPS with ``certificate`` when one is given."""
    tls = certificate.server_args() if certificate is not None else []
    try:
        return spawn_server(root, "-q", "--model", model, "--selector", selector,
                            *SERVER_TIMEOUTS, *tls)
    except ServerDidNotStart as error:
        raise SystemExit(f"fuzz_server: the server did not start: {error}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fuzz_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seconds", type=float, help="stop after this long")
    p.add_argument("--count", type=int, help="stop after this many inputs")
    p.add_argument("--model", default="evented", choices=("evented", "threaded", "iterative"))
    p.add_argument("--selector", default="auto")
    p.add_argument("--port", type=int, help="fuzz a server already listening on 127.0.0.1:PORT")
    p.add_argument("--pid", type=int, help="its process id, to count its descriptors")
    p.add_argument("--corpus", type=Path, help="a folder of extra seed requests (*.http)")
    p.add_argument("--save", type=Path, help="write failing inputs to this folder")
    p.add_argument("--replay", type=Path, help="send this one input file and check it")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--tls", action="store_true",
                   help="fuzz over HTTPS: the server it starts gets a certificate made for the "
                   "run; with --port, trust --cafile (no verification without it)")
    p.add_argument("--cafile", type=Path, help="with --port --tls: the server's certificate")
    args = p.parse_args(argv)
    if args.seconds is None and args.count is None and args.replay is None:
        args.seconds = 60.0
    corpus = list(CORPUS)
    if args.corpus is not None:
        corpus += [path.read_bytes() for path in sorted(args.corpus.glob("*.http"))]
    server: ServerProcess | None = None
    folder: str | None = None
    try:
        connect: Connect = socket.create_connection
        if args.port is None:
            folder = tempfile.mkdtemp(prefix="fuzz-root-")
            certificate = make_certificate(Path(folder) / "tls") if args.tls else None
            server = start_evserver(make_docroot(Path(folder) / "root"), args.model,
                                    args.selector, certificate)
            port, pid = server.port, server.pid
            if certificate is not None:
                connect = connector(client_context(certificate))
        else:
            port, pid = args.port, args.pid
            if args.tls:
                connect = connector(_client_for(args.cafile))
        running = server
        target = Target(("127.0.0.1", port), (lambda: open_fds(pid)) if pid else None,
                        (lambda: running.process.poll() is None) if running is not None
                        else (lambda: True),
                        probe_body=b"hello, world\n" if args.port is None else None,
                        connect=connect)
        if args.replay is not None:
            data = args.replay.read_bytes()
            responses, problem = check_input(target, data, random.Random(args.seed),
                                             args.timeout)
            print(f"{len(responses)} responses: {[r.status for r in responses]}; "
                  f"{problem or 'ok'}")
            return 1 if problem else 0
        report = fuzz(target, seed=args.seed, max_inputs=args.count, max_seconds=args.seconds,
                      corpus=corpus, timeout=args.timeout)
        print(report.summary())
        for failure in report.failures:
            print(f"FAILURE at input {failure.index}: {failure.reason}\n  input: {failure.data!r}")
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"seed{args.seed}-{failure.index}.http").write_bytes(failure.data)
        return 1 if report.failures else 0
    finally:
        if server is not None:
            try:
                server.stop(timeout=10)
            except subprocess.TimeoutExpired:
                pass  # stop() has killed it
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _client_for(cafile: Path | None) -> ssl.SSLContext:
    """A client context for a server started by hand: trusting ``cafile``, or (without one)
    verifying nothing -- it is your own server on this machine."""
    if cafile is not None:
        return client_context(cafile)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


if __name__ == "__main__":
    raise SystemExit(main())
