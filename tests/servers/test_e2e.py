"""End-to-end behaviour every model shares, run against each model and each selector.

Real clients over real sockets: ``http.client``, ``urllib``, ``curl`` and raw sockets. The
``server`` fixture (tests/conftest.py) runs every test here once per model and selector.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from evserver.servers.blocking import BlockingServer
from evserver.servers.evented import EventedServer
from tests.support.clients import raw_exchange
from tests.support.servers import MODEL_PARAMS, RunningServer
from tests.support.trees import make_big_file
from tests.support.waiting import wait_until


def connect(server: RunningServer, timeout: float = 10) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)


def test_get_small_files_over_one_keep_alive_connection(server: RunningServer) -> None:
    conn = connect(server)
    for name in ["small.txt", "kib.bin", "medium.bin", "sub/a.txt", "small.txt"]:
        conn.request("GET", "/" + name)
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == (server.root / name).read_bytes()
        assert response.getheader("Connection") is None
    conn.close()


def test_a_cached_file_changed_between_requests_is_served_new(server: RunningServer) -> None:
    static = server.server.static_handler
    assert static is not None
    static.clock = lambda: time.time() + 3600  # type: ignore[method-assign]  # all settled
    path = server.root / "small.txt"
    conn = connect(server)
    for expected in [b"first version\n", b"first version\n", b"second, longer version\n",
                     b"SECOND, LONGER VERSION\n"]:  # the last has the same size: mtime tells
        if path.read_bytes() != expected:
            path.write_bytes(expected)
        for _ in range(3):  # the first request may make the cache entry; the others use it
            conn.request("GET", "/small.txt")
            response = conn.getresponse()
            assert response.read() == expected
    conn.close()


def test_the_evented_model_checks_files_once_per_loop_iteration(
        start_server: Callable[..., RunningServer]) -> None:
    rounds = start_server(model="evented")
    static = rounds.server.static_handler
    assert static is not None and static.check_round is not None
    first = static.check_round
    assert raw_exchange(rounds.address, b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n") \
        .startswith(b"HTTP/1.1 200 ")
    assert static.check_round > first  # advanced by the loop, between iterations
    every = start_server(model="evented", stat_every_request=True)
    assert every.server.static_handler is not None
    assert every.server.static_handler.check_round is None
    for model in ("threaded", "iterative"):  # no common rounds: a stat per request
        blocking = start_server(model=model)
        assert blocking.server.static_handler is not None
        assert blocking.server.static_handler.check_round is None


def _receiving_a_request(running: RunningServer) -> bool:
    """Some connection holds part of a request (white-box: each model's own registry)."""
    server = running.server
    if isinstance(server, EventedServer):
        return any(c.protocol.mid_request for c in list(server.connections))
    assert isinstance(server, BlockingServer)
    return any(p is not None and p.mid_request for p in list(server._live.values()))


def _stopping(running: RunningServer) -> bool:
    server = running.server
    if isinstance(server, EventedServer):
        return server._shutdown_level > 0  # set in the loop's thread, a moment after the call
    assert isinstance(server, BlockingServer)
    return server._stopping  # set by shutdown() itself


def test_a_graceful_stop_lets_a_request_being_received_finish(server: RunningServer) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n")  # the head, but its end
        wait_until(lambda: _receiving_a_request(server), "the server holds the partial head")
        server.server.shutdown()
        wait_until(lambda: _stopping(server), "the stop has begun")
        sock.sendall(b"\r\n")
        reply = b""
        while chunk := sock.recv(65536):  # the answer, then the close: the server is stopping
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"\r\n\r\n" + (server.root / "small.txt").read_bytes())
    server.thread.join(10)
    assert not server.thread.is_alive()


