"""Three ways to serve many clients, differing in one thing only: how connections are driven.

What this package knows: concurrency (blocking calls, threads, readiness events). What it must
not know: HTTP. Every model gets its listener, handler, protocol, limits and access log from
:class:`~evserver.servers.base.BaseServer`, so comparing them measures the concurrency model and
nothing else (the same idea as the standard library's ``socketserver`` mix-ins, where
``process_request`` is the one seam)::

    iterative                    threaded                          evented
    ---------                    --------                          -------
    loop:                        loop:                             loop (one thread):
      conn = accept()              conn = accept()                   ready = selector.select(t)
      drive(conn)  # blocks        Thread(drive, conn).start()       run due timers
      close(conn)                # one blocked thread per conn       for each ready socket:
    # one client at a time                                             accept / recv / send,
                                                                       never blocking

    drive(conn): recv -> protocol.receive -> send ... until close   (drivers/blocking.py)
    Connection:  readable -> protocol.receive -> transport.write    (drivers/evented.py)

- iterative: the textbook server. Simple, no locking, and one slow client stalls everyone
  (head-of-line blocking); its timeouts bound how long.
- threaded: the same ``drive`` per thread. Blocking code, but each idle connection costs a thread
  (its stack, a kernel task, scheduler work), and the GIL serialises the Python parts.
- evented: one thread and a ``selectors`` loop; a connection costs a small object and its buffers.

Worker processes (``--workers N``) multiply any of the three: a master (``master.py``) opens the
port, forks N workers, each a whole server of the chosen model built after ``fork``
(``worker.py``), and supervises them; they share a board of counters and heartbeats in shared
memory (``fleet.py``). Nothing on a request's path changes: a worker is the server above.
"""

from __future__ import annotations

import socket

from evserver.config import ServerConfig
from evserver.protocol import Handler
from evserver.servers.base import BaseServer


def make_server(config: ServerConfig, *, handler: Handler | None = None,
                listener: socket.socket | None = None) -> BaseServer:
    """Build the server ``config.model`` names, bound to a new listener or to ``listener``."""
    if config.model == "evented":
        from evserver.servers.evented import EventedServer

        return EventedServer(config, handler=handler, listener=listener)
    if config.model == "threaded":
        from evserver.servers.threaded import ThreadedServer

        return ThreadedServer(config, handler=handler, listener=listener)
    if config.model == "iterative":
        from evserver.servers.iterative import IterativeServer

        return IterativeServer(config, handler=handler, listener=listener)
    raise ValueError(f"unknown model {config.model!r}")


__all__ = ["BaseServer", "make_server"]
