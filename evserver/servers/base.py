"""What every concurrency model shares: the listener, the handler, the protocol factory, the log.

What this module knows: how to assemble the pieces a server needs from a ``ServerConfig``. What
it must not know: how connections are driven (that is each model's only job). Keeping all of this
here is what makes the comparison between models fair: same listener options, same handler, same
limits, same access log.
"""

from __future__ import annotations

import logging
import resource
import socket
from collections.abc import Callable
from typing import Any

from evserver import SERVER_NAME
from evserver.accesslog import AccessLog
from evserver.bodies import Response
from evserver.config import ServerConfig
from evserver.healthpage import health_response
from evserver.http.events import Request
from evserver.net.listener import (
    ACCEPT_BATCH,
    ACCEPT_PAUSE_SECONDS,
    PAUSE,
    SKIP,
    accept_error_kind,
    open_listener,
    peer_name,
)
from evserver.protocol import Handler, ServerProtocol
from evserver.static import StaticHandler
from evserver.stats import Stats
from evserver.statspage import stats_response


class BaseServer:
    """A bound listener plus everything needed to serve a connection. Subclasses drive it."""

    model = "base"

    def __init__(self, config: ServerConfig, *, handler: Handler | None = None,
                 selector_name: str = "") -> None:
        self.config = config
        self.log = logging.getLogger(f"evserver.{self.model}")
        self.stats = Stats(self.model, selector_name)
        static: Handler = handler or StaticHandler(
            config.root, index_names=config.index_names, listing=config.listing,
            follow_symlinks=config.follow_symlinks)
        self.static_handler = static if isinstance(static, StaticHandler) else None
        """The file handler when it is ours (a model may tune it: ``check_round``)."""
        self.draining = False
        """True from the moment a graceful stop begins: the health page answers 503 from then."""
        pages = self._own_pages()
        self.handler: Handler = self._with_own_pages(static, pages) if pages else static
        self.access_log = None if config.quiet else AccessLog.open(config.access_log,
                                                                   config.log_format)
        self.listener: socket.socket = open_listener(config.host, config.port, config.backlog)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]

    def new_protocol(self, peer: str) -> ServerProtocol:
        """The conversation for one new connection from ``peer`` (its address, for the log)."""
        return ServerProtocol(self.handler, limits=self.config.limits, peer=peer,
                              access_log=self.access_log, stats=self.stats,
                              split_writes=self.config.split_writes)

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
            except OSError as error:
                kind = accept_error_kind(error)
                if kind == SKIP:
                    continue
                if kind == PAUSE:
                    self.stats.accept_pauses += 1
                    self.log.warning("accept failed (%s): pausing accepting for %.1f s with %d "
                                     "connection(s) open", error.strerror or error,
                                     ACCEPT_PAUSE_SECONDS, self.stats.connections_open)
                    return accepted, True
                self.log.error("accept failed: %s", error)
                break
            accepted.append((sock, peer_name(address)))
        return accepted, False

    def access_log_flush(self) -> None:
        """Write out buffered access-log lines (models call it when they go idle)."""
        if self.access_log is not None:
            self.access_log.flush()

    def stats_extra(self) -> dict[str, Any]:
        """Model-specific figures for the stats page (threads, loop counters...)."""
        return {}

    def _own_pages(self) -> dict[str, Callable[[Request], Response]]:
        """The server's own pages by request target (``--stats-path``, ``--health-path``)."""
        pages: dict[str, Callable[[Request], Response]] = {}
        if self.config.stats_path:
            pages[self.config.stats_path] = lambda request: stats_response(
                self.stats.snapshot(**self.stats_extra()))
        if self.config.health_path:
            pages[self.config.health_path] = lambda request: health_response(self.draining)
        return pages

    def _with_own_pages(self, handler: Handler,
                        pages: dict[str, Callable[[Request], Response]]) -> Handler:
        """``handler``, with ``pages`` answered first: one dictionary lookup per request, and
        only when an own page is configured (without one, the handler is called directly)."""
        page = pages.get

        def handle(request: Request) -> Response:
            own = page(request.target)
            if own is not None:
                return own(request)
            return handler(request)

        return handle

    # -- lifecycle: each model implements these two --------------------------------------------

    def serve_forever(self) -> None:
        """Serve until ``shutdown()`` has completed."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Begin a graceful stop (from any thread or a signal handler); a second call forces it."""
        raise NotImplementedError

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
        return (f"{SERVER_NAME}: serving {self.config.root} on http://{shown}:{port}/ "
                f"(model {self.model}, selector {self.stats.selector or '-'}, "
                f"descriptor limit {soft})")
