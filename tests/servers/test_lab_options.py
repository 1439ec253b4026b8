"""The options a lab needs, on running servers: the Nagle switches.

``--no-nodelay`` with ``--split-writes`` must bring back the classic stall (the response's body
waits in the server's kernel for the ACK of its head, which the client delays), in every model;
either switch alone, or neither, must not.
"""

from __future__ import annotations

import socket
import statistics
import sys
import time
from collections.abc import Callable

import pytest

from tests.support.clients import read_response
from tests.support.servers import RunningServer

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
