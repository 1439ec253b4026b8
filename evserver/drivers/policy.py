"""What the two drivers agree on, so that the models differ in their concurrency only.

What this module knows: how much one ``recv`` asks for, how a server that closes first lets the
client read its last response (lingering close), and the names of the three deadlines a
connection lives under. What it must not know: HTTP, selectors, threads.

Lingering close (RFC 9112 9.6): when the server ends a connection while the client may still be
sending (an error response, ``Connection: close`` with unread input, a 408), closing at once
with unread bytes in the kernel's receive buffer makes the kernel send a reset, and a reset can
destroy the response before the client has read it. So the server shuts down its writing side
(the client sees end of input after the response), then reads and discards what the client
still sends, until the client closes, ``LINGER_SECONDS`` pass, or ``LINGER_MAX_BYTES`` have been
thrown away. The evented driver does this with the loop's help, the blocking one in a loop of
its own; both stop at the same bounds.
"""

from __future__ import annotations

import socket

RECV_SIZE = 64 * 1024
"""Bytes asked of one ``recv``: a request head is usually under 1 KiB, and 64 KiB takes a whole
pipelined burst in one call (CPython shrinks the buffer to what arrived)."""

LINGER_SECONDS = 2.0
"""After the server closed first, how long it reads and discards input so the client reads the
response instead of a reset (Apache's lingering close waits 2 s too); a well-behaved client
closes at once and ends it sooner."""

LINGER_MAX_BYTES = 256 * 1024
"""Input discarded while lingering before giving up: a client still uploading is cut off."""

# The deadlines a connection lives under; also the keys of ``Stats.timeouts``.
IDLE = "idle"
"""Between requests, nothing buffered (a new connection's first wait is the header timeout)."""
HEADER = "header"
"""From a request's first byte until the whole request has arrived (not reset by each byte)."""
SEND = "send"
"""While output is queued: no progress for that long drops the client."""


def input_waiting(sock: socket.socket) -> bool:
    """Bytes have arrived that nobody has read: closing now would make the kernel send a reset
    (see above). Peeks at the kernel's buffer, under TLS too (its records are bytes there)."""
    try:
        return bool(socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # nothing there (EAGAIN), or the peer is gone
        return False


def shut_down_writing(sock: socket.socket) -> bool:
    """Begin a lingering close: ``shutdown(SHUT_WR)``. False when the peer is already gone."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return False
    return True
