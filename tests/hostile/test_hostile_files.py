"""Files that change under the server, and files larger than 2 GiB.

The server sends a file from a descriptor it opened when the request arrived, with a Content-Length
taken from ``fstat`` at that moment. Then:

- the file is **truncated** mid-transfer: the promised length can no longer be met. The client
  must see the connection end before Content-Length bytes arrived (so it knows the body is
  short), and every byte it did get must be the file's original content at that offset: never
  padding, never a byte from past the new end.
- the file is truncated **after the whole body was queued** (the server's end is closed): the
  body arrives at its full length and the connection ends normally; with ``pread`` it is the
  file as it was, with ``sendfile`` only the length is promised.
- the file is **replaced** (rename over it): the descriptor still names the old inode, so the
  whole old file arrives, complete and unmixed.
- the file **grows**: exactly Content-Length bytes arrive and the connection stays usable.
- a **sparse file just over 2 GiB**: its Content-Length, ranges past 2**31, the tail, and (in
  the slow test) the whole body, where a 32-bit offset or count anywhere would show.

Both send paths are tested: ``os.sendfile`` and the ``pread`` fallback (``use_sendfile=False``).
The client keeps its receive buffer small so the server cannot have sent everything before the
file changes.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.responses import HTTPResponse, MalformedResponse, ResponseReader, parse_one
from tests.support.servers import RunningServer
from tests.support.trees import make_big_file
from tests.support.waiting import wait_until

CLIENT_TIMEOUT = 20.0
SMALL_RCVBUF = 32 * 1024
"""The client's receive buffer: keeps what is in flight small compared with the file."""

READ_BEFORE_CHANGE = 512 * 1024
"""Body bytes the client reads before the file is changed under the server."""


@pytest.fixture(params=[True, False], ids=["sendfile", "pread"])
def file_server(request: pytest.FixtureRequest, start_server: Callable[..., RunningServer],
                model_name: tuple[str, str]) -> RunningServer:
    model, selector = model_name
    return start_server(model=model, selector=selector, use_sendfile=request.param,
                        send_timeout=5, header_timeout=5, idle_timeout=5, drain_timeout=1)


def _slow_client(server: RunningServer) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)  # before connect
    sock.settimeout(CLIENT_TIMEOUT)
    sock.connect(server.address)
    return sock


