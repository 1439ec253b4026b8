"""End-to-end tests of the evented server: real sockets on port 0, every selector here.

Servers run in-process (``start_server`` from conftest: ``serve_forever`` in a thread) or as a
child process (``start_process``: ``python -m evserver``) where signals or the server's own
descriptor table matter. Clients wait on their sockets (generous timeouts) or poll a counter
with a deadline; no assertion is about speed. "Served promptly while another client stalls"
means the other request completes while the stalled client is still stalled.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from selectors import EVENT_READ

import pytest

from evserver.drivers.evented import HIGH_WATER
from evserver.servers.evented import EventedServer
from tests.support.clients import close_with_reset
from tests.support.processes import ServerProcess
from tests.support.servers import SELECTORS_HERE, RunningServer
from tests.support.trees import make_big_file
from tests.support.waiting import wait_until

CLIENT_TIMEOUT = 15.0
"""Far above every server timeout used here: reaching it means the server never acted."""

TINY_SNDBUF = 64 * 1024
"""Server-side SO_SNDBUF for the partial-sendfile tests (the kernel doubles it): 20 MiB take over
a hundred partial sendfile rounds. Smaller is slower, not harsher: loopback's MSS is 64 KiB, so
a buffer of one segment waits for the client's delayed ACK (40 ms) on every round."""

GET_SMALL = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
SMALL_BODY = b"hello, world\n"

StartServer = Callable[..., RunningServer]
StartProcess = Callable[..., ServerProcess]


@pytest.fixture(params=SELECTORS_HERE)
def selector(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def evented(handle: RunningServer) -> EventedServer:
    server = handle.server
    assert isinstance(server, EventedServer)
    return server


class ResponseReader:
    """Reads responses with a Content-Length body off a blocking socket, pipelining-safe."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self, what: str) -> None:
        chunk = self.sock.recv(1 << 20)
        assert chunk, f"closed inside {what}: {self.buffer[:200]!r}"
        self.buffer += chunk

    def read(self) -> tuple[bytes, bytes]:
        """The next response: (head, body)."""
        while b"\r\n\r\n" not in self.buffer:
            self._more("a head")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._more("a body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response, when the caller expects nothing after it."""
    reader = ResponseReader(sock)
    response = reader.read()
    assert not reader.buffer, "more bytes than one response"
    return response


def sha256_over_http(connection: http.client.HTTPConnection, path: str,
                     headers: dict[str, str] | None = None) -> tuple[int, str]:
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    digest = hashlib.sha256()
    while chunk := response.read(1 << 20):
        digest.update(chunk)
    return response.status, digest.hexdigest()


# -- every selector ---------------------------------------------------------------------------


def test_every_selector_serves_keep_alive(start_server: StartServer, selector: str) -> None:
    handle = start_server(selector=selector)
    assert evented(handle).reactor.selector_name == selector
    connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=CLIENT_TIMEOUT)
    for _ in range(3):
        connection.request("GET", "/small.txt")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == SMALL_BODY
    connection.close()
    assert handle.server.stats.connections_total == 1  # all three on one connection


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "no-sendfile"])
def test_20_mib_twice_over_keep_alive_with_a_tiny_send_buffer(
        start_server: StartServer, docroot: Path, selector: str, use_sendfile: bool) -> None:
    expected = make_big_file(docroot / "big.bin")
    handle = start_server(selector=selector, use_sendfile=use_sendfile)
    evented(handle)._test_sndbuf = TINY_SNDBUF  # forces many partial sendfile() rounds
    connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=CLIENT_TIMEOUT)
    assert sha256_over_http(connection, "/big.bin") == (200, expected)
    assert sha256_over_http(connection, "/big.bin") == (200, expected)
    status, _ = sha256_over_http(connection, "/big.bin", {"Range": "bytes=1000-"})
    assert status == 206
    connection.close()
    stats = handle.server.stats
    assert stats.connections_total == 1
    assert (stats.sendfile_bytes > 0) == use_sendfile


# -- many clients, pipelining, backpressure ----------------------------------------------------


