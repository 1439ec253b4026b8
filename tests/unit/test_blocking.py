"""Unit tests of evserver.net.blocking: the send helpers of the threaded and iterative models.

A socketpair stands in for a connection; a temporary file stands in for a document. The reader
side runs in a thread when the sender would otherwise block on a full socket buffer.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from evserver.bodies import FileRegion, Item
from evserver.net import blocking
from evserver.net.blocking import FileShrankError, send_each, send_items, send_region
from tests.support.clients import read_exactly

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


def _recorder_and_mixed_items(server_side, tmp_path):
    """A recording socket, bytes items around a 4-byte file region (``FILE``), its fd."""
    path = tmp_path / "f"
    path.write_bytes(b"FILE")
    fd = os.open(path, os.O_RDONLY)
    items: list[Item] = [b"head ", b"more ", FileRegion(fd, 0, 4), b" tail", b"!"]
    return Recorder(server_side), items, fd


def test_consecutive_bytes_are_coalesced_into_one_send(pair, tmp_path):
    server_side, client_side = pair
    recorder, items, fd = _recorder_and_mixed_items(server_side, tmp_path)
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


def test_send_each_gives_every_item_its_own_call(pair, tmp_path):
    server_side, client_side = pair
    recorder, items, fd = _recorder_and_mixed_items(server_side, tmp_path)
    assert send_each(recorder, items) == 4  # type: ignore[arg-type]
    assert recorder.calls == ["send"] * 4  # never a gathering sendmsg, never a join
    assert recorder.sends == [b"head ", b"more ", b" tail", b"!"]
    assert read_exactly(client_side, 20) == b"head more FILE tail!"
    assert not fd_is_open(fd)
