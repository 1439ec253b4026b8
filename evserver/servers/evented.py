"""The evented model: one thread, one ``selectors`` loop, the evented driver per socket.

What this module knows: accepting (a bounded loop per readiness event, pausing on descriptor
exhaustion, the connection limit, select()'s FD_SETSIZE) and the lifecycle (serve until shutdown,
drain, force). What it must not know: HTTP (each ``Connection``, the evented driver, drives its
protocol) and how readiness is polled (the ``Reactor``'s business).

Accepting::

    listener readable -> accept up to ACCEPT_BATCH sockets (``BaseServer.accept_batch``)
        EAGAIN                        -> done until the next event
        EMFILE/ENFILE/ENOBUFS/ENOMEM  -> stop watching the listener for ACCEPT_PAUSE_SECONDS
                                         (one log line; accepting in a loop would spin)
        max_connections reached       -> stop watching until a connection closes
        fd >= reactor.fd_limit        -> close it at once (select() could not watch it)
        HTTPS                         -> wrap it (no I/O yet) and drive it as a TLSConnection,
                                         whose handshake comes first; plain sockets never see
                                         TLS code (the class is chosen once, at start-up)

Shutdown, callable from any thread or a signal handler (it only queues a call into the loop):
the first call stops accepting, closes idle connections and lets the others finish what they are
sending, up to ``config.drain_timeout``; the loop ends when the last connection closes. A second
call (or the drain timeout) aborts everything at once.

Handing over (``retire()``, a worker process replaced by a successor), queued the same way: stop
accepting (with ``take_queue_on_retire``, after accepting what waits in the listener's own
queue), give every conversation a handler whose responses say ``Connection: close``, and after
``RETIRE_GRACE_SECONDS`` drain as above; the loop may end sooner, when the last connection has
closed. A connection busy with requests is told by its next response to go elsewhere, instead
of being closed while a request may be on its way to it. One whose request has already
arrived, unread, when the grace ends (the same loop round) is answered first: closing over
unread bytes makes the kernel reset the connection, and the client would lose the response.

Freshness checks in rounds: a cached small file is re-verified with ``os.stat`` once per
loop iteration, not once per request: the server advances the static handler's ``check_round``
before each poll, and the first request for a file in an iteration does the check for the rest.
Why that is as safe as a stat per request: the check is made after the poll returned, and each
connection is read at most once per iteration, by a recv made after the poll found it readable.
A request that was waiting in the kernel when the poll returned therefore sees the file as it was
at a moment after the request arrived, which is all a stat per request guarantees; in particular
a client that changes a file, then asks for it, is answered from a fresh check. The one
difference: bytes that arrive between the poll and the read of their connection (microseconds;
only a client pipelining behind an earlier request can have them read then) may see the file as
of that iteration's first check. Under load the stat (a quarter of a small request's cost here)
is shared by every request of a busy iteration. ``--stat-every-request`` turns rounds off.

Watching the loop: ``--trace`` gives the reactor a tracer (``evserver.event.trace``) that names
this server's listener callback ``accept``; the reactor does the rest (when tracing is off, it
costs the loop one test per iteration).
"""

from __future__ import annotations

import socket
from selectors import EVENT_READ
from typing import Any

from evserver.accesslog import FLUSH_LINES, LOG_FLUSH_SECONDS
from evserver.config import ServerConfig
from evserver.drivers.evented import Connection, ConnectionContext, TLSConnection
from evserver.event.reactor import Reactor
from evserver.event.timers import Timer
from evserver.event.trace import LoopTracer
from evserver.net.listener import ACCEPT_BATCH, ACCEPT_PAUSE_SECONDS, configure_client_socket
from evserver.net.tls import wrap_server_socket
from evserver.protocol import Handler
from evserver.servers.base import RETIRE_GRACE_SECONDS, BaseServer

SELECT_FD_HEADROOM = 64
"""With select(), descriptors kept free below FD_SETSIZE for what is not a connection: the
listener, the wake-up pipe, log files and the files being sent."""

FD_LIMIT_LOG_INTERVAL = 10.0
"""Seconds between two log lines about connections refused because select() cannot watch them."""


