"""select() and descriptors >= 1024: cap, refuse with a log line, stay healthy.

``select()`` takes bit sets of FD_SETSIZE (1024) bits: it cannot watch a descriptor numbered 1024
or above. The evented server with ``--selector select`` caps its connections below that, says so
in its banner, and refuses (closes at once, one log line) a connection whose descriptor would be
too high anyway, without crashing or spinning.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from evserver.servers.evented import SELECT_FD_HEADROOM
from tests.support.processes import ServerProcess
from tests.support.servers import RunningServer

FD_SETSIZE = 1024
CLIENTS = 1100
"""More connections than select() could ever watch."""

pytestmark = pytest.mark.skipif(not hasattr(__import__("selectors"), "SelectSelector"),
                                reason="no select() here")


def _ensure_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _get(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while not data.endswith(b"hello, world\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_banner_names_the_limit_and_the_cap(start_process: Callable[..., ServerProcess]) -> None:
    server = start_process("--selector", "select", "-q")
    assert "select() cannot watch descriptors >= 1024" in server.banner
    assert f"at most {FD_SETSIZE - SELECT_FD_HEADROOM} connections" in server.banner


def test_more_clients_than_select_can_watch(start_process: Callable[..., ServerProcess]) -> None:
    """1100 clients: the first ones are served, the rest wait in the backlog (never crash, never
    spin), and are served as soon as earlier ones leave."""
    _ensure_fd_limit(CLIENTS + 200)
    server = start_process("--selector", "select", "-q", "--backlog", "2048")
    clients: list[socket.socket] = []
    try:
        for _ in range(CLIENTS):
            clients.append(socket.create_connection(server.address, timeout=30))
        assert _get(clients[0]).startswith(b"HTTP/1.1 200 ")
        last = clients[-1]  # beyond the cap: waits in the listen queue
        last.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in clients[:300]:  # free slots
            sock.close()
        data = b""
        while not data.endswith(b"hello, world\n"):
            chunk = last.recv(4096)
            assert chunk, "the waiting client was dropped"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        assert server.process.poll() is None
        assert server.open_fds() < FD_SETSIZE
    finally:
        for sock in clients:
            sock.close()


def test_a_descriptor_over_the_limit_is_refused_with_one_log_line(
        start_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    """In-process, this test fills the shared descriptor table so the next accepted socket gets a
    descriptor >= 1024; the server must close it, log once, and keep serving low ones."""
    _ensure_fd_limit(FD_SETSIZE + 200)
    server = start_server(model="evented", selector="select")
    low = socket.create_connection(server.address, timeout=10)  # opened early: a low descriptor
    assert _get(low).startswith(b"HTTP/1.1 200 ")
    fillers: list[int] = []
    # Sockets left by earlier tests are closed by the garbage collector, which would free a low
    # descriptor under our feet (the next socket would take it): collect now, then hold it off.
    gc.collect()
    gc.disable()
    try:
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            fillers.append(fd)
            if fd >= FD_SETSIZE + 4:  # client and server ends of the next connections land above
                break
        with caplog.at_level(logging.WARNING, logger="evserver.evented"):
            for _ in range(3):
                with socket.create_connection(server.address, timeout=10) as refused:
                    assert refused.recv(4096) == b""  # closed at once, never watched
        messages = [r.getMessage() for r in caplog.records if "select()" in r.getMessage()]
        assert len(messages) == 1, messages  # rate-limited: one line, not one per connection
        assert server.server.stats.connections_refused >= 3
        assert _get(low).startswith(b"HTTP/1.1 200 ")  # the old client is still served
    finally:
        gc.enable()
        for fd in fillers:
            os.close(fd)
        low.close()
