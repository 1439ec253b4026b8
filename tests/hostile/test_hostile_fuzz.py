"""Fuzzing the live server (bounded, for CI), and the checker the fuzzer relies on.

``tools/fuzz_server.py`` sends seeded mutations of a corpus of requests to a running server and
checks, after each input, that the server is alive (a probe request gets its 200), that
everything it sent parses as strictly well-formed HTTP/1.1, and that descriptors do not leak.
Here it runs a few hundred inputs against every model and selector in-process (its descriptor
count is this process's, which is exact once the fuzzer's sockets are closed), and a hundred
more over TLS. Long runs are by
hand: ``python -m tools.fuzz_server --seconds 600`` (see its docstring).

A checker that accepts anything proves nothing, so the strict response reader the fuzzer and the
hostile suites share (``tests/support/responses.py``) is tested first against responses that are
subtly broken. The last test is "after all of it": a server that has been fuzzed still answers
normally, with its descriptors back to baseline and its memory flat.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from evserver.net.tls import server_context
from tests.support.procfs import open_fds, rss_kib
from tests.support.responses import MalformedResponse, exchange, parse_responses
from tests.support.servers import RunningServer, settle
from tests.support.tls import Certificate, client_context, connector
from tools.fuzz_server import CORPUS, Target, fuzz, mutate

CI_INPUTS = 300
"""Inputs per model in CI (a few seconds each); the by-hand runs use --seconds."""

CI_INPUTS_OVER_TLS = 100
"""Inputs per model over TLS in CI: each costs two handshakes (the input's and the probe's)."""

GOOD = (b"HTTP/1.1 200 OK\r\nDate: Sat, 21 Nov 2026 10:00:00 GMT\r\nContent-Length: 5\r\n"
        b"\r\nhello")


@pytest.mark.parametrize("raw", [
    GOOD[:-1],  # truncated body
    GOOD.replace(b"HTTP/1.1", b"HTTP/1.0"),
    GOOD.replace(b"200", b"20"),
    GOOD.replace(b"\r\nDate", b"\nDate"),  # bare LF
    GOOD.replace(b"Content-Length: 5", b"Content-Length: +5"),
    GOOD.replace(b"Content-Length: 5\r\n", b""),  # no framing
    GOOD.replace(b"Content-Length: 5\r\n", b"Content-Length: 5\r\nContent-Length: 5\r\n"),
    GOOD.replace(b"Date: Sat, 21 Nov 2026 10:00:00 GMT\r\n", b""),
    GOOD.replace(b"Content-Length", b"Content Length"),
    GOOD.replace(b"Content-Length: 5", b"Content-Length: 5\r\n folded"),
    GOOD.replace(b"Content-Length: 5", b"Content-Length: 5\r\nTransfer-Encoding: chunked"),
    GOOD + b"x",  # bytes after the last response
    GOOD.replace(b"Content-Length: 5", b"Connection: close\r\nContent-Length: 5") + GOOD,
    b"garbage",
    GOOD.replace(b"200 OK", b"204 No Content"),  # a 204 body would be read as the next response
])
def test_strict_reader_rejects_broken_responses(raw: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_responses(raw)


def test_strict_reader_accepts_what_rfc_9112_allows() -> None:
    head_only = GOOD[: -len(b"hello")]
    responses = parse_responses(head_only + GOOD + b"HTTP/1.1 100 Continue\r\n\r\n" + GOOD,
                                head_requests=(True, False, False))
    assert [r.body for r in responses] == [b"", b"hello", b"hello"]
    assert parse_responses(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n" + GOOD,
                           ())[0].status == 304
    # maybe_head: a fuzzed input with a HEAD in it may get a body-less 200 anywhere
    assert len(parse_responses(head_only + GOOD, maybe_head=True)) == 2


def test_mutator_is_deterministic_for_a_seed() -> None:
    first = [mutate(CORPUS[i % len(CORPUS)], random.Random(7)) for i in range(50)]
    second = [mutate(CORPUS[i % len(CORPUS)], random.Random(7)) for i in range(50)]
    assert first == second
    assert any(m not in CORPUS for m in first)


@pytest.fixture
def fuzz_server(start_server: Callable[..., RunningServer],
                model_name: tuple[str, str]) -> RunningServer:
    model, selector = model_name
    return start_server(model=model, selector=selector, header_timeout=1, idle_timeout=1,
                        send_timeout=2, drain_timeout=1)


def test_fuzzing_the_live_server(fuzz_server: RunningServer) -> None:
    exchange(fuzz_server.address, b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close"
             b"\r\n\r\n")
    settle(fuzz_server)
    thread = fuzz_server.thread
    target = Target(fuzz_server.address, count_fds=open_fds, is_alive=thread.is_alive,
                    probe_body=b"hello, world\n")
    seed = sum(map(ord, fuzz_server.model)) + fuzz_server.port % 1000
    report = fuzz(target, seed=seed, max_inputs=CI_INPUTS, timeout=8)
    details = "\n".join(f"seed {seed} input {f.index}: {f.reason}\n  {f.data!r}"
                        for f in report.failures)
    assert not report.failures, f"{report.summary()}\n{details}"
    assert report.tried == CI_INPUTS
    assert 400 in report.statuses and 200 in report.statuses  # the mutations do bite


def test_fuzzing_the_live_server_over_tls(start_server: Callable[..., RunningServer],
                                          model_name: tuple[str, str],
                                          certificate: Certificate) -> None:
    model, selector = model_name
    server = start_server(model=model, selector=selector, header_timeout=1, idle_timeout=1,
                          send_timeout=2, drain_timeout=1,
                          tls_context=server_context(str(certificate.cert),
                                                     str(certificate.key)))
    connect = connector(client_context(certificate))
    exchange(server.address, b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
             connect=connect)
    settle(server)
    target = Target(server.address, count_fds=open_fds, is_alive=server.thread.is_alive,
                    probe_body=b"hello, world\n", connect=connect)
    seed = sum(map(ord, server.model)) + server.port % 1000
    report = fuzz(target, seed=seed, max_inputs=CI_INPUTS_OVER_TLS, timeout=8)
    details = "\n".join(f"seed {seed} input {f.index}: {f.reason}\n  {f.data!r}"
                        for f in report.failures)
    assert not report.failures, f"{report.summary()}\n{details}"
    assert report.tried == CI_INPUTS_OVER_TLS
    assert 400 in report.statuses and 200 in report.statuses


def test_after_all_of_it_the_server_is_as_before(fuzz_server: RunningServer) -> None:
    # Warm up (caches, the date cache, lazily imported modules), then take the baseline.
    for _ in range(3):
        exchange(fuzz_server.address, b"GET /medium.bin HTTP/1.1\r\nHost: t\r\n"
                 b"Connection: close\r\n\r\n")
    baseline_fds = settle(fuzz_server)
    target = Target(fuzz_server.address, count_fds=open_fds, is_alive=fuzz_server.thread.is_alive)
    report = fuzz(target, seed=99, max_inputs=100, timeout=8)
    assert not report.failures, report.summary()
    rss_before = rss_kib()
    report = fuzz(target, seed=100, max_inputs=400, timeout=8)
    assert not report.failures, report.summary()
    rss_after = rss_kib()
    responses, _ = exchange(fuzz_server.address, b"GET /medium.bin HTTP/1.1\r\nHost: t\r\n"
                            b"Connection: close\r\n\r\n")
    assert responses[0].status == 200
    assert responses[0].body == (fuzz_server.root / "medium.bin").read_bytes()
    assert settle(fuzz_server) <= baseline_fds
    # Memory: 400 more hostile inputs must not grow the process by more than noise.
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)