def test_two_hundred_concurrent_raw_clients(start_server: StartServer, selector: str) -> None:
    handle = start_server(selector=selector)
    clients = [socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT)
               for _ in range(200)]
    try:
        for sock in clients:  # every request is in before any response is read
            sock.sendall(GET_SMALL)
        for sock in clients:
            head, body = read_response(sock)
            assert head.startswith(b"HTTP/1.1 200 ") and body == SMALL_BODY
    finally:
        for sock in clients:
            sock.close()


def test_a_long_pipeline_is_answered_in_order(start_server: StartServer, selector: str) -> None:
    handle = start_server(selector=selector)
    paths = ["/small.txt", "/medium.bin", "/kib.bin", "/missing"] * 30  # > one protocol batch
    requests = b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths)
    root = handle.root
    with socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(requests)
        reader = ResponseReader(sock)
        for path in paths:
            head, body = reader.read()
            if path == "/missing":
                assert head.startswith(b"HTTP/1.1 404 ")
            else:
                assert head.startswith(b"HTTP/1.1 200 ")
                assert body == (root / path[1:]).read_bytes()


def test_a_client_that_never_reads_does_not_stall_others(
        start_server: StartServer, docroot: Path, selector: str) -> None:
    make_big_file(docroot / "big.bin")
    handle = start_server(selector=selector)
    server = evented(handle)
    server._test_sndbuf = TINY_SNDBUF
    stalled = socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY_SNDBUF)
    try:
        # Pipeline many requests and never read: the server must stop reading from us.
        stalled.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n" * 50)
        wait_until(lambda: any(c.transport.pending_bytes for c in server.connections),
                   "the stalled client's output queued")
        with socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT) as other:
            for _ in range(5):
                other.sendall(GET_SMALL)
                assert read_response(other)[1] == SMALL_BODY
        # Still stalled, still connected, and not being read from (backpressure).
        victim = max(server.connections, key=lambda c: c.transport.pending_bytes)
        assert not victim.closed
        assert victim.transport.pending_bytes > 0
        if victim.transport.pending_bytes >= HIGH_WATER or victim.protocol.paused:
            assert not victim._mask & EVENT_READ
    finally:
        stalled.close()


# -- timeouts ---------------------------------------------------------------------------------


def test_slowloris_is_cut_off_by_the_header_timeout(start_server: StartServer,
                                                   selector: str) -> None:
    handle = start_server(selector=selector, header_timeout=0.5)
    head = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n" + b"X-Drip: " + b"a" * 10_000
    with socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.settimeout(0.05)  # the drip interval: "until the server speaks, or the next byte"
        received = b""
        sent = 0
        while sent < len(head):
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                sock.sendall(head[sent:sent + 1])  # every byte arrives well within the timeout
                sent += 1
                continue
            if not chunk:
                break
            received += chunk
        assert sent < len(head), "the whole slow head got through: no header timeout"
        sock.settimeout(CLIENT_TIMEOUT)
        while chunk := sock.recv(4096):
            received += chunk
    assert received.startswith(b"HTTP/1.1 408 ")
    assert handle.server.stats.timeouts["header"] == 1


def test_a_request_behind_a_long_transfer_gets_its_header_time_after_it(
        start_server: StartServer, docroot: Path) -> None:
    """The server stops reading while a response is going out, so a request that arrived in
    part behind it cannot be finished meanwhile: its header clock restarts once the output has
    drained, instead of running out during the transfer (a 408 the client could not avoid)."""
    header_timeout = 0.5
    size = 4 * 1024 * 1024
    make_big_file(docroot / "big.bin", size)
    handle = start_server(header_timeout=header_timeout)
    evented(handle)._test_sndbuf = TINY_SNDBUF  # the kernel holds little: the server keeps
    client = socket.socket()  # the output queued until the client has read most of it
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # set before connect
    client.settimeout(CLIENT_TIMEOUT)
    with client:
        client.connect(handle.address)
        client.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /small.txt HTTP/1.1\r\nHo")
        started = time.monotonic()
        reader = ResponseReader(client)
        while b"\r\n\r\n" not in reader.buffer:
            reader._more("the big head")
        head_length = reader.buffer.index(b"\r\n\r\n") + 4
        while len(reader.buffer) < head_length + size:
            if time.monotonic() - started < 2 * header_timeout:
                time.sleep(0.01)  # a slow reader (pacing the client, not waiting for a result):
                chunk = client.recv(16 * 1024)  # 16 KiB per 10 ms, 1.6 MiB by the timeout x 2
                assert chunk, "closed inside the big body"
                reader.buffer += chunk
            else:
                reader._more("the big body")
        assert time.monotonic() - started > header_timeout  # the transfer outlasted the timeout
        client.sendall(b"st: t\r\n\r\n")  # the rest of the second request, at once
        head, body = reader.read()
        assert head.startswith(b"HTTP/1.1 200 ") and len(body) == size
        head, body = reader.read()
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert body == SMALL_BODY
    assert handle.server.stats.timeouts["header"] == 0


