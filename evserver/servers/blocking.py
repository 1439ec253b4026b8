"""The blocking models' shared half: one ``drive`` function and one accept loop.

What this module knows: blocking sockets with timeouts, the protocol's driver contract
(``receive``, ``resume``, ``paused``, ``should_close``, ``mid_request``, ``timed_out``), threads
and locks (only ``servers/`` may import ``threading``). What it must not know: HTTP (it never
looks inside the bytes) and how files become bodies (``evserver.net.blocking`` sends them).

``drive(sock, protocol, config, stats)`` serves one connection to its end and closes it::

    loop:
        recv (timeout: idle, or what is left of the header deadline)
        items = protocol.receive(data)          send(items)   (timeout: send_timeout)
        while protocol.paused:                   send(protocol.resume())
        until EOF or protocol.should_close

The iterative model calls it inline, the threaded model in one thread per connection; that is
their only difference (``BlockingServer.process_connection`` is the seam, as in socketserver).

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

Closing: when the server closes first (``Connection: close``, an error response, a 408), it shuts
down its writing side, then reads and discards input for up to ``LINGER_SECONDS``: closing with
unread input makes the kernel send a reset, which can destroy the response before the client has
read it (RFC 9112 9.6). When the peer closed first, or on an idle timeout, or when the client
asked to close and left nothing unread (``protocol.linger`` false), a plain close.

Shutdown (both models): ``shutdown()`` sets a flag, wakes the accept loop through a self-pipe (a
``socketpair`` watched with the listener: portable, and safe from a signal handler) and shuts the
*reading* side of every live connection but those in the middle of receiving a request. A
connection waiting for a request then sees end of input and closes at once; one in the middle of
a response finishes it, then sees the end of input; one receiving a request reads the rest,
answers it and then, seeing the flag, closes (as in the evented model). A request that starts
arriving in the instant between that check and the shutdown of its socket is cut short (400). A
watchdog thread forces the rest closed (``SHUT_RDWR``: blocked calls fail at once) when
``config.drain_timeout`` has passed; a second ``shutdown()`` does so immediately. Sockets are
only ever *shut down* from other threads, never closed: the thread that owns one closes it, so a
descriptor number is never reused under someone's feet.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from evserver.accesslog import AccessLog
from evserver.bodies import Item
from evserver.config import ServerConfig
from evserver.http.events import Request
from evserver.net.blocking import send_items
from evserver.net.listener import (
    ACCEPT_BATCH,
    RESOURCE_ERRNOS,
    TRANSIENT_ACCEPT_ERRNOS,
    configure_client_socket,
    peer_name,
)
from evserver.protocol import ServerProtocol
from evserver.servers.base import BaseServer
from evserver.stats import Stats

log = logging.getLogger("evserver.blocking")

RECV_SIZE = 64 * 1024
"""Bytes asked of one recv(): a request head is usually under 1 KiB, and 64 KiB takes a
pipelined burst in one call."""

LINGER_SECONDS = 2.0
"""After the server closes first, how long it keeps reading (and discarding) so the client reads
the response instead of a reset; a well-behaved client closes at once and ends it sooner."""

LINGER_MAX_BYTES = 256 * 1024
"""Input discarded while lingering before giving up: a client still uploading is cut off."""

ACCEPT_PAUSE_SECONDS = 0.1
"""Out of descriptors or memory (EMFILE...): stop accepting this long rather than spin on the
error; a connection closing meanwhile frees a descriptor."""

LOG_FLUSH_SECONDS = 1.0
"""Access log lines wait at most about this long in the buffer (one write per second, not one
per request)."""


# -- one connection ----------------------------------------------------------------------------


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
    try:
        server_closes_first = _converse(sock, protocol, config, stats, on_idle, stopping)
    except OSError as error:  # reset, broken pipe, send timeout, a file that shrank: drop it
        log.debug("%r dropped: %s", protocol, error)
    except Exception:  # a bug must not kill the accept loop or the connection's thread silently
        log.exception("%r failed", protocol)
    finally:
        if server_closes_first:
            _close_gracefully(sock)
        else:
            sock.close()


_TIMEVAL = struct.Struct("@ll")
"""struct timeval as SO_RCVTIMEO/SO_SNDTIMEO want it: seconds and microseconds, native longs
(Linux; on little-endian BSD/macOS, whose tv_usec is an int, the same bytes read the same)."""


def _set_kernel_timeout(sock: socket.socket, option: int, seconds: float) -> None:
    """``SO_RCVTIMEO`` or ``SO_SNDTIMEO``; zero or less means none (a timeval of zero)."""
    whole = micros = 0
    if seconds > 0:
        whole = int(seconds)
        micros = int((seconds - whole) * 1_000_000)
        if not whole and not micros:
            micros = 1  # a positive timeout under 1 µs must not become "none"
    sock.setsockopt(socket.SOL_SOCKET, option, _TIMEVAL.pack(whole, micros))


def _send(sock: socket.socket, items: list[Item], config: ServerConfig, stats: Stats) -> None:
    """Send everything (SO_SNDTIMEO bounds each wait); count what sendfile carried."""
    try:
        stats.sendfile_bytes += send_items(sock, items, config.use_sendfile)
    except TimeoutError:
        stats.timeouts["send"] += 1
        raise


def _converse(sock: socket.socket, protocol: ServerProtocol, config: ServerConfig,
              stats: Stats, on_idle: Callable[[], None] | None,
              stopping: Callable[[], bool] | None) -> bool:
    """The conversation. Returns True when the server ends it (linger), False when the peer did
    or it went idle."""
    if sock.gettimeout() is not None:
        sock.settimeout(None)  # truly blocking: the kernel's timeouts below do the waiting
    _set_kernel_timeout(sock, socket.SO_SNDTIMEO, config.send_timeout)
    idle_timeout = config.idle_timeout
    header_timeout = config.header_timeout
    request_deadline: float | None = None  # when the request now arriving must be complete
    receive_timeout: float | None = None  # what SO_RCVTIMEO holds now (None: not set yet)
    monotonic = time.monotonic
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
                return _header_timed_out(sock, protocol, config, stats)
        if wanted != receive_timeout:  # a system call: only when the timeout changes
            _set_kernel_timeout(sock, socket.SO_RCVTIMEO, wanted)
            receive_timeout = wanted
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:  # SO_RCVTIMEO expired
            if request_deadline is not None:
                return _header_timed_out(sock, protocol, config, stats)
            stats.timeouts["idle"] += 1
            return False  # RFC 9112 9.5: an idle connection may be closed at any time
        items = protocol.receive(data)
        if items:
            _send(sock, items, config, stats)
        while protocol.paused:  # pipelined requests wait in the parser: answer them in batches
            _send(sock, protocol.resume(), config, stats)
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
                      stats: Stats) -> bool:
    """The request did not arrive in time: RFC 9110 15.5.9, 408 and close."""
    stats.timeouts["header"] += 1
    _send(sock, protocol.timed_out(), config, stats)
    return True


def _close_gracefully(sock: socket.socket) -> None:
    """RFC 9112 9.6: half-close, read until the peer closes (bounded), then close."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        discarded = 0
        while discarded < LINGER_MAX_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(RECV_SIZE)
            if not chunk:
                break
            discarded += len(chunk)
    except OSError:
        pass  # timed out, reset, already shut down: nothing more to save
    finally:
        sock.close()


