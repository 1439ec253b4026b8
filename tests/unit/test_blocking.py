"""Unit tests of evserver.net.blocking: the send helpers of the threaded and iterative models.

A socketpair stands in for a connection; a temporary file stands in for a document. The reader
side runs in a thread when the sender would otherwise block on a full socket buffer.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import select
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from evserver.bodies import FileRegion, Item
from evserver.net import blocking
from evserver.net.blocking import FileShrankError, send_items, send_region
from evserver.protocol import MAX_RESPONSES_PER_BATCH
from tests.support.servers import RunningServer
from tests.support.trees import BIG_FILE_SIZE, make_big_file

SMALL_BUFFER = 4096
"""Socket buffer size that forces partial sends and sendfile calls for a file of a few MiB."""


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server_side, client_side = socket.socketpair()
    server_side.settimeout(5.0)
    client_side.settimeout(5.0)
    yield server_side, client_side
    server_side.close()
    client_side.close()


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    content = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    return path, content


def read_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = []
    while count:
        chunk = sock.recv(min(count, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class Recorder:
    """Wraps a socket and records each send or sendmsg, to check that bytes items are coalesced."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends: list[bytes] = []
        self.calls: list[str] = []

    def send(self, data: bytes | memoryview, flags: int = 0) -> int:
        self.sends.append(bytes(data))
        self.calls.append("send")
        return self.sock.send(data, flags)

    def sendmsg(self, parts: list[bytes], ancillary: tuple = (), flags: int = 0) -> int:
        self.sends.append(b"".join(parts))  # one system call, recorded as what it was given
        self.calls.append("sendmsg")
        return self.sock.sendmsg(parts, ancillary, flags)

    def fileno(self) -> int:
        return self.sock.fileno()

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()


def test_consecutive_bytes_are_coalesced_into_one_send(pair, tmp_path):
    server_side, client_side = pair
    path = tmp_path / "f"
    path.write_bytes(b"FILE")
    fd = os.open(path, os.O_RDONLY)
    recorder = Recorder(server_side)
    items: list[Item] = [b"head ", b"more ", FileRegion(fd, 0, 4), b" tail", b"!"]
    send_items(recorder, items)  # type: ignore[arg-type]
    assert recorder.sends == [b"head more ", b" tail!"]  # the region went by sendfile between
    assert read_exactly(client_side, 20) == b"head more FILE tail!"
    assert not fd_is_open(fd)


def test_head_and_large_body_are_gathered_and_finished_when_cut_short(pair):
    server_side, client_side = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    head, body = os.urandom(300), os.urandom(2_000_000)
    recorder = Recorder(server_side)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_exactly(client_side, 2_000_300)))
    reader.start()
    send_items(recorder, [head, body])  # type: ignore[arg-type]
    reader.join()
    assert received == [head + body]
    assert recorder.calls[0] == "sendmsg"  # one gathered call first, never a joined copy
    assert len(recorder.sends) > 1  # the small buffer cut it short; the rest followed in order


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "pread+send"])
def test_region_at_an_offset_is_sent_exactly(pair, data_file, use_sendfile):
    server_side, client_side = pair
    path, content = data_file
    fd = os.open(path, os.O_RDONLY)
    offset, count = 12345, 1_000_003
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_all(client_side)))
    reader.start()
    via_sendfile = send_items(server_side, [b"<", FileRegion(fd, offset, count), b">"],
                              use_sendfile=use_sendfile)
    server_side.shutdown(socket.SHUT_WR)
    reader.join()
    assert received[0] == b"<" + content[offset:offset + count] + b">"
    assert via_sendfile == (count if use_sendfile else 0)
    assert not fd_is_open(fd)


def test_partial_sendfile_through_a_tiny_buffer_resumes_at_the_right_offset(pair, data_file):
    server_side, client_side = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    client_side.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    path, content = data_file
    fd = os.open(path, os.O_RDONLY)
    digest: list[str] = []
    reader = threading.Thread(
        target=lambda: digest.append(hashlib.sha256(read_all(client_side)).hexdigest()))
    reader.start()
    send_items(server_side, [FileRegion(fd, 0, len(content))])
    server_side.shutdown(socket.SHUT_WR)
    reader.join()
    assert digest[0] == hashlib.sha256(content).hexdigest()


def test_fallback_when_sendfile_is_unavailable(pair, data_file, monkeypatch):
    monkeypatch.setattr(blocking, "HAVE_SENDFILE", False)
    server_side, client_side = pair
    path, content = data_file
    fd = os.open(path, os.O_RDONLY)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_all(client_side)))
    reader.start()
    assert send_items(server_side, [FileRegion(fd, 7, 100_000)]) == 0
    server_side.shutdown(socket.SHUT_WR)
    reader.join()
    assert received[0] == content[7:100_007]


