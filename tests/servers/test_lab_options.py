"""The options a lab needs, on running servers: the Nagle switches, the loop trace, the debug log.

``--no-nodelay`` with ``--split-writes`` must bring back the classic stall (the response's body
waits in the server's kernel for the ACK of its head, which the client delays), in every model;
either switch alone, or neither, must not. ``--trace`` must describe the evented loop, and
nothing may be traced without it; ``-v`` must show debug lines, and nothing at debug level may
show without it.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clients import read_response
from tests.support.processes import ServerProcess
from tests.support.servers import RunningServer
from tests.support.waiting import wait_until

MODELS = ["evented", "threaded", "iterative"]

WARM_UP_REQUESTS = 3
"""Requests before measuring: Linux acknowledges the first segments of a connection at once
(quick-ACK mode) and starts delaying ACKs only once the exchange looks interactive."""

MEASURED_REQUESTS = 7
"""Requests whose median is judged: a handful, so one scheduling hiccup cannot decide."""

STALLED_MEDIAN = 0.020
"""Linux delays an ACK by 40 ms (TCP_DELACK_MIN) at least; half of it is a safe floor."""

PROMPT_MEDIAN = 0.010
"""A 1 KiB response on loopback takes well under a millisecond; ten is generous under load."""

linux_only = pytest.mark.skipif(sys.platform != "linux",
                                reason="the delayed-ACK timer measured here is Linux's")


def median_request_seconds(address: tuple[str, int], path: str = "/kib.bin") -> float:
    """The median time of a keep-alive request for ``path``, one at a time on one connection."""
    request = f"GET {path} HTTP/1.1\r\nHost: lab\r\n\r\n".encode()
    times = []
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as stream:
        for number in range(WARM_UP_REQUESTS + MEASURED_REQUESTS):
            started = time.perf_counter()
            sock.sendall(request)
            status, _, body = read_response(stream)
            elapsed = time.perf_counter() - started
            assert status == 200 and len(body) == 1024
            if number >= WARM_UP_REQUESTS:
                times.append(elapsed)
    return statistics.median(times)


@linux_only
@pytest.mark.parametrize("model", MODELS)
def test_both_switches_bring_back_the_delayed_ack_stall(
        start_server: Callable[..., RunningServer], model: str) -> None:
    server = start_server(model=model, nodelay=False, split_writes=True)
    median = median_request_seconds(server.address)
    assert median > STALLED_MEDIAN, f"{model}: {median * 1000:.2f} ms, expected a stall"


@linux_only
@pytest.mark.parametrize(("model", "nodelay", "split_writes"), [
    *[(model, True, False) for model in MODELS],  # the defaults
    ("evented", False, False),  # Nagle on, but head and body leave in one write
    ("evented", True, True),  # two writes, but nothing holds the second back
    ("threaded", False, False),
    ("threaded", True, True),
])
def test_without_both_switches_requests_stay_prompt(
        start_server: Callable[..., RunningServer], model: str, nodelay: bool,
        split_writes: bool) -> None:
    server = start_server(model=model, nodelay=nodelay, split_writes=split_writes)
    median = median_request_seconds(server.address)
    assert median < PROMPT_MEDIAN, f"{model}: {median * 1000:.2f} ms"


# -- watching the loop ----------------------------------------------------------------------


def one_request(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=10) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        assert read_response(stream)[0] == 200
        assert stream.read() == b""  # the server closed


def trace_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(("iteration ", "  "))]


def test_trace_file_shows_iterations_and_events(
        start_server: Callable[..., RunningServer], tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    server = start_server(trace=str(trace))
    one_request(server.address)
    server.stop()
    lines = trace.read_text().splitlines()
    iterations = [line for line in lines if line.startswith("iteration ")]
    assert iterations and all(" ms, " in line and " due" in line for line in iterations)
    events = [line.split() for line in lines if line.startswith("  ")]
    assert events[0][:2] == ["accept", "fd"] and events[0][-1].endswith("_on_listener_ready")
    assert any(event[0] == "read" and event[-1] == "Connection._on_event" for event in events)
    assert len(lines) == len(iterations) + len(events)  # nothing else goes there


def test_trace_goes_to_standard_error_and_only_when_asked(
        start_process: Callable[..., ServerProcess]) -> None:
    traced = start_process("-q", "--trace")
    plain = start_process("-q")
    for child in (traced, plain):
        one_request(child.address)
    wait_until(lambda: any(line.startswith("  read ") for line in traced.stderr_lines),
               "the traced server reported its read")
    assert plain.stop() == 0 and traced.stop() == 0
    assert trace_lines(traced.stderr_lines)[0].startswith("iteration 1: polled ")
    assert trace_lines(plain.stderr_lines) == []


def test_verbose_shows_debug_lines_and_only_when_asked(
        start_process: Callable[..., ServerProcess]) -> None:
    quick = ("--header-timeout", "0.2", "--idle-timeout", "0.2")
    verbose = start_process("-v", *quick)
    plain = start_process(*quick)
    for child in (verbose, plain):  # connect, say nothing: the server times the client out
        with socket.create_connection(child.address, timeout=10) as sock:
            assert sock.recv(1) == b""
    wait_until(lambda: any("idle timeout" in line for line in verbose.stderr_lines),
               "a debug line about the idle timeout")
    assert verbose.stop() == 0 and plain.stop() == 0
    assert not any("idle timeout" in line for line in plain.stderr_lines)
