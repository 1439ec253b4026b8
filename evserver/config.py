"""Every setting of a server, with its default and the reason for it.

What this module knows: names and defaults. What it must not know: argv (``cli`` parses it) and
how the settings are used. One frozen object is built by the CLI (or by a test) and handed down;
nothing reads global state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from evserver.event.reactor import SELECTOR_NAMES
from evserver.http.limits import DEFAULT_LIMITS, ParserLimits

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

MODELS = ("evented", "threaded", "iterative")
SELECTORS = SELECTOR_NAMES
"""``--selector`` names: the event layer's table (``auto`` is the platform's best)."""

DEFAULT_PORT = 8000
"""The port ``python -m http.server`` uses, so one can replace the other."""

DEFAULT_BACKLOG = 1024
"""listen() queue length; socketserver's 5 silently caps load tests (the kernel caps it at
net.core.somaxconn, 4096 on current Linux)."""

DEFAULT_MAX_CONNECTIONS = 16_384
"""Open client connections at once; at the limit the server stops accepting until one closes.
Above the 10,000 idle keep-alive experiment (so a new client is still let in), low enough to keep
a thread-per-connection server from exhausting memory (16,384 x 256 KiB stacks = 4 GiB virtual)."""

DEFAULT_HEADER_TIMEOUT = 10.0
"""Seconds a client has, from a request's first byte, to send its whole head and body (not reset
by each byte): slowloris protection. nginx's client_header_timeout is 60 s; 10 s is ample for
heads and for bodies up to the 1 MiB body limit on any real link."""

DEFAULT_IDLE_TIMEOUT = 60.0
"""Seconds an idle keep-alive connection is kept. nginx uses 75 s, browsers reuse for ~60 s."""

DEFAULT_SEND_TIMEOUT = 30.0
"""Seconds a client may read nothing while output waits; then it is dropped (nginx: 60 s)."""

DEFAULT_DRAIN_TIMEOUT = 10.0
"""Seconds graceful shutdown waits for responses in flight before closing what remains."""

PORT_SHARING_MODES = ("reuseport", "inherited", "exclusive")
"""How worker processes share the port (``evserver.servers.master`` explains each)."""

DEFAULT_PORT_SHARING = "reuseport"
"""The kernel spreads connections evenly, no worker wakes for another's, and a worker replaced
(crash, hang, reload) takes over its predecessor's socket and queue: nothing is reset."""

MAX_WORKERS = 256
"""Worker processes at most: the master's shared board has room for this many (and their
successors during a reload); far more than the cores of any machine this server will run on."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity: ``taskset``, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerConfig:
    """All settings. ``host=None`` means every address (dual-stack IPv6+IPv4 where possible)."""

    root: str = "."
    host: str | None = None
    port: int = DEFAULT_PORT
    model: str = "evented"
    selector: str = "auto"
    index_names: tuple[str, ...] = ("index.html",)
    listing: bool = True
    follow_symlinks: bool = False
    dotfiles: bool = False
    """Serve and list names beginning with a dot; off, they are 404 (``.well-known`` stays)."""
    precompressed: bool = True
    """Send ``name.br``, ``name.zst`` or ``name.gz`` for ``name`` when the client accepts it."""
    gzip: bool = False
    """Compress small text files with gzip, once, in memory, for clients that accept it."""
    headers: tuple[tuple[str, str], ...] = ()
    """(name, value) fields added to every answer below 400 (``-H``)."""
    cache_control: str | None = None
    """A ``Cache-Control`` value for every answer below 400."""
    cors: bool = False
    """Answer CORS: ``Access-Control-Allow-Origin: *`` and preflights."""
    error_pages: tuple[tuple[int, str], ...] = ()
    """(status, file) pairs: the operator's page for that error status, read at start-up."""
    fallback: str | None = None
    """A file sent with 200 for GET and HEAD of a path that names nothing (single-page apps)."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    backlog: int = DEFAULT_BACKLOG
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    use_sendfile: bool = True
    stat_every_request: bool = False
    """Re-verify a cached file with a stat on every request, even in the evented model (which
    otherwise checks once per loop iteration); for measuring what the shared check buys."""
    quiet: bool = False
    access_log: str | None = "-"
    """Where access log lines go: ``"-"`` for standard error, a file name, or ``None`` for none."""
    log_format: str = "common"
    workers: int = 0
    """Worker processes under a master (``--workers``); 0 runs the server in this process."""
    port_sharing: str = DEFAULT_PORT_SHARING
    """How the workers share the port: one of ``PORT_SHARING_MODES``."""
    stats_path: str | None = None
    """Where the counters are served: JSON, or the live dashboard to a browser; None: nowhere."""
    metrics_path: str | None = None
    """Where the same counters are served in Prometheus's text format; None: nowhere."""
    health_path: str | None = None
    """Where the health page answers (200 while serving, 503 once a drain has begun), or None."""
    limits: ParserLimits = field(default=DEFAULT_LIMITS)
    verbose: bool = False
    """Debug log lines on (the command line sets the logging level from it)."""
    trace: str | None = None
    """Where the evented loop writes one line per iteration and per event: ``"-"`` for standard
    error, a file name, or ``None`` (the default) for no trace at all."""
    tls_context: ssl.SSLContext | None = None
    """Serve HTTPS with this context (from ``evserver.net.tls.server_context``), or plain HTTP.
    Built once, at start-up, by whoever builds the configuration: worker processes forked later
    inherit it (and its session ticket key) rather than reading the files again, until a
    master's reload builds the next one with ``tls_reload``."""
    tls_reload: Callable[[], ssl.SSLContext] | None = None
    """Builds the context again from the same files (a renewed certificate), raising
    ``TLSSetupError`` when they cannot be used: a master's SIGHUP calls it, or None (plain HTTP,
    or a context that has no files behind it)."""
    # Teaching switches: each makes the server slower on purpose, to show what a default buys.
    nodelay: bool = True
    """Set ``TCP_NODELAY`` on accepted sockets; ``False`` leaves Nagle's algorithm on."""
    split_writes: bool = False
    """Send a response's head and body with separate calls, never gathered (``sendmsg``),
    joined or corked (``MSG_MORE``); with ``nodelay`` off, that shows Nagle meeting the
    client's delayed ACK."""
