"""The listening socket, and what every accepted socket gets.

What this module knows: address families, socket options, the listen backlog and the errno values
that mean "out of resources". What it must not know: HTTP, selectors, how connections are driven
(the evented and blocking models both use it, so both get the same options).

Choices:

- ``SO_REUSEADDR``: a restarted server can bind while old connections sit in TIME_WAIT.
- ``SO_REUSEPORT`` only when asked (``reuse_port``): worker processes each listening on their own
  socket of one port, the kernel spreading new connections over them (``evserver.servers.master``).
  Every socket of such a group must set it; a socket without it cannot join, so a probe that binds
  without it (``backlog=None``: bound, never listening, closed at once) tells whether anybody
  holds the port at all.
- No host: one dual-stack socket on ``::`` with ``IPV6_V6ONLY`` cleared, so IPv4 clients arrive as
  ``::ffff:a.b.c.d``; where the kernel has no IPv6, ``0.0.0.0`` instead.
- An explicit backlog (socketserver's default of 5 silently drops connections under load; the
  kernel caps the number at ``net.core.somaxconn``).
- ``TCP_NODELAY`` on accepted sockets: a response head and body sent in two writes must not wait
  for the client's delayed ACK (Nagle; CPython gh-108736 cost 40 ms per request). The teaching
  switch ``--no-nodelay`` leaves it off, so a lab can show that stall (with ``--split-writes``).

Accepting: every model accepts in batches of at most ``ACCEPT_BATCH`` from a non-blocking
listener, and reads an accept() failure with ``accept_error_kind`` (skip, pause, or fail).

Errors: a port already in use raises ``OSError`` (EADDRINUSE) to the caller, which prints one line.
"""

from __future__ import annotations

import errno
import socket
from sys import intern

ACCEPT_BATCH = 64
"""Connections accepted per readiness event: enough to empty a burst, bounded so a flood of new
connections cannot starve those already open (asyncio uses its backlog, 100)."""

ACCEPT_PAUSE_SECONDS = 0.1
"""How long every model stops accepting when out of descriptors or memory: long enough not to
spin on the error (connections closing meanwhile free descriptors), short enough that clients
waiting in the listen queue are served soon after (trio's accept loop waits as long)."""

RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""accept() failures that mean "out of descriptors or memory": pause accepting, do not spin."""

TRANSIENT_ACCEPT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
"""accept() failures about one connection that died in the queue (or was refused by a
firewall rule): skip it and go on accepting."""

# What an accept() failure means for the accept loop (``accept_error_kind``).
SKIP, PAUSE, FAIL = "skip", "pause", "fail"

IPV4_MAPPED_PREFIX = "::ffff:"
"""How a dual-stack socket shows an IPv4 peer; stripped for logs."""

_NO_IPV6_ERRNOS = frozenset({errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT})
"""socket()/bind() failures on ``::`` meaning this host has no usable IPv6."""


def _bound(family: int, address: tuple[object, ...], backlog: int | None,
           dual_stack: bool = False, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def open_listener(host: str | None, port: int, backlog: int | None, *,
                  reuse_port: bool = False) -> socket.socket:
    """A bound, listening socket (still blocking: the caller decides).

    ``backlog=None``: bound but not listening (a probe: it holds the address and takes no
    connection). ``reuse_port``: with ``SO_REUSEPORT``, to join the other sockets of the port.
    """
    if host is None:
        if socket.has_ipv6:
            try:
                return _bound(socket.AF_INET6, ("::", port), backlog, dual_stack=True,
                              reuse_port=reuse_port)
            except OSError as error:
                if error.errno not in _NO_IPV6_ERRNOS:
                    raise
        return _bound(socket.AF_INET, ("0.0.0.0", port), backlog, reuse_port=reuse_port)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    return _bound(family, address, backlog, reuse_port=reuse_port)


def accept_error_kind(error: OSError) -> str:
    """The one classifier of accept() failures, for every model.

    ``SKIP``: that connection died in the queue; go on accepting. ``PAUSE``: out of descriptors
    or memory; stop accepting for ``ACCEPT_PAUSE_SECONDS`` (accepting again at once would spin).
    ``FAIL``: anything else; log it and end this batch (the next readiness event tries again).
    """
    if error.errno in TRANSIENT_ACCEPT_ERRNOS:
        return SKIP
    if error.errno in RESOURCE_ERRNOS:
        return PAUSE
    return FAIL


def configure_client_socket(sock: socket.socket, nodelay: bool = True) -> None:
    """Options every accepted connection gets, whatever drives it; ``nodelay=False`` (a teaching
    switch) leaves Nagle's algorithm on, as a new socket has it."""
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def peer_name(address: object) -> str:
    """The peer's host for logs: ``127.0.0.1`` rather than ``::ffff:127.0.0.1``.

    Interned: every connection keeps its peer's name, and the connections of one host then
    share one string instead of a copy each (saves 64 bytes per idle connection but the
    first from a host). Interned strings are dropped when nothing uses them any more.
    """
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host.startswith(IPV4_MAPPED_PREFIX):
            host = host[len(IPV4_MAPPED_PREFIX):]
        return intern(host)
    return str(address) or "-"
