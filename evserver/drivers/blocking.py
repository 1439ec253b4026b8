"""The blocking driver: one connection served to its end with blocking calls.

What this module knows: a blocking socket with the kernel's timeouts, and the protocol's driver
contract (``receive``, ``resume``, ``paused``, ``should_close``, ``linger``, ``mid_request``,
``timed_out``). What it must not know: HTTP (it never looks inside the bytes), how files become
bodies (``evserver.net.blocking`` sends them), threads and accepting (``evserver.servers``: the
iterative model calls ``drive`` inline, the threaded model in one thread per connection; that is
their only difference).

``drive(sock, protocol, config, stats)`` serves one connection to its end and closes it::

    loop:
        recv_into the connection's buffer (timeout: idle, or what is left of the header deadline)
        items = protocol.receive(data)          send(items)   (timeout: send_timeout)
        while protocol.paused:                   send(protocol.resume())
        until EOF or protocol.should_close

Its evented twin, ``evserver.drivers.evented.Connection``, runs the same conversation as
callbacks; the deadlines and the lingering close are the ones both share
(``evserver.drivers.policy``). The read differs: see ``BLOCKING_RECV_SIZE``.

Timeouts are the kernel's socket timeouts (``SO_RCVTIMEO``, ``SO_SNDTIMEO``) on a socket left in
blocking mode, each a "nothing happened for that long". Speed: Python's own ``settimeout`` would
make every ``recv`` and ``send`` a ``poll`` plus the call, and switching between two timeouts
costs an ``ioctl`` each way; with kernel timeouts a keep-alive request costs one ``recv`` and one
``send``, and ``SO_RCVTIMEO`` is only rewritten when the wanted timeout changes (idle vs header).
A call that the timeout ends fails with ``EAGAIN`` (``BlockingIOError``):

- idle (``config.idle_timeout``): waiting between requests with nothing buffered; on expiry the
  connection is closed without a word (RFC 9112 9.5: a 408 there could be taken for the answer
  to a request the client is just sending).
- header (``config.header_timeout``): once a request's first byte has arrived, the rest of it
  must arrive within the timeout *from that first byte*. The remaining time is recomputed before
  every recv, so a client sending one byte a second (slowloris) cannot stretch it. On expiry: a
  408 (``protocol.timed_out()``) and close. Note: the protocol only says "mid request", so the
  timeout covers the request's body too, as one whole (a 1 MiB upload must take under 10 s).
- send (``config.send_timeout``): a peer that takes nothing for that long while we send is dropped.

Closing: when the server closes first (``Connection: close``, an error response, a 408), a
lingering close (``evserver.drivers.policy``). When the peer closed first, or on an idle
timeout, or when the client asked to close and left nothing unread (``protocol.linger`` false),
a plain close.

TLS (a ``evserver.net.tls.TLSSocket``, wrapped by the server at accept): first the blocking
handshake, all of it within the header timeout (a client that stalls mid-handshake is closed
then, counted as an idle timeout, like one that says nothing); a client that broke the protocol
(plain HTTP sent to this port) gets a lingering close. Then the same conversation, sent by
``send_tls``; the socket keeps the kernel-timeout manners the loop below expects (its class
docstring says why it cannot use the kernel's own), and sends close_notify when it closes.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from evserver.bodies import Item
from evserver.drivers.policy import (
    HEADER,
    IDLE,
    LINGER_MAX_BYTES,
    LINGER_SECONDS,
    SEND,
    shut_down_writing,
)
from evserver.net.blocking import TIMEVAL, send_each, send_items, unsent_bytes
from evserver.net.tls import (
    HANDSHAKE_DONE,
    HANDSHAKE_FAILED,
    HANDSHAKE_TIMED_OUT,
    TLSSocket,
    send_tls,
)

if TYPE_CHECKING:  # only for annotations: this module needs no HTTP code to run
    from evserver.config import ServerConfig
    from evserver.protocol import ServerProtocol
    from evserver.stats import Stats

log = logging.getLogger("evserver.blocking")

BLOCKING_RECV_SIZE = 4 * 1024
"""The connection's own receive buffer, which ``recv_into`` fills: one page, several times a
usual request head, and dozens of pipelined ones. It lives (zero-filled, so resident) as long as
the connection, which may idle for minutes, so it is kept far smaller than the evented model's
``RECV_SIZE``; a larger burst, or the rest of a 16 KiB TLS record, takes further calls (the
record's rest is already decrypted: no system call).

Why a buffer of its own, when the evented driver calls ``recv``: ``recv(n)`` allocates its
n-byte result *before* it blocks. A thread waiting for its next request would hold that block
for as long as it waits, and hundreds of waiting threads, each holding one from a different
moment, scatter the allocator's heap: in a long soak of the threaded model, RSS kept growing
with memory freed but not returnable while the live objects stayed level. One buffer per
connection, filled in place, leaves only exact-size copies of what arrived. (The evented model
calls ``recv`` only when the socket is readable, so its block lives for a moment.)"""


def drive(sock: socket.socket, protocol: ServerProtocol, config: ServerConfig,
          stats: Stats, on_idle: Callable[[], None] | None = None,
          stopping: Callable[[], bool] | None = None) -> None:
    """Serve the connection ``sock`` with ``protocol`` until it ends, then close ``sock``.

    ``on_idle`` is called each time the connection waits for a new request (the iterative
    server writes out its access log then, having no other moment while a client lingers).
    ``stopping`` is asked at the same moments: once it says True, the connection closes instead
    of waiting (a graceful stop lets a request in progress finish first).
    """
    server_closes_first = False
    unsent = 0
    buffer = bytearray()
    try:
        buffer = bytearray(BLOCKING_RECV_SIZE)  # inside the try: no memory closes the connection
        if isinstance(sock, TLSSocket):
            outcome = sock.shake_hands(config.header_timeout)
            if outcome != HANDSHAKE_DONE:
                if outcome == HANDSHAKE_TIMED_OUT:
                    stats.timeouts[IDLE] += 1  # the first wait, as for a client saying nothing
                server_closes_first = outcome == HANDSHAKE_FAILED  # its alert, then linger
                return
        server_closes_first = _converse(sock, buffer, protocol, config, stats, on_idle,
                                        stopping)
    except OSError as error:  # reset, broken pipe, send timeout, a file that shrank: drop it
        log.debug("%r dropped: %s", protocol, error)
        unsent = unsent_bytes(error) or 0
    except MemoryError:  # no traceback (formatting one allocates); the output may be half made
        pass  # (the protocol answers 503 when it can): close the connection
    except Exception:  # a bug must not kill the accept loop or the connection's thread silently
        log.exception("%r failed", protocol)
    finally:
        protocol.connection_lost(unsent)
        if server_closes_first:
            _close_gracefully(sock, buffer)
        else:
            sock.close()


def _set_kernel_timeout(sock: socket.socket, option: int, seconds: float) -> None:
    """``SO_RCVTIMEO`` or ``SO_SNDTIMEO``; zero or less means none (a timeval of zero)."""
    whole = micros = 0
    if seconds > 0:
        whole = int(seconds)
        micros = int((seconds - whole) * 1_000_000)
        if not whole and not micros:
            micros = 1  # a positive timeout under 1 µs must not become "none"
    sock.setsockopt(socket.SOL_SOCKET, option, TIMEVAL.pack(whole, micros))


Sender = Callable[[socket.socket, list[Item], bool], int]
"""``send_items``, or ``send_each`` under the teaching switch ``--split-writes``, or ``send_tls``
on a TLS socket: chosen once per connection, so the default path has no test for either."""


def _send(sock: socket.socket, items: list[Item], config: ServerConfig, stats: Stats,
          send: Sender) -> None:
    """Send everything (SO_SNDTIMEO bounds each wait); count what sendfile carried."""
    try:
        stats.sendfile_bytes += send(sock, items, config.use_sendfile)
    except TimeoutError:
        stats.timeouts[SEND] += 1
        raise


def _converse(sock: socket.socket, buffer: bytearray, protocol: ServerProtocol,
              config: ServerConfig, stats: Stats, on_idle: Callable[[], None] | None,
              stopping: Callable[[], bool] | None) -> bool:
    """The conversation, reading into ``buffer``. Returns True when the server ends it (linger),
    False when the peer did or it went idle."""
    received = memoryview(buffer)
    if sock.gettimeout() is not None:
        sock.settimeout(None)  # truly blocking: the kernel's timeouts below do the waiting
    _set_kernel_timeout(sock, socket.SO_SNDTIMEO, config.send_timeout)
    idle_timeout = config.idle_timeout
    header_timeout = config.header_timeout
    request_deadline: float | None = None  # when the request now arriving must be complete
    receive_timeout: float | None = None  # what SO_RCVTIMEO holds now (None: not set yet)
    monotonic = time.monotonic
    send = send_tls if isinstance(sock, TLSSocket) else \
        send_each if config.split_writes else send_items
    # A new connection's first request must start within header_timeout (as in the evented
    # model), so a client that connects and says nothing cannot hold a thread for idle_timeout.
    idle_wait = header_timeout if header_timeout > 0 else idle_timeout
    while True:
        if request_deadline is None:
            if stopping is not None and stopping():
                return False  # a graceful stop, and no request in progress: close now
            wanted = idle_wait
            if on_idle is not None:
                on_idle()
        else:
            wanted = request_deadline - monotonic()
            if wanted <= 0:
                return _header_timed_out(sock, protocol, config, stats, send)
        if wanted != receive_timeout:  # a system call: only when the timeout changes
            _set_kernel_timeout(sock, socket.SO_RCVTIMEO, wanted)
            receive_timeout = wanted
        try:
            data = received[:sock.recv_into(buffer)].tobytes()  # a copy: the parser may keep it
        except BlockingIOError:  # SO_RCVTIMEO expired
            if request_deadline is not None:
                return _header_timed_out(sock, protocol, config, stats, send)
            stats.timeouts[IDLE] += 1
            return False  # RFC 9112 9.5: an idle connection may be closed at any time
        items = protocol.receive(data)
        if items:
            _send(sock, items, config, stats, send)
        while protocol.paused:  # pipelined requests wait in the parser: answer them in batches
            _send(sock, protocol.resume(), config, stats, send)
        if protocol.held_lines is not None:  # a long response has all gone out
            protocol.output_sent()
        if not data:
            return False  # the peer closed its side (the protocol answered what was complete)
        if protocol.should_close:
            return protocol.linger  # False: the client asked to close, nothing unread
        idle_wait = idle_timeout  # from the second wait on: keep-alive between requests
        if not protocol.mid_request:
            request_deadline = None
        elif request_deadline is None and header_timeout > 0:
            # From the request's first byte (or, when it came behind pipelined requests, from
            # the moment their responses were sent: the client may have waited for them).
            request_deadline = monotonic() + header_timeout


def _header_timed_out(sock: socket.socket, protocol: ServerProtocol, config: ServerConfig,
                      stats: Stats, send: Sender) -> bool:
    """The request did not arrive in time: RFC 9110 15.5.9, 408 and close."""
    stats.timeouts[HEADER] += 1
    _send(sock, protocol.timed_out(), config, stats, send)
    return True


def _close_gracefully(sock: socket.socket, buffer: bytearray) -> None:
    """RFC 9112 9.6: half-close, read until the peer closes (bounded), then close."""
    try:
        if not shut_down_writing(sock):
            return
        deadline = time.monotonic() + LINGER_SECONDS
        discarded = 0
        while discarded < LINGER_MAX_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            count = sock.recv_into(buffer)
            if not count:
                break
            discarded += count
    except OSError:
        pass  # timed out, reset, already shut down: nothing more to save
    finally:
        sock.close()
