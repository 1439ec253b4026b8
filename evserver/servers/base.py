"""What every concurrency model shares: the listener, the handler, the protocol factory, the log.

What this module knows: how to assemble the pieces a server needs from a ``ServerConfig``. What
it must not know: how connections are driven (that is each model's only job). Keeping all of this
here is what makes the comparison between models fair: same listener options, same handler, same
limits, same access log.

Seams for worker processes (``evserver.servers.master`` and ``worker``), all unused by a server
running alone: the listener may be handed in (the master opened it before forking);
``exclusive_accept`` asks the model to watch it with ``EPOLLEXCLUSIVE``; ``retire()`` hands over
to a successor (every later response says ``Connection: close``, idle connections get
``RETIRE_GRACE_SECONDS`` before they are closed); ``fleet_stats`` turns this process's counters
into the whole fleet's for the stats page.
"""

from __future__ import annotations

import logging
import resource
import socket
from collections.abc import Callable, Iterable
from typing import Any

from evserver import SERVER_NAME
from evserver.accesslog import AccessLog
from evserver.bodies import Response
from evserver.config import ServerConfig
from evserver.healthpage import health_response
from evserver.http.events import Request
from evserver.metrics import metrics_response
from evserver.net.listener import (
    ACCEPT_BATCH,
    ACCEPT_PAUSE_SECONDS,
    PAUSE,
    SKIP,
    accept_error_kind,
    open_listener,
    peer_name,
)
from evserver.net.tls import body_path
from evserver.protocol import AccessLogger, Handler, ServerProtocol, SplitWritesProtocol
from evserver.static import StaticHandler
from evserver.stats import Stats
from evserver.statspage import stats_page_response

RETIRE_GRACE_SECONDS = 1.0
"""After ``retire()``, how long an idle keep-alive connection is kept before it is closed: a
client busy on it sends its next request well within a second and is answered with
``Connection: close`` (so it moves to a successor without a failed request); a client idle that
long is closed, and a request racing that close is the one a client retries (RFC 9112 9.3.1)."""

