"""The evented driver: one accepted socket in the event loop (transport + protocol + deadlines).

What this module knows: how the evented pieces fit. The reactor says "readable" or "writable";
the transport moves bytes; the protocol decides what to answer and whether to go on. What it must
not know: parsing details (it asks ``protocol.mid_request``, never looks at bytes), handlers, the
accept loop. The shape follows uvicorn's ``h11_impl``: on data, feed and send; while output is
queued, stop reading (backpressure); when it drains, resume the protocol or wait for the next
request. Its blocking twin, ``evserver.drivers.blocking.drive``, runs the same conversation in a
loop of blocking calls; both take their read size, deadlines and lingering close from
``evserver.drivers.policy``.

One method, ``_update()``, runs after every event and decides everything that depends on state:
resume a paused protocol, begin closing, the selector interest mask, and the deadline. Nothing
else touches the mask or the deadline, so the rules below are all in one place:

- read interest  iff the protocol wants input and queued output is under ``HIGH_WATER``;
- write interest iff output is queued;
- deadline: output queued -> send timeout since the last write progress (a client that reads
  nothing is dropped); part of a request received -> header timeout since its first byte (NOT
  reset by each byte: slowloris); otherwise -> idle timeout (a fresh connection gets the header
  timeout for its first request, like nginx's client_header_timeout).

What those rules make of a connection's life is one table, below the imports: ``LIFE_STATES``
(idle, receiving, sending, paused, lingering, closed; the deadline of each and what holds in it)
and ``LIFE_MOVES`` (every move between them, with its cause). The driver does not dispatch on it
(``_update()`` decides, and a table lookup per event would cost time); ``Connection.state`` names
the state in the table's words, a test checks every move the driver makes against the table, and
``tools/statediagram.py`` draws it (``python tools/statediagram.py``: DOT files and PNGs).

A trick with deadlines (the keep-alive hot path arms no timer). The connection keeps one
``_deadline`` number and at most one reactor timer, scheduled at or before it. Moving the deadline
later (every request on a keep-alive connection pushes the idle deadline) only stores a float.
When the timer fires it compares the reactor's clock with ``_deadline``: not yet due, it re-arms
itself once at the new deadline. Only a deadline moving *earlier* (idle -> header) pushes a new
heap entry. So a connection serving thousands of requests per second touches the heap about once
per timeout period, not once per request.

Closing: after the last response is flushed and the protocol says close, a lingering close
(``evserver.drivers.policy``: shut down writing, then read and discard input until EOF,
``LINGER_SECONDS`` or ``LINGER_MAX_BYTES``), except when ``protocol.linger`` is false (the client
asked to close and left nothing unread): then a plain close.

TLS (``TLSConnection``, the class the server picks at accept for a TLS listener, so a plain
connection runs no TLS code at all): the handshake first, with callbacks of its own, the
interest mask OpenSSL asks for, and the first request's deadline (the header timeout from
accept), which no handshake event moves; then the same life as any connection, over a
transport that encrypts (``evserver.net.tls.TLSTransport``). Everything below the transport's
interface -- records, close_notify, kTLS -- is the transport's.

Invariants: ``reactor.modify`` is only called when the mask changes (it is a system call; a new
callback with the same mask is not); the socket is unregistered before it is closed; a closed
connection ignores late events and timers; a bug in any callback aborts this connection only.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from selectors import EVENT_READ, EVENT_WRITE
from typing import TYPE_CHECKING, Final, cast

from evserver.bodies import Item
from evserver.drivers.policy import (
    HEADER,
    IDLE,
    LINGER_MAX_BYTES,
    LINGER_SECONDS,
    RECV_SIZE,
    SEND,
    input_waiting,
    shut_down_writing,
)
from evserver.event.reactor import Reactor
from evserver.event.timers import Timer
from evserver.net.tls import (
    HANDSHAKE_DONE,
    PEER_GONE,
    WANTS_READ,
    WANTS_WRITE,
    TLSSocket,
    TLSTransport,
)
from evserver.net.transport import SplitWritesTransport, Transport

if TYPE_CHECKING:  # only for annotations: this module needs no HTTP code to run
    from evserver.config import ServerConfig
    from evserver.protocol import ServerProtocol
    from evserver.stats import Stats

log = logging.getLogger("evserver.connection")


HIGH_WATER = 64 * 1024
"""Queued output above which we stop reading: a client that pipelines without reading can make
us hold at most this much (plus one batch of the protocol) -- about one socket buffer's worth."""