def _read_head_and_some(sock: socket.socket, wanted: int) -> tuple[int, bytearray]:
    """Read the head and at least ``wanted`` body bytes: (Content-Length, body so far)."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before the head: {bytes(data)!r}"
        data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    received = bytearray(body)
    while len(received) < wanted:
        chunk = sock.recv(65536)
        assert chunk, "closed too early"
        received += chunk
    return length, received


def _read_rest(sock: socket.socket, received: bytearray, limit: int) -> str:
    """Read until close (or ``limit`` bytes): how it ended, "eof", "reset" or "open"."""
    while len(received) < limit:
        try:
            chunk = sock.recv(262144)
        except ConnectionResetError:
            return "reset"
        if not chunk:
            return "eof"
        received += chunk
    return "open"


GET_BIG = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"


@contextlib.contextmanager
def _transfer_begun(server: RunningServer, requests: bytes = GET_BIG
                    ) -> Iterator[tuple[socket.socket, bytes, int, bytes]]:
    """Write big.bin, start fetching it with a slow client and read the head and a little:
    yields ``(sock, original bytes, Content-Length, body bytes received so far)``."""
    path = server.root / "big.bin"
    make_big_file(path)
    original = path.read_bytes()
    with _slow_client(server) as sock:
        sock.sendall(requests)
        length, received = _read_head_and_some(sock, READ_BEFORE_CHANGE)
        yield sock, original, length, received


@pytest.mark.parametrize("new_size", [0, 1024 * 1024 + 123])
def test_truncated_while_sent_ends_the_connection_early(file_server: RunningServer,
                                                        new_size: int) -> None:
    with _transfer_begun(file_server) as (sock, original, length, received):
        assert length == len(original)
        os.truncate(file_server.root / "big.bin", new_size)
        how = _read_rest(sock, received, length)
    assert how in ("eof", "reset"), "the connection stayed open after a short body"
    assert len(received) < length, "a truncated file was sent as if whole"
    kept = min(new_size, len(received))
    assert received[:kept] == original[:kept], "bytes that are not the file's content"
    past_end = received[kept:]
    if file_server.server.config.use_sendfile:
        # What the server handed to the kernel before the truncation still arrives (it was in
        # flight), but sendfile queues page-cache pages by reference, and truncation zeroes the
        # rest of the page (folio) holding the new end: those bytes may read as zeros. The body
        # is still cut short, so the client knows to discard it (a sendfile limitation, shared
        # with nginx; the pread path below copies and keeps the original bytes).
        original_past = original[kept : len(received)]
        assert all(byte in (0, expected) for byte, expected in zip(past_end, original_past,
                                                                     strict=True))
    else:
        assert past_end == original[kept : len(received)], "bytes not from the file"


QUEUED_FILE_SIZE = 256 * 1024
"""A file above the small-file cache (so it is sent from the file) that the kernel's buffers on
the loopback take whole while the client reads nothing."""

TCP_ESTABLISHED = 1
"""The state column of ``/proc/net/tcp`` for an open connection (include/net/tcp_states.h)."""


def _server_end_state(client: socket.socket) -> int | None:
    """The TCP state of the server's end of ``client``'s connection (``/proc/net/tcp``)."""
    client_port, server_port = client.getsockname()[1], client.getpeername()[1]
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
            if (local, remote) == (server_port, client_port):
                return int(fields[3], 16)
    return None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads /proc/net/tcp")
def test_truncated_after_the_whole_body_was_queued(file_server: RunningServer) -> None:
    """Truncated once the server's last send has returned (its end of the connection is closed,
    the body waiting in the kernel): nothing is left for the server to notice, so the body
    arrives at its full length and the connection ends normally. With pread the kernel holds
    copies: the body is the file as it was. With sendfile it holds page-cache pages, which the
    truncation may change: only the length is promised (README, Reliability)."""
    path = file_server.root / "queued.bin"
    original = os.urandom(QUEUED_FILE_SIZE)
    path.write_bytes(original)
    with socket.create_connection(file_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /queued.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        wait_until(lambda: _server_end_state(sock) not in (TCP_ESTABLISHED, None),
                   "the server to have queued the whole body and closed its end")
        os.truncate(path, 0)
        length, received = _read_head_and_some(sock, 0)
        how = _read_rest(sock, received, length + 1)
    assert (length, len(received), how) == (QUEUED_FILE_SIZE, QUEUED_FILE_SIZE, "eof")
    if not file_server.server.config.use_sendfile:
        assert received == original


def test_replaced_while_sent_sends_the_whole_old_file(file_server: RunningServer) -> None:
    path = file_server.root / "big.bin"
    second_request = b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    with _transfer_begun(file_server, GET_BIG + second_request) as (
            sock, original, length, received):
        replacement = file_server.root / "big.new"
        replacement.write_bytes(b"N" * 1000)
        os.replace(replacement, path)
        reader = ResponseReader(sock)
        reader.buffer += received
        first = _complete(reader, length)
        second = reader.next()
        assert reader.wait_closed() in ("eof", "reset")
    assert first.body == original, "the old file must arrive whole and unmixed"
    assert second is not None and second.body in (original, b"N" * 1000)


def _complete(reader: ResponseReader, length: int) -> HTTPResponse:
    """The first response, whose head was already consumed: rebuild it from its body."""
    while len(reader.buffer) < length:
        assert reader._fill(), "closed before the whole body"
    body = bytes(reader.buffer[:length])
    del reader.buffer[:length]
    return HTTPResponse(200, "OK", {}, body, b"")


def test_grown_while_sent_sends_exactly_content_length(file_server: RunningServer) -> None:
    with _transfer_begun(file_server) as (sock, original, length, received):
        with open(file_server.root / "big.bin", "ab") as f:
            f.write(b"G" * 1_000_000)
        reader = ResponseReader(sock)
        reader.buffer += received
        body = _complete(reader, length).body
        assert body == original
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        follow = reader.next()  # framing intact: the next response starts right after
        assert follow is not None and follow.body == b"hello, world\n"


# -- larger than 2 GiB ---------------------------------------------------------------------------

HUGE_SIZE = 2**31 + 2**20 + 7
"""Just over 2 GiB (and odd): every offset and count above 2**31 - 1 is exercised."""

MARKERS = {2**31 - 10: b"<across-2-GiB>", 2**31 + 4096: b"<past-2-GiB>",
           HUGE_SIZE - 9: b"<the-end>"}
"""Bytes written into the sparse file; the rest reads as zeros."""


@pytest.fixture(scope="module")
def huge_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("huge") / "root"
    root.mkdir()
    path = root / "huge.bin"
    with open(path, "wb") as f:
        f.truncate(HUGE_SIZE)  # sparse: no blocks written but the markers'
        for offset, marker in MARKERS.items():
            f.seek(offset)
            f.write(marker)
    (root / "small.txt").write_text("hello, world\n")
    return root


def _expected(first: int, last: int) -> bytes:
    """The sparse file's bytes first..last (inclusive), computed without reading it."""
    data = bytearray(last - first + 1)
    for offset, marker in MARKERS.items():
        for index, byte in enumerate(marker):
            if first <= offset + index <= last:
                data[offset + index - first] = byte
    return bytes(data)


