"""The transport: one send for a head and a small body, partial sends, sendfile and its fallback,
descriptors released, errors contained. Real TCP sockets on loopback."""

from __future__ import annotations

import hashlib
import logging
import os
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from evserver.bodies import FileRegion, Item
from evserver.net.transport import SplitWritesTransport, Transport
from evserver.stats import Stats
from tests.support.clients import linger_zero, read_exactly

TINY_BUFFER = 4096
"""SO_SNDBUF for the sender: forces many partial sends (the kernel doubles it)."""

RECV_TIMEOUT = 10.0


class CountingSocket(socket.socket):
    """A socket that counts send() and sendmsg() calls (sendfile goes straight to the fd)."""

    sends: list[int]

    def send(self, data: object, flags: int = 0) -> int:  # type: ignore[override]
        sent = super().send(data, flags)  # type: ignore[arg-type]
        self.sends.append(sent)
        return sent

    def sendmsg(self, buffers: object, *args: object) -> int:  # type: ignore[override]
        sent = super().sendmsg(buffers, *args)  # type: ignore[arg-type]
        self.sends.append(sent)  # one system call, however many buffers it gathered
        return sent


def tcp_pair(sndbuf: int | None = None) -> tuple[CountingSocket, socket.socket]:
    """(server side: non-blocking, counting; client side: blocking with a timeout)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=RECV_TIMEOUT)
        accepted, _ = listener.accept()
    server = CountingSocket(fileno=accepted.detach())
    server.sends = []
    server.setblocking(False)
    if sndbuf is not None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    return server, client


@pytest.fixture
def pair() -> Iterator[tuple[CountingSocket, socket.socket]]:
    server, client = tcp_pair()
    yield server, client
    server.close()
    client.close()


def pump(transport: Transport, client: socket.socket, total: int) -> bytes:
    """Flush on writable, read on readable, until ``total`` bytes arrived (a tiny reactor)."""
    received = bytearray()
    while len(received) < total:
        writers = [transport.sock] if transport.pending_bytes else []
        readable, writable, _ = select.select([client], writers, [], RECV_TIMEOUT)
        assert readable or writable, "no progress"
        if writable:
            transport.flush()
        if readable:
            received += client.recv(1 << 20)
    assert transport.pending_bytes == 0
    return bytes(received)


def region_of(path: Path, offset: int = 0, count: int | None = None) -> FileRegion:
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    return FileRegion(fd, offset, size - offset if count is None else count)


def test_head_and_small_body_leave_in_one_send(pair: tuple[CountingSocket, socket.socket]) -> None:
    server, client = pair
    transport = Transport(server)
    transport.write([b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 1024])
    assert server.sends == [19 + 1024]
    assert transport.pending_bytes == 0
    assert read_exactly(client, 19 + 1024).endswith(b"x" * 1024)


def test_head_and_large_body_leave_in_one_gathered_send(
        pair: tuple[CountingSocket, socket.socket]) -> None:
    server, client = pair
    transport = Transport(server)
    body = os.urandom(64 * 1024)
    transport.write([b"HTTP/1.1 200 OK\r\n\r\n", body])
    assert server.sends == [19 + len(body)]  # one sendmsg, no copy into one buffer
    assert transport.pending_bytes == 0
    assert read_exactly(client, 19 + len(body)) == b"HTTP/1.1 200 OK\r\n\r\n" + body


@pytest.mark.parametrize("head_size", [10, 50_000])
def test_gathered_send_cut_short_keeps_the_rest_in_order(head_size: int) -> None:
    # A tiny buffer cuts the sendmsg inside the body, or (a huge head) inside the head.
    server, client = tcp_pair(TINY_BUFFER)
    with server, client:
        transport = Transport(server)
        head, body = os.urandom(head_size), os.urandom(500_000)
        transport.write([head, body])
        assert 0 < transport.pending_bytes < head_size + len(body)
        assert pump(transport, client, head_size + len(body)) == head + body


def test_pipelined_responses_coalesce(pair: tuple[CountingSocket, socket.socket]) -> None:
    server, client = pair
    transport = Transport(server)
    items: list[Item] = [b"head1 ", b"body1 ", b"head2 ", b"body2"]
    transport.write(items)
    assert len(server.sends) == 1
    assert read_exactly(client, 23) == b"head1 body1 head2 body2"


def test_the_queue_is_made_only_when_something_waits(
        tmp_path: Path, pair: tuple[CountingSocket, socket.socket]) -> None:
    # Memory: writes that leave whole make no queue list; the first that cannot (here a file
    # region) makes it, and everything still goes out in order.
    server, client = pair
    transport = Transport(server)
    transport.write([b"one "])
    transport.write([b"two ", b"2" * 100])
    assert transport._queue is None and transport.pending_bytes == 0
    path = tmp_path / "file"
    path.write_bytes(b"F" * 5000)
    transport.write([b"three ", region_of(path), b" four"])
    assert transport._queue is not None
    transport.write([b" five"])
    expected = b"one two " + b"2" * 100 + b"three " + b"F" * 5000 + b" four five"
    assert pump(transport, client, len(expected)) == expected


def test_partial_sends_keep_order_and_count_pending() -> None:
    server, client = tcp_pair(TINY_BUFFER)
    with server, client:
        transport = Transport(server)
        payload = [os.urandom(300_000), os.urandom(5), os.urandom(700_000)]
        transport.write([payload[0]])
        assert 0 < transport.pending_bytes < 300_000  # the kernel took some, we keep the rest
        transport.write(payload[1:])  # queued behind, no send attempted while busy
        assert transport.pending_bytes > 700_000
        assert pump(transport, client, 1_000_005) == b"".join(payload)


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "pread"])
def test_file_region_with_tiny_buffer_resumes_at_the_right_offset(
        tmp_path: Path, use_sendfile: bool) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    stats = Stats()
    server, client = tcp_pair(TINY_BUFFER)
    with server, client:
        transport = Transport(server, use_sendfile=use_sendfile, stats=stats)
        region = region_of(path, offset=1000, count=len(data) - 2000)
        transport.write([b"HEAD", region, b"TAIL"])
        assert transport.pending_bytes > 0
        received = pump(transport, client, 4 + len(data) - 2000 + 4)
    assert hashlib.sha256(received).digest() == \
        hashlib.sha256(b"HEAD" + data[1000:-1000] + b"TAIL").digest()
    assert region.close_after is False  # released once sent: its descriptor is closed
    assert region.offset == 1000 and region.count == len(data) - 2000  # never mutated
    assert stats.sendfile_bytes == (len(data) - 2000 if use_sendfile else 0)
    if not use_sendfile:
        assert server.sends  # the fallback goes through send()


def test_sendfile_unsupported_falls_back_to_pread(pair: tuple[CountingSocket, socket.socket]) \
        -> None:
    server, client = pair
    fd = os.open("/proc/self/cmdline", os.O_RDONLY)  # procfs: no sendfile on most kernels
    expected = os.pread(fd, 4096, 0)
    try:
        os.sendfile(server.fileno(), fd, 0, 1)
        os.close(fd)
        pytest.skip("this kernel can sendfile from /proc/self/cmdline")
    except OSError:
        pass
    transport = Transport(server)
    transport.write([FileRegion(fd, 0, len(expected))])
    assert read_exactly(client, len(expected)) == expected
    assert not transport.closed


def test_a_file_that_shrank_aborts_instead_of_pretending(
        tmp_path: Path, pair: tuple[CountingSocket, socket.socket],
        caplog: pytest.LogCaptureFixture) -> None:
    server, client = pair
    path = tmp_path / "short.bin"
    path.write_bytes(b"a" * 100)
    transport = Transport(server)
    with caplog.at_level(logging.WARNING, logger="evserver.net"):
        transport.write([b"H", region_of(path, count=200)])  # promises 100 bytes too many
        transport.flush()  # the first sendfile sent 100 bytes; the next one returns 0
    assert transport.closed
    assert "shrank" in caplog.text
    assert read_exactly(client, 101) == b"H" + b"a" * 100
    assert client.recv(10) == b""  # closed short of the promise, never padded


def test_abort_releases_queued_regions(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(4 * 1024 * 1024))
    server, client = tcp_pair(TINY_BUFFER)
    with client:
        transport = Transport(server)
        first, second = region_of(path), region_of(path)
        transport.write([first, second])
        assert transport.pending_bytes > 4 * 1024 * 1024
        transport.abort()
        assert transport.closed and transport.pending_bytes == 0
        assert first.close_after is False and second.close_after is False
        transport.write([region_of(path)])  # writes after close only release
        assert server.fileno() == -1


def test_close_drains_first(pair: tuple[CountingSocket, socket.socket]) -> None:
    server, client = tcp_pair(TINY_BUFFER)
    with client:
        transport = Transport(server)
        payload = os.urandom(500_000)
        transport.write([payload])
        transport.close()
        assert not transport.closed  # still has output
        received = pump(transport, client, len(payload))
        assert transport.closed
        assert bytes(received) == payload
        assert client.recv(10) == b""


def test_peer_reset_aborts_quietly(pair: tuple[CountingSocket, socket.socket]) -> None:
    server, client = pair
    linger_zero(client)  # RST on close
    client.close()
    transport = Transport(server)
    for _ in range(100):  # the first send may still succeed; one of them meets the reset
        transport.write([b"x" * 65536])
        if transport.closed:
            break
        transport.flush()
    assert transport.closed


def test_recv_none_data_and_eof(pair: tuple[CountingSocket, socket.socket]) -> None:
    server, client = pair
    transport = Transport(server)
    assert transport.recv(100) is None
    client.sendall(b"abc")
    client.shutdown(socket.SHUT_WR)
    received = b""
    while True:
        chunk = transport.recv(100)
        if chunk == b"":
            break
        received += chunk or b""
    assert received == b"abc"


# --- the teaching switch --split-writes ------------------------------------------------------


class FlagSocket(CountingSocket):
    """Also records each send()'s flags (MSG_MORE would cork a head with what follows)."""

    flags: list[int]

    def send(self, data: object, flags: int = 0) -> int:  # type: ignore[override]
        self.flags.append(flags)
        return super().send(data, flags)