NO_TIMER = float("inf")

LINGER = "linger"
"""The fourth deadline, besides the policy's three: the end of a lingering close."""

LIFE_STATES: Final[dict[str, tuple[str | None, str]]] = {
    # state      deadline  what holds
    "idle": (IDLE, "reading, no request begun (the first waits the header timeout)"),
    "receiving": (HEADER, "reading, part of a request in"),
    "sending": (SEND, "output queued, still reading"),
    "paused": (SEND, "output queued, not reading (HIGH_WATER, batch paused, closing)"),
    "lingering": (LINGER, "writing shut down, input discarded"),
    "closed": (None, "unregistered and closed"),
}
"""A connection's states (``Connection.state``): the deadline each lives under, what holds."""

LIFE_MOVES: Final[tuple[tuple[str, str, str], ...]] = (
    # from         to            cause
    ("idle", "idle", "request answered, all sent"),
    ("idle", "receiving", "part of a request"),
    ("idle", "sending", "answer queued"),
    ("idle", "paused", "answer queued, reading stopped"),
    ("idle", "lingering", "bad request or close answered"),
    ("idle", "closed", "idle timeout, peer's EOF, drain, or close answered"),
    ("receiving", "idle", "request complete, answered"),
    ("receiving", "sending", "request complete, answer queued"),
    ("receiving", "paused", "answer or 408 queued, reading stopped"),
    ("receiving", "lingering", "header timeout (408) or bad request"),
    ("receiving", "closed", "peer's EOF or reset"),
    ("sending", "idle", "output flushed"),
    ("sending", "receiving", "output flushed, a request begun"),
    ("sending", "paused", "queue over HIGH_WATER or batch paused"),
    ("sending", "lingering", "output flushed, protocol closes"),
    ("sending", "closed", "send timeout or reset"),
    ("paused", "sending", "queue under HIGH_WATER"),
    ("paused", "idle", "output flushed, waiting requests answered"),
    ("paused", "receiving", "output flushed, a request begun"),
    ("paused", "lingering", "output flushed, protocol closes"),
    ("paused", "closed", "send timeout, reset, or close answered"),
    ("lingering", "closed", "peer's EOF, linger timeout or LINGER_MAX_BYTES"),
)
"""Every move between ``LIFE_STATES``, with what causes it (checked against the driver)."""


class ConnectionContext:
    """What every connection of one server shares: its settings, its statistics, what to call
    when a connection has closed, and whether the server is draining. One object per server,
    one slot per connection: four slots of their own were 32 bytes per idle connection (with
    the object's size rounded)."""

    __slots__ = ("config", "draining", "on_closed", "stats")

    def __init__(self, config: ServerConfig, stats: Stats | None = None,
                 on_closed: Callable[[Connection], None] | None = None) -> None:
        self.config = config
        self.stats = stats
        self.on_closed = on_closed
        self.draining = False
        """The server is shutting down: close as soon as no request is in progress."""


