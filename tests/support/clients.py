"""Raw clients: sockets that send exact bytes and read exactly what comes back.

What this module knows: blocking sockets and how a test client ends a connection (a FIN after
its request, or a reset). What it must not know: the server's code. Responses are checked with
the strict reader of :mod:`tests.support.responses`; here are the rawer tools, for tests that
look at the bytes themselves.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, BinaryIO

from tests.support.responses import read_until_close

if TYPE_CHECKING:
    from tests.support.servers import RunningServer

WAIT = 10.0
"""Upper bound on any single wait of a blocking client: reached only when the server is broken."""


def raw_exchange(address: tuple[str, int], data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection, half-close, and read until the server closes (a FIN:
    a reset fails the test, since it may have destroyed bytes the server sent)."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received, how = read_until_close(sock)
    assert how == "eof", f"the server reset the connection after {len(received)} bytes"
    return received


def read_exactly(sock: socket.socket, count: int) -> bytes:
    """``count`` bytes from a blocking socket; the peer closing first fails the test."""
    chunks = []
    while count:
        chunk = sock.recv(min(count, 1 << 20))
        assert chunk, "peer closed early"
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def linger_zero(sock: socket.socket) -> None:
    """Make close() send a reset (RST) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close_with_reset(sock: socket.socket) -> None:
    """Close so that the kernel sends RST instead of FIN (the server sees ECONNRESET)."""
    linger_zero(sock)
    sock.close()


# -- one request at a time over a buffered reader (``sock.makefile("rb")``) ----------------------


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