def test_fallback_when_sendfile_refuses_the_descriptors(pair, tmp_path, monkeypatch):
    def refuse(*args: object) -> int:
        raise OSError(22, "Invalid argument")  # EINVAL, as for a file system without splice

    monkeypatch.setattr(blocking.os, "sendfile", refuse)
    server_side, client_side = pair
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    assert send_region(server_side, FileRegion(fd, 2, 5)) == 0
    os.close(fd)
    assert read_exactly(client_side, 5) == b"23456"


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "pread+send"])
def test_file_shorter_than_its_region_raises_instead_of_a_short_body(pair, tmp_path,
                                                                     use_sendfile):
    server_side, _ = pair
    path = tmp_path / "shrinking"
    path.write_bytes(b"x" * 1000)
    fd = os.open(path, os.O_RDONLY)
    os.truncate(path, 600)  # the file shrinks between the handler's fstat and the send
    with pytest.raises(FileShrankError):
        send_items(server_side, [b"head", FileRegion(fd, 0, 1000)], use_sendfile=use_sendfile)
    assert not fd_is_open(fd)
    assert isinstance(FileShrankError("x"), OSError)


def test_every_region_is_released_even_those_never_reached(pair, tmp_path):
    server_side, client_side = pair
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    fds = [os.open(path, os.O_RDONLY) for _ in range(3)]
    client_side.close()  # the peer is gone: the first send fails
    items: list[Item] = [b"head" * 100_000, FileRegion(fds[0], 0, 3), FileRegion(fds[1], 0, 3),
                         FileRegion(fds[2], 0, 3, close_after=False)]
    with pytest.raises(OSError):
        send_items(server_side, items)
    assert not fd_is_open(fds[0]) and not fd_is_open(fds[1])
    assert fd_is_open(fds[2])  # a region that does not own its descriptor leaves it open
    os.close(fds[2])


def test_a_peer_that_reads_nothing_times_out(pair, data_file):
    server_side, _ = pair
    server_side.settimeout(0.2)
    path, content = data_file
    fd = os.open(path, os.O_RDONLY)
    with pytest.raises(TimeoutError):
        send_items(server_side, [FileRegion(fd, 0, len(content))])
    assert not fd_is_open(fd)


def test_bytes_larger_than_the_socket_buffer_are_sent_whole(pair):
    server_side, client_side = pair
    server_side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    payload = os.urandom(2 * 1024 * 1024)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(read_all(client_side)))
    reader.start()
    send_items(server_side, [payload[:10], payload[10:]])
    server_side.shutdown(socket.SHUT_WR)
    reader.join()
    assert received[0] == payload


# -- evserver.servers.blocking: the drive function, through both blocking models --------------
#
# These run against real servers (tests/conftest.py's ``start_server``, port 0, always stopped).
# The behaviour every model shares is in tests/test_e2e.py; here is what ``drive`` and the
# shared accept loop add: timeouts, lingering, shutdown, batches of pipelined requests.

BLOCKING_MODELS = ["threaded", "iterative"]

WAIT = 10.0
"""Upper bound on any single wait in these tests: reached only when the server is broken."""