def test_idle_keep_alive_connection_is_closed(start_server: StartServer, selector: str) -> None:
    handle = start_server(selector=selector, idle_timeout=0.3)
    with socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(GET_SMALL)
        assert read_response(sock)[1] == SMALL_BODY
        assert sock.recv(100) == b""  # closed without a word (RFC 9112 9.5)
    assert handle.server.stats.timeouts["idle"] == 1


def test_an_error_response_is_readable_then_the_server_closes(start_server: StartServer) -> None:
    handle = start_server()
    with socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT) as sock:
        # A bad request followed by more input the server will never parse: closing with it
        # unread would reset the connection and could destroy the 400 before we read it.
        sock.sendall(b"BAD\r\n\r\n" + b"x" * 100_000)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 ")
    assert b"Connection: close" in received


# -- resets, descriptors, limits ----------------------------------------------------------------


def test_a_reset_mid_transfer_leaves_the_server_healthy(
        start_server: StartServer, docroot: Path, selector: str) -> None:
    make_big_file(docroot / "big.bin")
    handle = start_server(selector=selector)
    for _ in range(3):
        sock = socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT)
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        close_with_reset(sock)
    wait_until(lambda: handle.server.stats.connections_open == 0, "reset connections closed")
    with socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(GET_SMALL)
        assert read_response(sock)[1] == SMALL_BODY


def test_max_connections_holds_new_clients_until_a_slot_frees(start_server: StartServer) -> None:
    handle = start_server(max_connections=2)
    first = socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT)
    second = socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT)
    for sock in (first, second):
        sock.sendall(GET_SMALL)
        assert read_response(sock)[1] == SMALL_BODY
    third = socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT)  # in the backlog
    try:
        third.sendall(GET_SMALL)
        assert handle.server.stats.connections_total == 2
        first.close()  # frees a slot: the third is accepted and answered
        assert read_response(third)[1] == SMALL_BODY
        assert handle.server.stats.connections_total == 3
    finally:
        for sock in (first, second, third):
            sock.close()


def test_descriptor_exhaustion_pauses_accepting(start_server: StartServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    handle = start_server()
    server = evented(handle)

    class Exhausted:
        def accept(self) -> None:
            raise OSError(24, "Too many open files")  # EMFILE

    real = server.listener
    done = []

    def in_loop() -> None:  # run the accept path inside the loop's thread
        server.listener = Exhausted()  # type: ignore[assignment]
        try:
            server._on_listener_ready(EVENT_READ)
        finally:
            server.listener = real
        done.append(server._watching_listener)

    server.reactor.call_soon_threadsafe(in_loop)
    wait_until(lambda: bool(done), "the accept path ran")
    assert done == [False]  # stopped watching the listener, did not spin
    assert server.stats.accept_pauses == 1
    assert "pausing accepting" in caplog.text
    wait_until(lambda: server._watching_listener, "accepting resumed after the pause")
    with socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(GET_SMALL)
        assert read_response(sock)[1] == SMALL_BODY


def test_descriptors_back_to_baseline_after_thousands_of_requests(
        start_process: StartProcess, docroot: Path) -> None:
    make_big_file(docroot / "big.bin")
    server = start_process("-q", "--idle-timeout", "5")
    baseline = server.open_fds()
    address = server.address
    for round_number in range(20):
        with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:  # keep-alive
            reader = ResponseReader(sock)
            for _ in range(100):
                sock.sendall(GET_SMALL + b"GET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
                assert reader.read()[1] == SMALL_BODY
                assert reader.read()[0].startswith(b"HTTP/1.1 404 ")
        with socket.create_connection(address, timeout=CLIENT_TIMEOUT) as sock:  # an error
            sock.sendall(b"GET / HTTP/9.9\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 ")
        sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)  # a reset mid-file
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n" * (1 + round_number % 3))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        close_with_reset(sock)
        sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)  # half a request
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHo")
        close_with_reset(sock)
    wait_until(lambda: server.open_fds() == baseline,
               f"server descriptors back to {baseline} (now {server.open_fds()})")


