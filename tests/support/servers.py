"""Servers in this process: every model, on port 0, serving in a background thread.

What this module knows: ``evserver``'s public way to build a server (``ServerConfig``,
``make_server``), its ``serve_forever``/``shutdown``/``server_close`` cycle, and the models and
selectors this machine has. What it must not know: what a test checks. Children (``python -m
evserver``) are in :mod:`tests.support.processes`.

The listener is bound and listening when :func:`start_in_thread` returns, so a client's connect
succeeds at once; :meth:`RunningServer.stop` fails the test if the server does not stop.
"""

from __future__ import annotations

import selectors
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evserver.config import ServerConfig
from evserver.servers import BaseServer, make_server
from tests.support.procfs import open_fds
from tests.support.waiting import SETTLE_SECONDS, STOP_TIMEOUT, wait_until

SELECTORS_HERE = [name for name, cls in (("epoll", "EpollSelector"), ("poll", "PollSelector"),
                                          ("select", "SelectSelector"))
                  if hasattr(selectors, cls)]
MODEL_PARAMS = [("evented", s) for s in SELECTORS_HERE] + [("threaded", "auto"),
                                                           ("iterative", "auto")]
"""``(model, selector)``: every model, and the evented one with every selector here."""
MODEL_IDS = [f"evented-{s}" if m == "evented" else m for m, s in MODEL_PARAMS]


@dataclass
class RunningServer:
    """A server serving in a background thread of this process."""

    server: BaseServer
    thread: threading.Thread
    root: Path

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    @property
    def port(self) -> int:
        return self.server.address[1]

    @property
    def model(self) -> str:
        return self.server.model

    def url(self, path: str = "/") -> str:
        scheme = "http" if self.server.config.tls_context is None else "https"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(STOP_TIMEOUT)
            assert not self.thread.is_alive(), f"{self.model} server did not stop"
            self.server.server_close()


def server_config(root: Path, **overrides: Any) -> ServerConfig:
    """A quiet configuration on 127.0.0.1 port 0 without an access log, plus ``overrides``."""
    settings: dict[str, Any] = {"root": str(root), "host": "127.0.0.1", "port": 0,
                                "quiet": True, "access_log": None}
    settings.update(overrides)
    return ServerConfig(**settings)


def start_in_thread(root: Path, **overrides: Any) -> RunningServer:
    """Build a server over ``root`` and run ``serve_forever`` in a daemon thread."""
    server = make_server(server_config(root, **overrides))
    thread = threading.Thread(target=server.serve_forever, name=f"{server.model}-server",
                              daemon=True)
    thread.start()
    return RunningServer(server, thread, root)


def settle(running: RunningServer, seconds: float = SETTLE_SECONDS) -> int:
    """Wait until the server holds no connection; then this process's descriptor count.

    The server closes a connection's socket a moment after the client sees it close, so a count
    taken right after a request could still include it. ``connections_open`` is decremented
    after the socket is closed (under a lock in the threaded model).
    """
    stats = running.server.stats
    wait_until(lambda: stats.connections_open == 0, "the server closed every connection", seconds)
    return open_fds()