# -- the access log, shared -------------------------------------------------------------------


class SharedAccessLog:
    """The access log behind a lock (``AccessLog`` is not thread-safe), flushed about once a
    second while responses flow. The iterative model uses it too: an uncontended lock costs
    well under a microsecond, and one class keeps the two models alike."""

    __slots__ = ("_last_flush", "_lock", "_log")

    def __init__(self, access_log: AccessLog) -> None:
        self._log = access_log
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()

    def __call__(self, peer: str, timestamp: float, request: Request | None, status: int,
                 body_bytes: int) -> None:
        with self._lock:
            self._log(peer, timestamp, request, status, body_bytes)
            now = time.monotonic()
            if now - self._last_flush >= LOG_FLUSH_SECONDS:
                self._last_flush = now
                self._log.flush()

    def flush(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            self._log.flush()


# -- the accept loop and shutdown, shared by the iterative and threaded models -----------------


class BlockingServer(BaseServer):
    """Accept connections and hand each to ``process_connection`` (the one seam).

    Subclasses decide what "process" means: drive it now (iterative) or in a new thread
    (threaded), and may bound how many run at once with ``has_room``. Only the accepting thread
    adds connections, so once ``has_room()`` is true it stays true until that thread accepts; a
    subclass whose connections end elsewhere calls ``wake()`` when room frees up after it was full.
    """

    def __init__(self, config: ServerConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._shared_log = SharedAccessLog(self.access_log) if self.access_log else None
        self.on_idle: Callable[[], None] | None = None
        """Called by ``drive`` whenever a connection waits for its next request."""
        self._stopping = False
        self._forced = False
        self._stop_requested = threading.Event()
        self._finished = threading.Event()
        self._live: dict[socket.socket, ServerProtocol | None] = {}
        """Open connections and their conversations (None until it starts)."""
        # Reentrant: shutdown() may run in a signal handler on the very thread that holds it.
        self._live_lock = threading.RLock()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._accept_paused_until = 0.0

    # -- what subclasses provide -------------------------------------------------------------

    def process_connection(self, sock: socket.socket, peer: str) -> None:
        """Serve one accepted connection (the seam); it must run ``serve_connection``."""
        raise NotImplementedError

    def has_room(self) -> bool:
        """False while the bound on connections is reached: accepting waits."""
        return True

    def connection_ended(self) -> None:
        """Called (on the connection's thread) after a connection closed."""

    def wait_for_connections(self) -> None:
        """After accepting stopped: return when every connection has ended."""

    # -- serving -----------------------------------------------------------------------------

    def new_protocol(self, peer: str) -> ServerProtocol:
        return ServerProtocol(self.handler, limits=self.config.limits, peer=peer,
                              access_log=self._shared_log, stats=self.stats)

    def access_log_flush(self) -> None:
        if self._shared_log is not None:
            self._shared_log.flush()

    @property
    def live_connections(self) -> int:
        return len(self._live)

    def serve_connection(self, sock: socket.socket, peer: str) -> None:
        """Drive one connection to its end and forget it (on whichever thread runs it)."""
        try:
            protocol = self.new_protocol(peer)
            with self._live_lock:
                self._live[sock] = protocol
            drive(sock, protocol, self.config, self.stats, self.on_idle, self._is_stopping)
        finally:
            with self._live_lock:
                self._live.pop(sock, None)
                self.stats.connections_open -= 1
            self.connection_ended()

    def serve_forever(self) -> None:
        watchdog = threading.Thread(target=self._watch_drain, name=f"{self.model}-drain",
                                    daemon=True)
        watchdog.start()
        try:
            self._accept_until_stopped()
            self.wait_for_connections()
        finally:
            self._finished.set()
            self._stop_requested.set()  # ends the watchdog if we got here by an exception
            watchdog.join()
            self.access_log_flush()

    def _accept_until_stopped(self) -> None:
        """Watch the listener (while there is room and accepting is not paused) and the wake-up
        pipe; flush the access log about once a second."""
        self.listener.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_reader, selectors.EVENT_READ)
            listening = False
            next_flush = time.monotonic() + LOG_FLUSH_SECONDS
            while not self._stopping:
                now = time.monotonic()
                paused = now < self._accept_paused_until
                want = not paused and self.has_room()
                if want != listening:
                    if want:
                        selector.register(self.listener, selectors.EVENT_READ)
                    else:
                        selector.unregister(self.listener)
                    listening = want
                wait = next_flush - now
                if paused:
                    wait = min(wait, self._accept_paused_until - now)
                for key, _ in selector.select(max(wait, 0.0)):
                    if key.fileobj is self.listener:
                        self._accept_batch()
                    else:
                        self._drain_wake_pipe()
                if time.monotonic() >= next_flush:
                    self.access_log_flush()
                    next_flush = time.monotonic() + LOG_FLUSH_SECONDS

    def _accept_batch(self) -> None:
        """Accept up to ACCEPT_BATCH connections (fewer at the bound or when the queue empties)."""
        for _ in range(ACCEPT_BATCH):
            if self._stopping or not self.has_room():
                return
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as error:
                self._accept_failed(error)
                return
            self._accepted(sock, peer_name(address))

    def _accept_failed(self, error: OSError) -> None:
        if error.errno in RESOURCE_ERRNOS:
            self.stats.accept_pauses += 1
            self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
            log.warning("accept failed (%s): not accepting for %.1f s",
                        errno.errorcode.get(error.errno or 0, error), ACCEPT_PAUSE_SECONDS)
        elif error.errno not in TRANSIENT_ACCEPT_ERRNOS:
            log.warning("accept failed: %s", error)

    def _accepted(self, sock: socket.socket, peer: str) -> None:
        try:
            configure_client_socket(sock)
        except OSError:  # the peer reset before we got to it
            sock.close()
            return
        with self._live_lock:
            self._live[sock] = None
            self.stats.connections_total += 1
            self.stats.connections_open += 1
            if self._stopping:  # shutdown raced with this accept: treat it like the others
                _shut(sock, socket.SHUT_RDWR if self._forced else socket.SHUT_RD)
        self.process_connection(sock, peer)

    # -- shutdown ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """First call: graceful (see the module docstring). Second call: close everything now.

        Safe from a signal handler: it sets flags, writes one byte to a socketpair, calls
        ``shutdown(2)`` on sockets and sets an Event only the watchdog thread waits on."""
        if self._stopping:
            self._force("second shutdown request")
            return
        self._stopping = True
        self.wake()
        self._shut_live(socket.SHUT_RD, spare_mid_request=True)
        self._stop_requested.set()

    def _is_stopping(self) -> bool:
        return self._stopping

    def _force(self, reason: str) -> None:
        self._forced = True
        self._stopping = True
        self.wake()
        with self._live_lock:
            count = len(self._live)
        if count:
            log.warning("%s: closing %d connection(s) now", reason, count)
        self._shut_live(socket.SHUT_RDWR)

    def _watch_drain(self) -> None:
        self._stop_requested.wait()
        if not self._finished.wait(self.config.drain_timeout):
            self._force(f"drain timeout ({self.config.drain_timeout:g} s)")

    def _shut_live(self, how: int, spare_mid_request: bool = False) -> None:
        """Shut down ``how`` every live connection; with ``spare_mid_request``, not those
        receiving a request (their threads see ``stopping`` once they have answered it)."""
        with self._live_lock:
            for sock, protocol in list(self._live.items()):
                if spare_mid_request and protocol is not None and protocol.mid_request:
                    continue
                _shut(sock, how)

    def wake(self) -> None:
        """Make the accept loop look again (room freed, or stopping)."""
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass  # the pipe is full (a wake-up is already pending) or closed

    def _drain_wake_pipe(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except OSError:
            pass

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()


def _shut(sock: socket.socket, how: int) -> None:
    """Shut down one side of a socket another thread owns (never close it from here)."""
    try:
        sock.shutdown(how)
    except OSError:
        pass  # already closed by its owner, or never connected