# -- shutdown -----------------------------------------------------------------------------------


def test_shutdown_closes_idle_connections_and_returns(start_server: StartServer) -> None:
    handle = start_server()
    idle = socket.create_connection(handle.address, timeout=CLIENT_TIMEOUT)
    idle.sendall(GET_SMALL)
    assert read_response(idle)[1] == SMALL_BODY
    handle.server.shutdown()
    handle.thread.join(CLIENT_TIMEOUT)
    assert not handle.thread.is_alive()
    assert idle.recv(100) == b""
    idle.close()
    handle.server.server_close()


def test_sigterm_drains_an_in_flight_transfer_and_exits_0(start_process: StartProcess,
                                                         docroot: Path) -> None:
    expected = make_big_file(docroot / "big.bin")
    server = start_process("-q")
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # keep the transfer going
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        server.process.send_signal(signal.SIGTERM)  # mid-transfer
        _head, _, body_start = first.partition(b"\r\n\r\n")
        digest = hashlib.sha256(body_start)
        received = len(body_start)
        while chunk := sock.recv(1 << 20):
            digest.update(chunk)
            received += len(chunk)
    assert received == 20 * 1024 * 1024
    assert digest.hexdigest() == expected
    assert server.process.wait(CLIENT_TIMEOUT) == 0


def test_second_sigterm_exits_at_once(start_process: StartProcess, docroot: Path) -> None:
    make_big_file(docroot / "big.bin")
    server = start_process("-q", "--drain-timeout", "60")
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        # The first signal starts a drain that would wait 60 s for us (we read no more); the
        # second exits at once. Two signals sent back to back may merge into one (POSIX signals
        # do not queue), so repeat until the process is gone, each time waiting a while.
        for _ in range(int(CLIENT_TIMEOUT / 0.5)):
            server.process.send_signal(signal.SIGTERM)
            try:
                returncode = server.process.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise AssertionError("the server ignored repeated SIGTERMs")
        assert returncode in (0, 128 + signal.SIGTERM)


# -- curl ---------------------------------------------------------------------------------------


def test_curl_fetches_a_file_and_a_range(start_process: StartProcess, docroot: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (CI installs it)")
    server = start_process("-q")
    url = f"http://127.0.0.1:{server.port}/medium.bin"
    data = (docroot / "medium.bin").read_bytes()
    whole = subprocess.run([curl, "-sS", "--fail", url], capture_output=True, check=True,
                           timeout=CLIENT_TIMEOUT)
    assert whole.stdout == data
    part = subprocess.run([curl, "-sS", "--fail", "-r", "100-199", url], capture_output=True,
                          check=True, timeout=CLIENT_TIMEOUT)
    assert part.stdout == data[100:200]
    assert os.path.getsize(docroot / "medium.bin") == len(data)


def test_a_request_unread_when_the_hand_over_grace_ends_is_answered_not_reset(
        start_server: Callable[..., RunningServer]) -> None:
    """A connection accepted just before the server hands over, whose request has arrived but
    was not read yet when the grace ends (same loop round): closing it then would reset it (the
    kernel sends RST over unread bytes). It is read and answered, with ``Connection: close``."""
    handle = start_server()
    server = evented(handle)
    with socket.create_connection(handle.address, timeout=10) as client:
        wait_until(lambda: len(server.connections) == 1, "the connection accepted")
        (connection,) = server.connections
        arrived = threading.Event()

        def end_grace_with_the_request_unread() -> None:
            # In the loop's thread, so the loop cannot read the request meanwhile.
            select.select([connection.fd], [], [], 10)
            arrived.set()
            server._on_retire_request()
            server._end_grace()

        server.reactor.call_soon_threadsafe(end_grace_with_the_request_unread)
        client.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert arrived.wait(10)
        response = b""
        while chunk := client.recv(65536):  # a reset raises ConnectionResetError here
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" in response