class Connection:
    """The evented driver of one connection. Created by the server after accept()."""

    __slots__ = ("_context", "_deadline", "_idle_timeout", "_kind", "_last_progress",
                 "_lingered", "_mask", "_peer_eof", "_reactor", "_receiving", "_request_started",
                 "_timer", "_timer_when", "closed", "protocol", "transport")

    def __init__(self, reactor: Reactor, sock: socket.socket, protocol: ServerProtocol,
                 context: ConnectionContext) -> None:
        self._reactor = reactor
        config = context.config
        stats = context.stats
        self.transport = self._new_transport(sock, config, stats)
        self.protocol = protocol
        self._context = context
        self.closed = False
        self._lingered: int | None = None
        """Bytes read and discarded while lingering; None: not lingering."""
        self._peer_eof = False
        self._receiving = False
        """``protocol.mid_request`` as of the last ``_update()`` (the protocol only changes
        inside calls that are always followed by ``_update()``)."""
        self._idle_timeout = config.idle_timeout
        """The one setting read per request, kept here (not behind ``_context``)."""
        now = reactor.now
        self._request_started = now
        self._last_progress = now
        self._timer: Timer | None = None
        self._timer_when = NO_TIMER
        self._kind = IDLE
        self._deadline = NO_TIMER
        self._mask = EVENT_READ
        reactor.register(self.transport.fd, EVENT_READ, self._on_event)
        self._set_deadline(IDLE, now + config.header_timeout)  # the first request's wait
        if stats is not None:
            stats.connections_open += 1
            stats.connections_total += 1

    @staticmethod
    def _new_transport(sock: socket.socket, config: ServerConfig,
                       stats: Stats | None) -> Transport:
        """The write side. Its class is chosen here, once (the teaching switch --split-writes;
        TLS in ``TLSConnection``), so that no write tests a flag."""
        transport_class = SplitWritesTransport if config.split_writes else Transport
        return transport_class(sock, use_sendfile=config.use_sendfile, stats=stats)

    @property
    def fd(self) -> int:
        """The socket's descriptor (the transport's: a slot of its own was 8 bytes each)."""
        return self.transport.fd

    @property
    def config(self) -> ServerConfig:
        return self._context.config

    @property
    def state(self) -> str:
        """Where the connection is in its life: a key of ``LIFE_STATES`` (for logs and tests)."""
        if self.closed:
            return "closed"
        if self._lingered is not None:
            return "lingering"
        if self.transport.pending_bytes:
            return "sending" if self._mask & EVENT_READ else "paused"
        return "receiving" if self.protocol.mid_request else "idle"

    def __repr__(self) -> str:
        return (f"<Connection fd={self.fd} {self.protocol.peer} {self.state} "
                f"pending={self.transport.pending_bytes} mask={self._mask}>")

    # -- events -----------------------------------------------------------------------------

    def _on_event(self, mask: int) -> None:
        if self.closed:
            return  # a stale event from the same poll round
        try:
            transport = self.transport
            if mask & EVENT_WRITE:
                before = transport.pending_bytes
                transport.flush()
                if transport.pending_bytes < before:
                    self._last_progress = self._reactor.now
            if mask & EVENT_READ and not transport.closed:
                self._on_readable()
            self._update()
        except MemoryError:  # the protocol answers 503 when it can; out here the output may
            self.abort()  # be half made: close, without a traceback (formatting one allocates)
        except Exception:
            log.exception("%r failed; aborting it", self)
            self.abort()

    def _on_readable(self) -> None:
        transport = self.transport
        # One recv per readiness event (the selector is level-triggered, so leftovers wake us
        # again): looping until EAGAIN would add a failing system call to every request.
        data = transport.recv(RECV_SIZE)
        if data is None:
            return
        lingered = self._lingered
        if lingered is not None:
            lingered = self._lingered = lingered + len(data)
            if not data or lingered >= LINGER_MAX_BYTES:
                self._finish()  # the client has read everything and closed, or will not stop
            return  # input after our response is discarded
        if not data:
            if transport.closed:
                return  # recv failed (reset); _update() finishes
            self._peer_eof = True
        elif not self._receiving:
            self._request_started = self._reactor.now  # header timeout runs from here
        items = self.protocol.receive(data)
        if items:
            self._send(items)

    def _send(self, items: list[Item]) -> None:
        transport = self.transport
        if not transport._pending:  # pending_bytes without the property call (per request)
            self._last_progress = self._reactor.now  # the send timeout counts from here
        transport.write(items)

    def _update(self) -> None:
        """After any event: resume, close, or set the interest mask and the deadline.

        Speed: this runs after every event, so it reads the transport's ``_pending`` and the
        protocol's ``paused``/``should_close`` slots directly (no property calls) and asks the
        protocol ``mid_request`` once, keeping the answer in ``_receiving`` for the next read.
        """
        if self.closed:
            return
        transport = self.transport
        if transport.closed:
            self._finish()
            return
        if self._lingered is not None:  # lingering
            return
        protocol = self.protocol
        pending = transport._pending
        while not pending and protocol.paused:  # output flushed: answer what is waiting
            items = protocol.resume()
            if items:
                self._send(items)
                if transport.closed:
                    self._finish()
                    return
            pending = transport._pending
        receiving = self._receiving = protocol.mid_request
        if not pending:
            if protocol.held_lines is not None:  # a long response has all gone out
                protocol.output_sent()
            if protocol.should_close:
                self._close_gracefully()
                return
            if self._context.draining and not receiving and not input_waiting(transport.sock):
                # (A request that arrived unread, in the round the drain began, is read and
                # answered first: closing over it would reset the connection.)
                self._finish()
                return
        mask = EVENT_WRITE if pending else 0
        # protocol.wants_read, written out
        if pending < HIGH_WATER and not (protocol.paused or protocol.should_close
                                         or self._peer_eof):
            mask |= EVENT_READ
        if mask != self._mask:
            if not mask:  # nothing to wait for (cannot happen with a consistent protocol)
                self._finish()
                return
            self._mask = mask
            self._reactor.modify(transport.fd, mask, self._on_event)
        if pending:
            self._set_deadline(SEND, self._last_progress + self._context.config.send_timeout)
        elif receiving:
            if self._kind == SEND:  # reading was stopped while responses went out: the next
                self._request_started = self._reactor.now  # request's clock starts now
            self._set_deadline(HEADER,
                               self._request_started + self._context.config.header_timeout)
        else:
            when = self._reactor.now + self._idle_timeout
            if when >= self._timer_when:  # _set_deadline's common case, written out
                self._kind = IDLE
                self._deadline = when
            else:
                self._set_deadline(IDLE, when)

    # -- deadlines --------------------------------------------------------------------------

    def _set_deadline(self, kind: str, when: float) -> None:
        self._kind = kind
        self._deadline = when
        if when < self._timer_when:  # only an earlier deadline needs a new heap entry
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._reactor.call_at(when, self)  # calls _on_timer: see __call__
            self._timer_when = when

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_when = NO_TIMER
        if self.closed:
            return
        if self._reactor.now < self._deadline:  # the deadline moved later: wait for it
            self._timer = self._reactor.call_at(self._deadline, self)
            self._timer_when = self._deadline
            return
        kind = self._kind
        if kind == LINGER:
            self._finish()
            return
        stats = self._context.stats
        if stats is not None:
            stats.timeouts[kind] += 1
        if kind == HEADER:
            log.debug("%r: header timeout", self)
            self._send(self.protocol.timed_out())  # 408, then a graceful close
            self._update()
        elif kind == SEND:
            log.info("%r: send timeout (the client read nothing); aborting", self)
            self.abort()
        else:
            log.debug("%r: idle timeout", self)
            self._finish()

    __call__ = _on_timer
    """The connection is its own timer's callback: ``call_at(when, self)``. A bound method,
    ``self._on_timer``, would be an object of its own held by the timer: saves 64 bytes per
    idle connection. (Not for the selector's callback: calling an object costs more than
    calling a bound method, and that call is made per event.)"""

    # -- closing ----------------------------------------------------------------------------

    def _close_gracefully(self) -> None:
        """Everything is sent and the protocol is done: shut down writing, then linger."""
        if self._peer_eof or not self.protocol.linger:
            self._finish()
            return
        if not shut_down_writing(self.transport.sock):
            self._finish()
            return
        self._lingered = 0
        if self._mask != EVENT_READ:
            self._mask = EVENT_READ
            self._reactor.modify(self.transport.fd, EVENT_READ, self._on_event)
        self._set_deadline(LINGER, self._reactor.now + LINGER_SECONDS)

    def begin_drain(self) -> None:
        """Server shutdown: finish the request in progress (if any), then close. (Every
        connection sharing this one's context drains: the server calls this for each.)"""
        self._context.draining = True
        self._update()

    def abort(self) -> None:
        """Close now, dropping queued output."""
        self._finish()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._reactor.unregister(self.transport.fd)  # before the close: the number may be reused
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.abort()
        self.protocol.connection_lost(self.transport.dropped_bytes)
        context = self._context
        if context.stats is not None:
            context.stats.connections_open -= 1
        if context.on_closed is not None:
            context.on_closed(self)


