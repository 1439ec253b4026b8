"""The iterative model: accept one connection, drive it to the end, accept the next.

What this module knows: that the blocking ``drive`` (``evserver.drivers.blocking``) runs on the
accepting thread. What it must not know: HTTP, threads. It is the textbook server, kept as the
baseline every other model is measured against::

    loop:
        conn = accept()
        drive(conn)          # recv -> protocol -> send ... until the connection ends
        # only now is the next client accepted

The cost, plainly: head-of-line blocking. While one connection is open, every other client waits
in the listen queue (its connect() succeeded: the kernel completed the handshake; its request sits
unread). One slow client, or one idle keep-alive client, holds everybody for as long as its
connection lasts: up to ``idle_timeout`` (60 s by default) after its last request, up to
``header_timeout`` per request it dribbles, up to ``send_timeout`` per stall while it fails to
read a response, and up to ``LINGER_SECONDS`` (2 s, ``evserver.drivers.policy``) after the
server closed first while it waits for the client's own close. The timeouts (socket timeouts)
are what keeps one client from holding the server for ever. It shines only with one client at a
time, and with clients that close (HTTP/1.0, ``Connection: close``); benchmarks with many
keep-alive connections serialise completely.

Everything else (listener, TCP_NODELAY, sendfile, limits, access log, graceful shutdown) is the
shared ``BlockingServer``; ``max_connections`` is 1 here by construction.
"""

from __future__ import annotations

import socket
from typing import Any

from evserver.config import ServerConfig
from evserver.servers.blocking import BlockingServer


class IterativeServer(BlockingServer):
    """One connection at a time, on the thread that calls ``serve_forever``."""

    model = "iterative"

    def __init__(self, config: ServerConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if self.access_log is not None:
            # No other thread runs while a client is served: write the log whenever it idles.
            self.on_idle = self.access_log_flush

    def process_connection(self, sock: socket.socket, peer: str) -> None:
        self.serve_connection(sock, peer)  # blocks until this client is done
        self.access_log_flush()  # the server goes back to waiting: the log catches up