def test_the_health_page_says_ok_while_serving(start_server: Callable[..., RunningServer],
                                               model_name: tuple[str, str]) -> None:
    model, selector = model_name
    server = start_server(model=model, selector=selector, health_path="/-/health")
    conn = connect(server)
    for method in ("GET", "HEAD"):
        conn.request(method, "/-/health")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == (b"ok\n" if method == "GET" else b"")
        assert response.getheader("Cache-Control") == "no-store"
        assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    conn.request("GET", "/-/health?x")  # the page is exactly its path, like the stats page
    assert conn.getresponse().status == 404


def test_the_health_page_says_503_once_a_drain_begins(start_server: Callable[..., RunningServer],
                                                      model_name: tuple[str, str]) -> None:
    """A balancer checking health during the drain learns it before connections are refused."""
    model, selector = model_name
    server = start_server(model=model, selector=selector, health_path="/-/health")
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET /-/health HTTP/1.1\r\nHost: t\r\n")  # the head, but its end
        wait_until(lambda: _receiving_a_request(server), "the server holds the partial head")
        assert not server.server.draining
        server.server.shutdown()
        wait_until(lambda: server.server.draining, "the drain has begun")
        sock.sendall(b"\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nCache-Control: no-store\r\n" in reply and reply.endswith(b"\r\n\r\ndraining\n")
    server.thread.join(10)
    assert not server.thread.is_alive()


def test_urllib_follows_the_folder_redirect_and_gets_the_index(server: RunningServer) -> None:
    (server.root / "sub" / "index.html").write_text("sub index\n")
    with urllib.request.urlopen(server.url("/sub"), timeout=10) as response:
        assert response.status == 200 and response.read() == b"sub index\n"
        assert response.url.endswith("/sub/")


def test_errors_have_status_and_html_body(server: RunningServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server.url("/missing.txt"), timeout=10)
    assert info.value.code == 404
    assert info.value.headers["Content-Type"].startswith("text/html")
    info.value.close()


def test_utf8_and_space_in_names(server: RunningServer) -> None:
    conn = connect(server)
    conn.request("GET", "/with%20space%20%C3%A9.txt")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"spaces and UTF-8\n"


def test_range_and_conditional_requests(server: RunningServer) -> None:
    conn = connect(server)
    conn.request("GET", "/kib.bin", headers={"Range": "bytes=10-19"})
    response = conn.getresponse()
    assert response.status == 206 and response.read() == (bytes(range(256)) * 4)[10:20]
    assert response.getheader("Content-Range") == "bytes 10-19/1024"
    etag = response.getheader("ETag")
    conn.request("GET", "/kib.bin", headers={"If-None-Match": etag})
    response = conn.getresponse()
    assert response.status == 304 and response.read() == b""


def test_head_has_the_fields_of_get_and_no_body(server: RunningServer) -> None:
    conn = connect(server)
    conn.request("HEAD", "/medium.bin")
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Content-Length") == "300000"
    assert response.read() == b""
    conn.request("GET", "/small.txt")  # the connection is still in sync
    assert connect_read(conn) == b"hello, world\n"


def connect_read(conn: http.client.HTTPConnection) -> bytes:
    response = conn.getresponse()
    assert response.status == 200
    return response.read()


def test_pipelined_requests_are_answered_in_order(server: RunningServer) -> None:
    names = ["small.txt", "missing", "kib.bin", "sub/a.txt"] * 5
    data = b"".join(b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % n.encode() for n in names)
    data += b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(server.address, data)
    statuses = re.findall(rb"HTTP/1\.1 ([0-9]{3}) [A-Z]", reply)
    assert statuses == [b"404" if n == "missing" else b"200" for n in names] + [b"200"]
    assert reply.endswith(b"hello, world\n")


def test_http10_without_keep_alive_gets_a_closed_connection(server: RunningServer) -> None:
    reply = raw_exchange(server.address, b"GET /small.txt HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" in reply and reply.endswith(b"hello, world\n")


def test_a_malformed_request_gets_400_and_a_close(server: RunningServer) -> None:
    reply = raw_exchange(server.address, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n"
                         b"GET /small.txt HTTP/1.1\r\nHost: a\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ") and b"hello, world" not in reply


def test_a_big_file_arrives_intact(server: RunningServer, tmp_path: Path) -> None:
    digest = make_big_file(server.root / "big.bin", size=8 * 1024 * 1024)
    conn = connect(server)
    for _ in range(2):  # twice over one keep-alive connection
        conn.request("GET", "/big.bin")
        response = conn.getresponse()
        assert response.status == 200
        assert hashlib.sha256(response.read()).hexdigest() == digest


def test_curl_fetches_a_file_and_a_range(server: RunningServer) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (CI installs it)")
    result = subprocess.run([curl, "-sS", "--fail", server.url("/small.txt")],
                            capture_output=True, timeout=20)
    assert result.returncode == 0 and result.stdout == b"hello, world\n"
    result = subprocess.run([curl, "-sS", "--fail", "-r", "0-4", server.url("/small.txt")],
                            capture_output=True, timeout=20)
    assert result.returncode == 0 and result.stdout == b"hello"


def test_the_stats_endpoint_counts(start_server: Callable[..., RunningServer],
                                   model_name: tuple[str, str]) -> None:
    model, selector = model_name
    server = start_server(model=model, selector=selector, stats_path="/-/stats")
    conn = connect(server)
    conn.request("GET", "/small.txt")
    connect_read(conn)
    conn.request("GET", "/nope")
    conn.getresponse().read()
    conn.request("GET", "/-/stats")
    stats = json.loads(connect_read(conn))
    assert stats["model"] == model and stats["requests"] >= 2
    assert stats["responses"]["2xx"] >= 1 and stats["responses"]["4xx"] >= 1
    assert stats["connections_open"] >= 1


REQUESTS_TO_COMPARE = [
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    b"HEAD /medium.bin HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /kib.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=-100\r\n\r\n",
    b"GET /kib.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,5-6\r\n\r\n",
    b"GET /kib.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5000-\r\n\r\n",
    b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /noindex/ HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /%2e%2e/x HTTP/1.1\r\nHost: t\r\n\r\n",
    b"DELETE /small.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /small.txt HTTP/1.0\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"POST /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
]


def _normalised(reply: bytes) -> bytes:
    """The reply without the fields that differ by nature (Date; multipart boundaries)."""
    lines = [line for line in reply.split(b"\r\n") if not line.startswith(b"Date: ")]
    text = b"\r\n".join(lines)
    if b"multipart/byteranges; boundary=" in text:
        boundary = text.split(b"boundary=")[1].split(b"\r\n")[0]
        text = text.replace(boundary, b"BOUNDARY")
    return text


def test_every_model_gives_identical_responses(start_server: Callable[..., RunningServer],
                                               ) -> None:
    """The models differ in concurrency only, so their bytes on the wire are the same."""
    replies: dict[str, list[bytes]] = {}
    for model, selector in MODEL_PARAMS:
        server = start_server(model=model, selector=selector)
        replies[f"{model}-{selector}"] = [
            _normalised(raw_exchange(server.address, request)) for request in REQUESTS_TO_COMPARE]
        server.stop()
    reference_name, reference = next(iter(replies.items()))
    assert all(reply.startswith(b"HTTP/1.1 ") for reply in reference)
    for name, got in replies.items():
        for request, expected, actual in zip(REQUESTS_TO_COMPARE, reference, got, strict=True):
            assert actual == expected, f"{name} differs from {reference_name} on {request!r}"


def test_two_hundred_concurrent_clients(server: RunningServer) -> None:
    if server.model == "iterative":
        pytest.skip("iterative serves one connection at a time by design; "
                    "tests/servers/test_iterative.py checks its head-of-line behaviour")
    socks = [socket.create_connection(server.address, timeout=20) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(b"GET /kib.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in socks:
            data = b""
            while not data.endswith(bytes(range(256))):
                chunk = sock.recv(65536)
                assert chunk, "server closed early"
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in socks:
            sock.close()