class TLSConnection(Connection):
    """A connection over TLS: a handshake first, then the life of any connection.

    The handshake is a conversation of its own, driven here. While it lasts, the reactor calls
    ``_on_handshake_event`` instead of ``_on_event``, and the interest mask is what OpenSSL
    asked for: a readable socket may bring handshake bytes only, and the server's flight may
    wait for room. The deadline is the one every new connection gets, the header timeout from
    accept (state ``idle``, "the first waits the header timeout"), and no handshake event moves
    it: a client that stalls mid-handshake is dropped on time, without a word (counted as an
    idle timeout, like a client that connects and says nothing).

    Then ``_on_event`` takes over, at once if the TLS object already decrypted request bytes
    (no selector would see them). A handshake the client failed (plain HTTP sent to this port,
    no version or cipher in common) ends in a lingering close that reads raw bytes, so the
    client sees an end of stream, not a reset; one it abandoned (reset, end of stream) in a
    plain close.
    """

    __slots__ = ()

    transport: TLSTransport

    def __init__(self, reactor: Reactor, sock: socket.socket, protocol: ServerProtocol,
                 context: ConnectionContext) -> None:
        super().__init__(reactor, sock, protocol, context)
        reactor.modify(self.transport.fd, EVENT_READ, self._on_handshake_event)

    @staticmethod
    def _new_transport(sock: socket.socket, config: ServerConfig,
                       stats: Stats | None) -> TLSTransport:
        return TLSTransport(cast(TLSSocket, sock), use_sendfile=config.use_sendfile,
                            stats=stats)

    def _on_handshake_event(self, mask: int) -> None:
        if self.closed:
            return
        try:
            outcome = self.transport.handshake()
            if outcome == HANDSHAKE_DONE:
                self._begin_conversation()
            elif outcome in (WANTS_READ, WANTS_WRITE):
                if outcome != self._mask:
                    self._mask = outcome
                    self._reactor.modify(self.transport.fd, outcome, self._on_handshake_event)
            else:
                self._after_failed_handshake(outcome)
        except Exception:
            log.exception("%r failed in its TLS handshake; aborting it", self)
            self.abort()

    def _begin_conversation(self) -> None:
        self._mask = EVENT_READ
        self._reactor.modify(self.transport.fd, EVENT_READ, self._on_event)
        if self.transport.sock.pending():
            self._on_event(EVENT_READ)

    def _after_failed_handshake(self, outcome: int) -> None:
        if outcome == PEER_GONE or self.transport.closed:
            self._finish()
            return
        # the lingering close's reads
        self._reactor.modify(self.transport.fd, self._mask, self._on_event)
        self._close_gracefully()

    def _update(self) -> None:
        """``Connection._update``, then: a write that waits for the client's bytes waits for
        readable, not writable (writable would wake the loop for nothing, again and again)."""
        Connection._update(self)
        if self.transport.write_waits_for_read and not self.closed \
                and self._mask != EVENT_READ:
            self._mask = EVENT_READ
            self._reactor.modify(self.transport.fd, EVENT_READ, self._on_event)