class EventedServer(BaseServer):
    """Serve every connection from one thread with non-blocking sockets."""

    model = "evented"

    def __init__(self, config: ServerConfig, *, handler: Handler | None = None,
                 listener: socket.socket | None = None) -> None:
        self.reactor = Reactor(config.selector)
        try:
            super().__init__(config, handler=handler, selector_name=self.reactor.selector_name,
                             listener=listener)
        except BaseException:
            self.reactor.close()
            raise
        self.listener.setblocking(False)
        self.connections: dict[Connection, None] = {}
        """The open connections, a dict used as an ordered set: from about 5,000 to 20,000
        connections a set's table takes 50 to 100 bytes per connection, a dict's 30 (saves
        about 20 bytes per idle connection at 10,000)."""
        self._connection_context = ConnectionContext(config, self.stats, self._connection_closed)
        """Shared by every connection (its callback, a bound method made per connection, was
        64 bytes each)."""
        self._watching_listener = False
        self._accept_paused = False  # by a resource error; a timer resumes
        self._shutdown_level = 0  # 0 serving, 1 draining, 2 forced
        self._drain_timer: Timer | None = None
        self._last_fd_limit_log = float("-inf")
        self._tls = config.tls_context
        self._connection_class = Connection if self._tls is None else TLSConnection
        """Chosen once: a plain connection runs no TLS code."""
        self.connection_cap = config.max_connections
        """max_connections, lowered with select() so accepted descriptors stay below 1024."""
        fd_limit = self.reactor.fd_limit
        if fd_limit is not None:
            self.connection_cap = min(config.max_connections, fd_limit - SELECT_FD_HEADROOM)
        self._test_sndbuf: int | None = None
        """Test hook: SO_SNDBUF for accepted sockets (a tiny buffer forces partial sendfile)."""
        self._log_timer: Timer | None = None
        if not config.stat_every_request and self.static_handler is not None:
            self.static_handler.share_checks_per_round()
        if self.access_log is not None:
            self.reactor.before_poll = self._before_poll
        elif self.static_handler is not None and self.static_handler.check_round is not None:
            # Rounds alone: the handler's own method, one call per iteration instead of two.
            self.reactor.before_poll = self.static_handler.next_check_round
        self._tracer: LoopTracer | None = None
        if config.trace is not None:  # last: nothing after it can fail and leave the file open
            self._tracer = LoopTracer.open(config.trace, {self._on_listener_ready: "accept"})
            self.reactor.trace(self._tracer)

    # -- lifecycle --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Run the loop until shutdown completes; then every connection is closed."""
        if self._shutdown_level == 0:
            self._watch_listener(True)
        try:
            self.reactor.run()
        finally:
            self._watch_listener(False)
            for connection in list(self.connections):
                connection.abort()
            self.access_log_flush()
            self.reactor.close()

    def shutdown(self) -> None:
        """First call: graceful stop; second call: stop now. Returns at once (thread-safe)."""
        self.reactor.call_soon_threadsafe(self._on_shutdown_request)

    def _on_shutdown_request(self) -> None:
        self._shutdown_level += 1
        if self._shutdown_level == 1:
            self.draining = True
            self._watch_listener(False)
            self.log.info("shutting down: %d connection(s) to drain", len(self.connections))
            for connection in list(self.connections):
                connection.begin_drain()
            self._drain_timer = self.reactor.call_later(self.config.drain_timeout,
                                                        self._force_stop)
            self._stop_if_drained()
        else:
            self._force_stop()

    def retire(self) -> None:
        """See ``BaseServer.retire``; returns at once (thread-safe, like ``shutdown()``)."""
        self.reactor.call_soon_threadsafe(self._on_retire_request)

    def _on_retire_request(self) -> None:
        if self._shutdown_level:
            return
        self._shutdown_level = 1  # a shutdown() from now on forces the stop
        self.draining = True
        self._answer_with_close(connection.protocol for connection in self.connections)
        self._watch_listener(False)
        if self.take_queue_on_retire:
            self._take_queue()
        self.log.info("handing over: %d connection(s) to finish", len(self.connections))
        self._drain_timer = self.reactor.call_later(RETIRE_GRACE_SECONDS, self._end_grace)
        self._stop_if_drained()

    def _take_queue(self) -> None:
        """Accept what waits in the listener's queue (the kernel resets a connection still
        queued when the last descriptor of its listener closes), then close the listener: right
        after the accept that found the queue empty, before starting the connections taken, so
        a connection is reset only if it arrives in the microseconds between the two calls."""
        while True:
            room = max(self.connection_cap - len(self.connections), 1)
            accepted, pause = self.accept_batch(room)
            emptied = pause or len(accepted) < min(room, ACCEPT_BATCH)
            if emptied:
                self.listener.close()
            for sock, peer in accepted:
                self._start_connection(sock, peer)
            if emptied:
                return

    def _end_grace(self) -> None:
        """The hand-over's grace is over: drain what is left as a shutdown does."""
        for connection in list(self.connections):
            connection.begin_drain()
        self._drain_timer = self.reactor.call_later(self.config.drain_timeout, self._force_stop)
        self._stop_if_drained()

    def _force_stop(self) -> None:
        self._shutdown_level = 2
        if self.connections:
            self.log.info("closing %d connection(s) now", len(self.connections))
        for connection in list(self.connections):
            connection.abort()
        self.reactor.stop()

    def _stop_if_drained(self) -> None:
        if not self.connections:
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            self.reactor.stop()

    def server_close(self) -> None:
        super().server_close()
        if self._tracer is not None:
            self._tracer.close()

    def banner(self) -> str:
        text = super().banner()
        if self.reactor.fd_limit is not None:
            text += (f"; select() cannot watch descriptors >= {self.reactor.fd_limit}, so at "
                     f"most {self.connection_cap} connections (use epoll or poll for more)")
        return text

    def stats_extra(self) -> dict[str, Any]:
        stats, reactor = self.stats, self.reactor
        stats.loop_iterations = reactor.iterations
        stats.poll_seconds = reactor.poll_seconds
        stats.work_seconds = reactor.work_seconds
        return {}

    # -- the access log ---------------------------------------------------------------------

    def _before_poll(self) -> None:
        """Between two iterations (with an access log): a new freshness round, and the log
        written if enough lines wait, else a timer made sure of (one method: a call per
        iteration saved).

        Fewer system calls: flushing before every poll cost a ``write`` per loop iteration (a
        few requests each under load); now it is one ``write`` per ``FLUSH_LINES`` lines, and a
        line waits at most about ``LOG_FLUSH_SECONDS``.
        """
        static = self.static_handler
        if static is not None and static.check_round is not None:
            static.next_check_round()
        access_log = self.access_log
        if access_log is None:
            return
        pending = access_log.pending
        if not pending:
            return
        if pending >= FLUSH_LINES:
            access_log.flush()
        elif self._log_timer is None:
            self._log_timer = self.reactor.call_later(LOG_FLUSH_SECONDS, self._on_log_timer)

    def _on_log_timer(self) -> None:
        self._log_timer = None
        self.access_log_flush()

    # -- accepting --------------------------------------------------------------------------

    def _watch_listener(self, on: bool) -> None:
        if on == self._watching_listener:
            return
        self._watching_listener = on
        if on and self.exclusive_accept:
            self.reactor.register_exclusive(self.listener, self._on_listener_ready)
        elif on:
            self.reactor.register(self.listener, EVENT_READ, self._on_listener_ready)
        else:
            self.reactor.unregister(self.listener)

    def _on_listener_ready(self, mask: int) -> None:
        room = self.connection_cap - len(self.connections)
        if room > 0:
            accepted, pause = self.accept_batch(room)
            for sock, peer in accepted:
                self._start_connection(sock, peer)
            if pause:
                self._accept_paused = True
                self._watch_listener(False)
                self.reactor.call_later(ACCEPT_PAUSE_SECONDS, self._resume_accepting)
                return
        if len(self.connections) >= self.connection_cap:
            self._watch_listener(False)  # _connection_closed() resumes

    def _start_connection(self, sock: socket.socket, peer: str) -> None:
        fd_limit = self.reactor.fd_limit
        if fd_limit is not None and sock.fileno() >= fd_limit:
            self._refuse_over_fd_limit(sock, fd_limit)
            return
        try:
            sock.setblocking(False)
            configure_client_socket(sock, self.config.nodelay)
            if self._test_sndbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._test_sndbuf)
            if self._tls is not None:  # no handshake yet: the connection makes it
                sock = wrap_server_socket(self._tls, sock)
        except OSError as error:  # the peer may already be gone (ECONNRESET, EINVAL)
            self.log.debug("dropping a new connection: %s", error)
            sock.close()
            return
        try:
            connection = self._connection_class(self.reactor, sock, self.new_protocol(peer),
                                                self._connection_context)
        except MemoryError:  # that one connection is closed; the loop goes on
            self.reactor.unregister(sock)  # if it got that far: its number will be reused
            sock.close()
            return
        self.connections[connection] = None

    def _refuse_over_fd_limit(self, sock: socket.socket, fd_limit: int) -> None:
        fd = sock.fileno()
        self.stats.connections_refused += 1  # before the close, which the client can see
        sock.close()
        now = self.reactor.now
        if now - self._last_fd_limit_log >= FD_LIMIT_LOG_INTERVAL:
            self._last_fd_limit_log = now
            self.log.warning("refused a connection: descriptor %d >= %d, which select() cannot "
                             "watch; use --selector epoll or poll for more connections",
                             fd, fd_limit)

    def _resume_accepting(self) -> None:
        self._accept_paused = False
        if self._shutdown_level == 0:
            self._watch_listener(True)

    def _connection_closed(self, connection: Connection) -> None:
        self.connections.pop(connection, None)
        if self._shutdown_level:
            self._stop_if_drained()
        elif not self._watching_listener and not self._accept_paused \
                and len(self.connections) < self.connection_cap:
            self._watch_listener(True)