def test_split_writes_sends_head_and_body_with_separate_calls(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=RECV_TIMEOUT)
        accepted, _ = listener.accept()
    server = FlagSocket(fileno=accepted.detach())
    server.sends, server.flags = [], []
    server.setblocking(False)
    with server, client:
        transport = SplitWritesTransport(server)
        head, small, large = b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 1024, os.urandom(64 * 1024)
        transport.write([head, small])  # the joined-send and gathered-send shortcuts: split
        transport.write([head, large])
        assert server.sends == [len(head), len(small), len(head), len(large)]
        assert read_exactly(client, 2 * len(head) + len(small) + len(large)) == (
            head + small + head + large)
        path = tmp_path / "file"
        path.write_bytes(b"F" * 5000)
        server.sends, server.flags = [], []
        transport.write([head, region_of(path), b"tail", b"more"])  # the queue path: no join
        assert server.sends == [len(head), len(b"tail"), len(b"more")]  # the region: sendfile
        assert server.flags == [0, 0, 0]  # the head was not corked with MSG_MORE
        assert read_exactly(client, len(head) + 5008) == head + b"F" * 5000 + b"tailmore"


def test_split_writes_cut_short_keep_the_rest_in_order() -> None:
    server, client = tcp_pair(TINY_BUFFER)
    with server, client:
        transport = SplitWritesTransport(server)
        head, body = os.urandom(50_000), os.urandom(500_000)
        transport.write([head, body])
        assert 0 < transport.pending_bytes < len(head) + len(body)
        assert pump(transport, client, len(head) + len(body)) == head + body
