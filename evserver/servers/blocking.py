"""The blocking models' shared half: the accept loop, the shared access log, and shutdown.

What this module knows: threads and locks (only ``servers/`` may import ``threading``), a
selector watching the listener and a wake-up pipe, and the seam where the two blocking models
differ (``process_connection``: inline for iterative, a new thread for threaded, as in
socketserver). What it must not know: HTTP, and how one connection is served: that is the
blocking driver's job (``evserver.drivers.blocking.drive``).

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
descriptor number is never reused under someone's feet. (A TLS socket's ``shutdown`` leaves its
TLS object alone for the same reason: only the owning thread may touch it.)

Handing over (``retire()``, a worker process replaced by a successor): accepting stops at once
(with ``take_queue_on_retire``, after taking what waits in the listener's own queue), every
conversation gets a handler whose responses say ``Connection: close``, and the watchdog waits
``RETIRE_GRACE_SECONDS`` before it begins the stop above, so an idle keep-alive connection gets
its next request answered (and closed) rather than closed under it.

HTTPS: the accepting thread wraps each accepted socket (``evserver.net.tls``: no I/O yet), so
the live connections are the TLS sockets; the handshake is the connection's own thread's work
(``drive``), so a slow one never holds the accept loop.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from evserver.accesslog import LOG_FLUSH_SECONDS, AccessLog
from evserver.config import ServerConfig
from evserver.drivers.blocking import drive
from evserver.event.reactor import register_exclusive
from evserver.http.events import Request
from evserver.net.listener import ACCEPT_PAUSE_SECONDS, configure_client_socket
from evserver.net.tls import wrap_server_socket
from evserver.protocol import ServerProtocol, SplitWritesProtocol
from evserver.servers.base import RETIRE_GRACE_SECONDS, BaseServer

log = logging.getLogger("evserver.blocking")

EXIT_FLUSH_LOCK_SECONDS = 0.1
"""How long a flush before a fast exit waits for the log's lock: a connection's thread holds it
for microseconds, but the thread a signal handler interrupted may hold it and never let go."""


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

    def record(self, peer: str, timestamp: float, request: Request | None, status: int,
               body_bytes: int) -> None:
        with self._lock:
            self._log.record(peer, timestamp, request, status, body_bytes)
            now = time.monotonic()
            if now - self._last_flush >= LOG_FLUSH_SECONDS:
                self._last_flush = now
                self._log.flush()

    def flush(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            self._log.flush()

    def flush_before_exit(self) -> None:
        """``flush()`` from a signal handler, just before ``os._exit``: waits for the lock at
        most ``EXIT_FLUSH_LOCK_SECONDS``, then writes anyway (nothing runs after the exit that
        the write could disturb)."""
        locked = self._lock.acquire(timeout=EXIT_FLUSH_LOCK_SECONDS)
        try:
            self._log.flush()
        finally:
            if locked:
                self._lock.release()


# -- the accept loop and shutdown, shared by the iterative and threaded models -----------------


class BlockingServer(BaseServer):
    """Accept connections and hand each to ``process_connection`` (the one seam).

    Subclasses decide what "process" means: drive it now (iterative) or in a new thread
    (threaded), and bound how many run at once with ``room``. Only the accepting thread
    adds connections, so ``room()`` can only grow until that thread accepts; a
    subclass whose connections end elsewhere calls ``wake()`` when room frees up after it was full.
    """

    def __init__(self, config: ServerConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._shared_log = SharedAccessLog(self.access_log) if self.access_log else None
        self._shared_record = None if self._shared_log is None else self._shared_log.record
        self.on_idle: Callable[[], None] | None = None
        """Called by ``drive`` whenever a connection waits for its next request."""
        self._stopping = False
        self._retiring = False
        """``retire()`` was called; ``_stopping`` follows once the grace is over."""
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

    def room(self) -> int:
        """How many more connections may be accepted now (0: accepting waits). One by default:
        the iterative model serves each connection before it accepts the next."""
        return 1

    def connection_ended(self) -> None:
        """Called (on the connection's thread) after a connection closed."""

    def wait_for_connections(self) -> None:
        """After accepting stopped: return when every connection has ended."""

    # -- serving -----------------------------------------------------------------------------

    def new_protocol(self, peer: str) -> ServerProtocol:
        protocol_class = SplitWritesProtocol if self.config.split_writes else ServerProtocol
        return protocol_class(self.handler, limits=self.config.limits, peer=peer,
                              access_log=self._shared_record, stats=self.stats)

    def access_log_flush(self) -> None:
        if self._shared_log is not None:
            self._shared_log.flush()

    def flush_log_before_exit(self) -> None:
        if self._shared_log is not None:
            self._shared_log.flush_before_exit()

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
        except MemoryError:  # building the conversation, or drive's last words: this one only
            sock.close()  # (the accept loop, or the thread, goes on; no traceback to format)
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
            if self._retiring and self.take_queue_on_retire:
                self._take_queue()
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
            while not (self._stopping or self._retiring):
                now = time.monotonic()
                paused = now < self._accept_paused_until
                want = not paused and self.room() > 0
                if want != listening:
                    if want and self.exclusive_accept:
                        register_exclusive(selector, self.listener, None)
                    elif want:
                        selector.register(self.listener, selectors.EVENT_READ)
                    else:
                        selector.unregister(self.listener)
                    listening = want
                wait = next_flush - now
                if paused:
                    wait = min(wait, self._accept_paused_until - now)
                for key, _ in selector.select(max(wait, 0.0)):
                    if key.fileobj is self.listener:
                        self._accept_ready()
                    else:
                        self._drain_wake_pipe()
                if time.monotonic() >= next_flush:
                    self.access_log_flush()
                    next_flush = time.monotonic() + LOG_FLUSH_SECONDS

    def _accept_ready(self) -> None:
        """Accept what the listener holds, up to ``room()``, and process each connection."""
        accepted, pause = self.accept_batch(self.room())
        if pause:
            self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE_SECONDS
        for sock, peer in accepted:
            self._accepted(sock, peer)

    def _take_queue(self) -> None:
        """Retiring from a listener of our own: accept what waits in its queue (the kernel
        resets a connection still queued when the last descriptor of its listener closes), then
        close it; the connections taken are answered with ``Connection: close``."""
        while not self._stopping:
            accepted, _ = self.accept_batch(max(self.room(), 1))
            if not accepted:
                break
            for sock, peer in accepted:
                self._accepted(sock, peer)
        self.listener.close()

    def _accepted(self, sock: socket.socket, peer: str) -> None:
        tls = self.config.tls_context
        try:
            configure_client_socket(sock, self.config.nodelay)
            if tls is not None:  # the handshake is the connection's own thread's to make
                sock = wrap_server_socket(tls, sock)
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
        if self._stopping or self._retiring:
            self._force("second shutdown request")
            return
        self._begin_stop()

    def retire(self) -> None:
        """See ``BaseServer.retire``; safe from a signal handler, like ``shutdown()``."""
        if self._stopping or self._retiring:
            return
        self._retiring = True
        self.draining = True
        with self._live_lock:
            self._answer_with_close(p for p in self._live.values() if p is not None)
        self.wake()
        self._stop_requested.set()  # the watchdog counts the grace, then begins the stop

    def _begin_stop(self) -> None:
        self.draining = True
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
        if self._retiring and not self._stopping:
            if self._finished.wait(RETIRE_GRACE_SECONDS):
                return
            self._begin_stop()  # the grace is over: idle connections close, the drain begins
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