FleetStats = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns one worker's stats snapshot into the fleet's (the sum, and a row per worker)."""


def closing_handler(handler: Handler) -> Handler:
    """``handler``, with every response marked to end its connection (``Connection: close``).

    For a server handing over to a successor: the client learns from the response itself that
    the connection ends, instead of finding it closed while a request may be on its way. The
    response is copied, never changed: a handler may hand out one object many times.
    """
    def handle(request: Request) -> Response:
        response = handler(request)
        return Response(response.status, response.fields, response.body, response.body_length,
                        close=True)

    return handle


class BaseServer:
    """A bound listener plus everything needed to serve a connection. Subclasses drive it."""

    model = "base"

    def __init__(self, config: ServerConfig, *, handler: Handler | None = None,
                 selector_name: str = "", listener: socket.socket | None = None) -> None:
        self.config = config
        self.log = logging.getLogger(f"evserver.{self.model}")
        self.stats = Stats(self.model, selector_name)
        static: Handler = handler or StaticHandler(
            config.root, index_names=config.index_names, listing=config.listing,
            follow_symlinks=config.follow_symlinks, dotfiles=config.dotfiles,
            precompressed=config.precompressed, gzip=config.gzip, headers=config.headers,
            cache_control=config.cache_control, cors=config.cors,
            error_pages=dict(config.error_pages), fallback=config.fallback)
        self.static_handler = static if isinstance(static, StaticHandler) else None
        """The file handler when it is ours (a model may tune it: ``check_round``)."""
        self.draining = False
        """True from the moment a graceful stop begins: the health page answers 503 from then."""
        pages = self._own_pages()
        self.handler: Handler = self._with_own_pages(static, pages) if pages else static
        self.access_log = None if config.quiet else AccessLog.open(config.access_log,
                                                                   config.log_format)
        self._log_record: AccessLogger | None = (
            None if self.access_log is None else self.access_log.record)
        """What each protocol calls per response: one bound method for all (see ``record``)."""
        self.listener: socket.socket = listener if listener is not None else open_listener(
            config.host, config.port, config.backlog)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.exclusive_accept = False
        """Watch the listener with ``EPOLLEXCLUSIVE`` (set before ``serve_forever``)."""
        self.take_queue_on_retire = False
        """On ``retire()``, accept what waits in the listener's queue, then close it: for a
        socket of its own (``SO_REUSEPORT``) that may be closed for good, whose queued
        connections the kernel would otherwise reset."""
        self.fleet_stats: FleetStats | None = None
        """Set in a worker process: the stats page shows the fleet instead of this process."""

    def new_protocol(self, peer: str) -> ServerProtocol:
        """The conversation for one new connection from ``peer`` (its address, for the log)."""
        protocol_class = SplitWritesProtocol if self.config.split_writes else ServerProtocol
        return protocol_class(self.handler, limits=self.config.limits, peer=peer,
                              access_log=self._log_record, stats=self.stats)

    def accept_batch(self, room: int) -> tuple[list[tuple[socket.socket, str]], bool]:
        """Accept up to ``room`` (at most ``ACCEPT_BATCH``) waiting connections.

        Returns the new sockets with their peers' names, and whether accepting must now pause
        for ``ACCEPT_PAUSE_SECONDS`` (out of descriptors or memory: counted and logged here; the
        model decides how to wait). The listener is non-blocking in every model, so an empty
        queue ends the batch at once.
        """
        accepted: list[tuple[socket.socket, str]] = []
        listener = self.listener
        for _ in range(min(room, ACCEPT_BATCH)):
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except (OSError, MemoryError) as error:  # Python's socket object needs memory too
                kind = accept_error_kind(error) if isinstance(error, OSError) else PAUSE
                if kind == SKIP:
                    continue
                if kind == PAUSE:
                    self.stats.accept_pauses += 1
                    self.log.warning("accept failed (%s): pausing accepting for %.1f s with %d "
                                     "connection(s) open",
                                     (error.strerror or error) if isinstance(error, OSError)
                                     else "out of memory",
                                     ACCEPT_PAUSE_SECONDS, self.stats.connections_open)
                    self.stats.accepted += len(accepted)
                    return accepted, True
                self.log.error("accept failed: %s", error)
                break
            accepted.append((sock, peer_name(address)))
        self.stats.accepted += len(accepted)
        return accepted, False

    def access_log_flush(self) -> None:
        """Write out buffered access-log lines (models call it when they go idle)."""
        if self.access_log is not None:
            self.access_log.flush()

    def flush_log_before_exit(self) -> None:
        """Write the access log's buffered lines before an exit that skips every cleanup
        (``os._exit`` on a second stop signal). Called from a signal handler: it may interrupt
        the log in the middle of a call, which never runs again after the exit; it never waits
        long (the blocking models bound their wait for the log's lock)."""
        if self.access_log is not None:
            self.access_log.flush()

    def stats_extra(self) -> dict[str, Any]:
        """Model-specific figures for the stats page (threads, loop counters...)."""
        return {}

    def own_stats(self) -> dict[str, Any]:
        """This process's counters, the access log's lost lines and the model's extras included."""
        if self.access_log is not None:
            self.stats.log_lines_lost = self.access_log.lines_lost
        return self.stats.snapshot(**self.stats_extra())

    def stats_snapshot(self) -> dict[str, Any]:
        """What the stats page shows: this process's counters, or in a worker the fleet's."""
        own = self.own_stats()
        return own if self.fleet_stats is None else self.fleet_stats(own)

    def _own_pages(self) -> dict[str, Callable[[Request], Response]]:
        """The server's own pages by request target (``--stats-path``: JSON, or the live
        dashboard to a browser; ``--metrics-path``: Prometheus text; ``--health-path``)."""
        pages: dict[str, Callable[[Request], Response]] = {}
        if self.config.stats_path:
            pages[self.config.stats_path] = lambda request: stats_page_response(
                request.headers.get("accept"), self.stats_snapshot)
        if self.config.metrics_path:
            pages[self.config.metrics_path] = lambda request: metrics_response(
                self.stats_snapshot())
        if self.config.health_path:
            pages[self.config.health_path] = lambda request: health_response(self.draining)
        return pages

    def _with_own_pages(self, handler: Handler,
                        pages: dict[str, Callable[[Request], Response]]) -> Handler:
        """``handler``, with ``pages`` answered first. Speed: one ``in`` test per request (no
        call, as cheap as the comparison with one path it replaced), and only when an own page
        is configured; without one, the handler is called directly."""

        def handle(request: Request) -> Response:
            target = request.target
            if target in pages:
                return pages[target](request)
            return handler(request)

        return handle

    # -- lifecycle: each model implements these two --------------------------------------------

    def serve_forever(self) -> None:
        """Serve until ``shutdown()`` has completed."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Begin a graceful stop (from any thread or a signal handler); a second call forces it."""
        raise NotImplementedError

    def retire(self) -> None:
        """Hand over to a successor (from any thread or a signal handler): stop accepting,
        answer every further request with ``Connection: close``, close idle connections after
        ``RETIRE_GRACE_SECONDS``, then stop as ``shutdown()`` does. A ``shutdown()`` call
        afterwards forces the stop."""
        raise NotImplementedError

    def _answer_with_close(self, protocols: Iterable[ServerProtocol]) -> None:
        """From now on every response ends its connection: on the conversations under way
        (``protocols``) and on those to come (``self.handler``)."""
        self.handler = closing = closing_handler(self.handler)
        for protocol in protocols:
            protocol.replace_handler(closing)

    def server_close(self) -> None:
        """Release the listener and flush the log (after ``serve_forever`` returned)."""
        self.listener.close()
        if self.access_log is not None:
            self.access_log.close()

    def banner(self) -> str:
        """The start-up line: where, what, and the descriptor limit (RFC-free, for people)."""
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        tls = self.config.tls_context
        scheme, bodies = ("http", "") if tls is None else ("https", f", {body_path(tls)}")
        return (f"{SERVER_NAME}: serving {self.config.root} on {scheme}://{shown}:{port}/ "
                f"(model {self.model}, selector {self.stats.selector or '-'}, "
                f"descriptor limit {soft}{bodies})")