@pytest.fixture(params=BLOCKING_MODELS)
def blocking_model(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def open_client(server: RunningServer, timeout: float = WAIT) -> socket.socket:
    return socket.create_connection(server.address, timeout=timeout)


def read_response(stream: BinaryIO) -> tuple[int, dict[str, str], bytes]:
    """One response from a buffered reader: (status, fields in lower case, body)."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    fields = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip().lower()] = value.strip()
    body = stream.read(int(fields.get("content-length", "0")))
    return int(status_line.split()[1]), fields, body


def at_eof(sock: socket.socket) -> bool:
    """True when the server has closed ``sock`` (waits at most WAIT for it)."""
    sock.settimeout(WAIT)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_keep_alive_serves_several_requests_on_one_connection(start_server, blocking_model):
    server = start_server(model=blocking_model)
    with open_client(server) as sock, sock.makefile("rb") as stream:
        for name, expected in [("small.txt", b"hello, world\n"), ("kib.bin", None),
                               ("small.txt", b"hello, world\n")]:
            sock.sendall(b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % name.encode())
            status, fields, body = read_response(stream)
            assert status == 200 and "connection" not in fields
            assert body == (expected if expected is not None else bytes(range(256)) * 4)
    assert server.server.stats.connections_total == 1


def test_more_pipelined_requests_than_one_batch_come_back_in_order(start_server,
                                                                   blocking_model):
    server = start_server(model=blocking_model)
    count = MAX_RESPONSES_PER_BATCH * 2 + 5  # the protocol pauses twice; drive must resume it
    names = [b"small.txt" if n % 2 else b"kib.bin" for n in range(count)]
    data = b"".join(b"GET /%s?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (name, n)
                    for n, name in enumerate(names))
    with open_client(server) as sock, sock.makefile("rb") as stream:
        sock.sendall(data + b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        for name in names:
            status, _, body = read_response(stream)
            assert status == 200 and len(body) == (13 if name == b"small.txt" else 1024)
        status, fields, body = read_response(stream)
        assert fields["connection"] == "close" and body == b"hello, world\n"
        assert stream.read() == b""  # and then the server closed


def test_http10_keep_alive_is_honoured(start_server, blocking_model):
    server = start_server(model=blocking_model)
    with open_client(server) as sock, sock.makefile("rb") as stream:
        for _ in range(2):
            sock.sendall(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, fields, body = read_response(stream)
            assert status == 200 and fields["connection"] == "keep-alive"
        sock.sendall(b"GET /small.txt HTTP/1.0\r\n\r\n")
        status, fields, body = read_response(stream)
        assert fields["connection"] == "close" and body == b"hello, world\n"
        assert stream.read() == b""


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "no-sendfile"])
def test_a_large_file_arrives_intact_over_keep_alive(start_server, blocking_model, docroot,
                                                     use_sendfile):
    digest = make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model, use_sendfile=use_sendfile)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    for _ in range(2):
        conn.request("GET", "/big.bin")
        response = conn.getresponse()
        assert response.status == 200
        assert hashlib.sha256(response.read()).hexdigest() == digest
    conn.close()
    stats = server.server.stats
    assert stats.sendfile_bytes == (2 * BIG_FILE_SIZE if use_sendfile else 0)


def test_slowloris_is_cut_off_by_the_header_timeout(start_server, blocking_model):
    """One byte at a time, each well within the timeout: the deadline runs from the first byte,
    so the whole head must arrive in time, and a 408 comes back before it is complete."""
    server = start_server(model=blocking_model, header_timeout=0.5)
    head = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"z" * 10_000
    with open_client(server) as sock:
        sent = 0
        readable: list[socket.socket] = []
        while not readable and sent < len(head):
            sock.sendall(head[sent:sent + 1])
            sent += 1
            readable, _, _ = select.select([sock], [], [], 0.05)  # the pace of the attack
        assert sent < len(head), "the server waited for the whole dribbled head"
        with sock.makefile("rb") as stream:
            status, fields, _ = read_response(stream)
            assert status == 408 and fields["connection"] == "close"
            assert stream.read() == b""
    assert server.server.stats.timeouts["header"] == 1


def test_an_idle_keep_alive_connection_is_closed_silently(start_server, blocking_model):
    server = start_server(model=blocking_model, idle_timeout=0.3)
    with open_client(server) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(stream)[0] == 200
        assert stream.read() == b""  # no 408 on an idle connection (RFC 9112 9.5), just a close
    assert server.server.stats.timeouts["idle"] == 1


def test_after_an_error_the_client_reads_the_response_not_a_reset(start_server,
                                                                  blocking_model):
    """The server closes with unread input waiting: without lingering the kernel would send a
    reset and the client could lose the 400 it has not read yet."""
    server = start_server(model=blocking_model)
    with open_client(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
        sock.sendall(b"junk that follows the bad request " * 2000)
        with sock.makefile("rb") as stream:
            status, fields, _ = read_response(stream)
            assert status == 400 and fields["connection"] == "close"
            assert stream.read() == b""


def test_graceful_shutdown_lets_a_transfer_in_flight_finish(start_server, blocking_model,
                                                            docroot):
    digest = make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model)
    with open_client(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 200")  # the response has begun
        server.server.shutdown()  # returns at once, from this thread
        while stream.readline() != b"\r\n":
            pass
        assert hashlib.sha256(stream.read(BIG_FILE_SIZE)).hexdigest() == digest
        assert stream.read() == b""  # then the keep-alive connection is closed, not reused
        stream.close()
    server.thread.join(WAIT)
    assert not server.thread.is_alive()


def test_the_drain_timeout_ends_a_transfer_that_does_not_progress(start_server,
                                                                  blocking_model, docroot):
    make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model, drain_timeout=0.2)
    with open_client(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")  # begun; then we stop reading
        server.server.shutdown()
        server.thread.join(WAIT)
        assert not server.thread.is_alive()


def test_a_second_shutdown_stops_at_once(start_server, blocking_model, docroot):
    make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model, drain_timeout=3600)
    with open_client(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        server.server.shutdown()
        server.server.shutdown()
        server.thread.join(WAIT)
        assert not server.thread.is_alive()


def test_descriptors_come_back_after_resets_and_errors(start_server, blocking_model):
    server = start_server(model=blocking_model)
    before = len(os.listdir("/proc/self/fd"))
    for n in range(30):
        sock = open_client(server)
        if n % 3 == 0:
            sock.sendall(b"GET /medium.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.recv(10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif n % 3 == 1:
            sock.sendall(b"NOT HTTP\r\n\r\n")
            sock.recv(10)
        sock.close()  # a reset, a closed error connection, or a connection that sent nothing
    with open_client(server) as sock, sock.makefile("rb") as stream:  # the server is healthy
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert read_response(stream)[0] == 200
        assert stream.read() == b""
    server.stop()  # (the fixture's own stop() then finds it stopped)
    assert len(os.listdir("/proc/self/fd")) <= before - 3  # listener and wake-up pair closed too