def _request(server: RunningServer, head: bytes, method: bytes = b"GET") -> HTTPResponse:
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(method + b" /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     + head + b"\r\n")
        response = ResponseReader(sock).next(head_request=method == b"HEAD")
    assert response is not None
    return response


@pytest.fixture
def huge_server(start_server: Callable[..., RunningServer], model_name: tuple[str, str],
                huge_root: Path) -> RunningServer:
    model, selector = model_name
    return start_server(root=huge_root, model=model, selector=selector)


def test_huge_file_length_and_ranges_past_2_gib(huge_server: RunningServer) -> None:
    head = _request(huge_server, b"", method=b"HEAD")
    assert head.status == 200 and int(head.headers["content-length"]) == HUGE_SIZE
    for first, last in [(2**31 - 16, 2**31 + 15), (2**31 + 4090, 2**31 + 4200),
                        (HUGE_SIZE - 100, HUGE_SIZE - 1)]:
        response = _request(huge_server, b"Range: bytes=%d-%d\r\n" % (first, last))
        assert response.status == 206
        assert response.headers["content-range"] == f"bytes {first}-{last}/{HUGE_SIZE}"
        assert response.body == _expected(first, last)
    tail = _request(huge_server, b"Range: bytes=-64\r\n")
    assert tail.status == 206 and tail.body == _expected(HUGE_SIZE - 64, HUGE_SIZE - 1)
    beyond = _request(huge_server, b"Range: bytes=%d-\r\n" % HUGE_SIZE)
    assert beyond.status == 416
    assert beyond.headers["content-range"] == f"bytes */{HUGE_SIZE}"


def test_huge_file_multirange_past_2_gib(huge_server: RunningServer) -> None:
    ranges = [(0, 9), (2**31 - 12, 2**31 + 3), (2**31 + 4096, 2**31 + 4107)]
    spec = ",".join(f"{a}-{b}" for a, b in ranges).encode()
    response = _request(huge_server, b"Range: bytes=" + spec + b"\r\n")
    assert response.status == 206
    boundary = response.headers["content-type"].partition("boundary=")[2]
    assert boundary
    for first, last in ranges:
        part_head = f"Content-Range: bytes {first}-{last}/{HUGE_SIZE}\r\n\r\n".encode()
        at = response.body.index(part_head) + len(part_head)
        assert response.body[at : at + last - first + 1] == _expected(first, last)


LARGE_RANGE_START = 2**31 - 64 * 1024 * 1024
"""A range from 64 MiB below 2**31 to the end (65 MiB): many sendfile rounds across the line."""


def test_huge_file_large_range_across_2_gib(huge_server: RunningServer) -> None:
    first = LARGE_RANGE_START
    last = HUGE_SIZE + 1000  # past the end: RFC 9110 14.1.2 says clamp to the last byte
    with socket.create_connection(huge_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     b"Range: bytes=%d-%d\r\n\r\n" % (first, last))
        count, window = _stream_body(sock, first, 206)
    assert count == HUGE_SIZE - first
    assert window == _expected(2**31 - 10, 2**31 + 4096 + 11)


def _stream_body(sock: socket.socket, first_offset: int, status: int) -> tuple[int, bytes]:
    """Read a response without keeping its body: (body bytes, bytes of the markers' window)."""
    buffer = bytearray()
    parsed: tuple[HTTPResponse, int] | None = None
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    parsed = parse_one(buffer[:head_end] + b"", 0, head_request=True)
    assert parsed is not None and parsed[0].status == status
    length = int(parsed[0].headers["content-length"])
    window_first, window_last = 2**31 - 10, 2**31 + 4096 + 11
    window = bytearray()
    count = 0
    pending = memoryview(bytes(buffer[head_end:]))
    chunk_buffer = bytearray(1024 * 1024)
    while True:
        if len(pending):
            piece: memoryview = pending
            pending = memoryview(b"")
        else:
            size = sock.recv_into(chunk_buffer)
            if not size:
                break
            piece = memoryview(chunk_buffer)[:size]
        start = first_offset + count
        end = start + len(piece)
        if start <= window_last and end > window_first:
            lo = max(start, window_first) - start
            hi = min(end, window_last + 1) - start
            window += piece[lo:hi]
        count += len(piece)
    if count != length:
        raise MalformedResponse(f"body of {count} bytes, Content-Length {length}")
    return count, bytes(window)


@pytest.mark.slow
@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "pread"])
def test_huge_file_served_whole(start_server: Callable[..., RunningServer], huge_root: Path,
                                use_sendfile: bool) -> None:
    # Only the evented model: the same transport code is what differs between send paths, and
    # reading 2 GiB over loopback costs seconds per run.
    server = start_server(root=huge_root, model="evented", use_sendfile=use_sendfile)
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        count, window = _stream_body(sock, 0, 200)
    assert count == HUGE_SIZE
    assert window == _expected(2**31 - 10, 2**31 + 4096 + 11)
