"""Faults a long-running server meets: a pause by the operating system, a wall clock that jumps,
an address-space limit, a worker killed by the OOM killer.

What this module knows: servers in child processes (signals, ``/proc``, ``resource.prlimit``)
and in this process (for the clock), and the reactor's public interface. What it must not know:
the drivers' code. The pause lasts :data:`PAUSE_SECONDS` because that is the fault itself, not
a wait for readiness; everything else waits on sockets or conditions.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from evserver.event.reactor import Reactor
from tests.support.load import LoadResult, run_clients
from tests.support.processes import ServerProcess
from tests.support.servers import RunningServer
from tests.support.trees import BIG_FILE_SIZE, make_big_file
from tests.support.waiting import SETTLE_SECONDS, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="faults are made with Linux's signals, rlimits and /proc")

StartProcess = Callable[..., ServerProcess]

SMALL = b"hello, world\n"
"""``/small.txt`` of the test document root."""

PAUSE_SECONDS = 5.0
"""How long SIGSTOP holds the server: longer than the idle timeout below, so a timer falls due
during the pause, and well under the clients' request timeout (tests/support/load.py)."""

IDLE_TIMEOUT = 2.0
"""The paused server's idle timeout: short, so the test sees it fire once the pause is over."""

RECOVERY_SECONDS = 3.0
"""After SIGCONT the server answers again and fires its overdue timers within this."""

CLIENTS = 3
"""Keep-alive clients asking without pause: a load, and few enough for a two-core machine."""

CLOCK_JUMP_SECONDS = 86_400.0
"""How far the patched wall clock jumps: a day, far beyond any timeout, so a timer that read it
would fire at once (forward) or never within the test (backward)."""

TIMER_DELAY = 0.3
"""A reactor timer's delay in the clock test: long enough to tell "early" from "on time"."""

LATE_MARGIN = 2.0
"""Seconds a timer may fire after its deadline on a loaded two-core machine, and still be on
time for a test whose clock jumps by a day."""

ADDRESS_SPACE_HEADROOM = 2 * 1024 * 1024
"""Bytes of address space the limited server may map beyond what it has: enough to receive and
answer a small request, far too little to list a folder of :data:`LISTED_FILES` long names."""

LISTED_FILES = 3000
"""Entries of the folder whose listing needs more memory than the headroom (names of
:data:`LISTED_NAME_LENGTH` characters: several megabytes of strings and HTML)."""

LISTED_NAME_LENGTH = 200


# -- SIGSTOP / SIGCONT -----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["evented", "threaded"])
def test_a_paused_server_delays_clients_fails_none_and_fires_its_timers_after(
        start_process: StartProcess, docroot: Path, model: str) -> None:
    """SIGSTOP under load, then SIGCONT: clients with timeouts wait, none fails; a download in
    flight completes intact; an idle connection whose timeout fell due during the pause is
    closed once the server runs again, not later (the timer fires after the pause)."""
    digest = make_big_file(docroot / "big.bin")
    server = start_process("--model", model, "-q", "--idle-timeout", str(IDLE_TIMEOUT))
    result, stop = LoadResult(), threading.Event()
    clients = run_clients(server.address, "/small.txt", SMALL, CLIENTS, stop, result)
    idle = socket.create_connection(server.address, timeout=SETTLE_SECONDS)
    idle.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
    download = socket.create_connection(server.address, timeout=SETTLE_SECONDS)
    download.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    stream = download.makefile("rb")
    try:
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # idle from now on
        assert stream.readline().startswith(b"HTTP/1.1 200")
        while stream.readline() != b"\r\n":
            pass
        first = stream.read(1024 * 1024)  # the rest waits in the server: in flight
        wait_until(lambda: result.requests >= 100, "the load under way")
        server.process.send_signal(signal.SIGSTOP)
        time.sleep(PAUSE_SECONDS)  # the fault itself
        before = result.requests
        server.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        wait_until(lambda: result.requests > before, "an answer after the pause",
                   RECOVERY_SECONDS)
        recovered = time.monotonic() - resumed
        idle.settimeout(RECOVERY_SECONDS)
        assert idle.recv(4096) == b""  # the overdue idle timeout fired after the pause
        closed = time.monotonic() - resumed
        rest = stream.read(BIG_FILE_SIZE - len(first))
        assert hashlib.sha256(first + rest).hexdigest() == digest
        wait_until(lambda: result.requests > before + 100, "the load goes on")
    finally:
        stop.set()
        for client in clients:
            client.join(SETTLE_SECONDS)
        stream.close()
        download.close()
        idle.close()
    print(f"{model}: answered {recovered:.3f} s after SIGCONT, idle connection closed after "
          f"{closed:.3f} s; {result.requests} requests, {result.retried} retried")
    assert result.failures == []
    assert server.stop() == 0


# -- the wall clock jumps ------------------------------------------------------------------


@pytest.mark.parametrize("jump", [CLOCK_JUMP_SECONDS, -CLOCK_JUMP_SECONDS],
                         ids=["forward", "backward"])
def test_a_reactor_timer_ignores_a_wall_clock_jump(monkeypatch: pytest.MonkeyPatch,
                                                   jump: float) -> None:
    """The reactor keeps time on ``time.monotonic``: a wall clock set a day ahead or behind
    neither fires a timer early nor delays it."""
    wall = time.time
    reactor = Reactor()
    fired: list[float] = []

    def on_time() -> None:
        fired.append(time.monotonic())
        reactor.stop()

    try:
        armed = time.monotonic()
        reactor.call_later(TIMER_DELAY, on_time)
        monkeypatch.setattr(time, "time", lambda: wall() + jump)
        guard = reactor.call_later(TIMER_DELAY + LATE_MARGIN, reactor.stop)  # never hang
        reactor.run()
        guard.cancel()
    finally:
        reactor.close()
    assert fired, "the timer did not fire on time"
    assert TIMER_DELAY <= fired[0] - armed < TIMER_DELAY + LATE_MARGIN


@pytest.mark.parametrize("model", ["evented", "threaded", "iterative"])
@pytest.mark.parametrize("jump", [CLOCK_JUMP_SECONDS, -CLOCK_JUMP_SECONDS],
                         ids=["forward", "backward"])
def test_an_idle_timeout_ignores_a_wall_clock_jump_and_date_follows_it(
        start_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch,
        model: str, jump: float) -> None:
    """Timeouts on the monotonic clock (the reactor's timers, the blocking drivers' kernel
    timeouts and deadlines), ``Date`` on the wall clock (RFC 9110 6.6.1)."""
    server = start_server(model=model, idle_timeout=IDLE_TIMEOUT)
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + jump)
    with socket.create_connection(server.address, timeout=IDLE_TIMEOUT + LATE_MARGIN) as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        head = sock.recv(4096)
        idle_from = time.monotonic()
        assert head.startswith(b"HTTP/1.1 200")
        date = next(line for line in head.split(b"\r\n") if line.startswith(b"Date: "))
        stamped = parsedate_to_datetime(date[6:].decode()).timestamp()
        assert abs(stamped - (wall() + jump)) < LATE_MARGIN  # the jumped wall clock
        assert sock.recv(4096) == b""  # closed by the idle timeout...
        idle_for = time.monotonic() - idle_from
    assert IDLE_TIMEOUT - 0.1 <= idle_for < IDLE_TIMEOUT + LATE_MARGIN  # ...on time


# -- an address-space limit --------------------------------------------------------------------


def _address_space_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/PID/status")


def _get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*server.address, timeout=SETTLE_SECONDS)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("model", ["evented", "iterative"])
def test_a_request_that_runs_out_of_address_space_gets_503_and_the_server_lives(
        start_process: StartProcess, docroot: Path, model: str) -> None:
    """RLIMIT_AS set on the running server (``prlimit``: exactly its mapped size plus a small
    headroom, which a limit set before start-up could not be): listing a huge folder cannot be
    done, that request is answered 503, and the server serves what it can, and the listing once
    the limit is lifted. The blocking driver meets the shortage as the evented one does. (Not the
    threaded model: malloc's per-thread arena, mapped by the first request's thread, leaves the
    listing room within address space already mapped, so the limit does not bite.)"""
    crowded = docroot / "crowded"
    crowded.mkdir()
    for number in range(LISTED_FILES):
        (crowded / f"{number:05d}".ljust(LISTED_NAME_LENGTH, "x")).touch()
    server = start_process("-q", "--model", model)
    assert _get(server, "/small.txt") == (200, SMALL)
    _, unlimited = resource.prlimit(server.pid, resource.RLIMIT_AS)
    limit = _address_space_bytes(server.pid) + ADDRESS_SPACE_HEADROOM
    resource.prlimit(server.pid, resource.RLIMIT_AS, (limit, unlimited))
    status, _ = _get(server, "/crowded/")
    if status == 200:
        pytest.skip("the address-space limit did not bite (the listing fit in the headroom)")
    assert status == 503
    assert _get(server, "/small.txt") == (200, SMALL)
    resource.prlimit(server.pid, resource.RLIMIT_AS, (unlimited, unlimited))
    assert _get(server, "/crowded/")[0] == 200
    assert server.stop() == 0
    assert not any("Traceback" in line for line in server.stderr_lines)


# -- a worker killed by the OOM killer ----------------------------------------------------------


def _server_side_inode(client: socket.socket) -> int:
    """The inode of the server's end of ``client``'s TCP connection (``/proc/net/tcp``)."""
    client_port = client.getsockname()[1]
    server_port = client.getpeername()[1]
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local_port = int(fields[1].split(":")[1], 16)
            remote_port = int(fields[2].split(":")[1], 16)
            if (local_port, remote_port) == (server_port, client_port):
                return int(fields[9])
    raise AssertionError(f"no server end for client port {client_port}")


def _owner(inode: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the socket ``inode`` open."""
    target = f"socket:[{inode}]"
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _worker_pids(server: ServerProcess) -> list[int]:
    with open(f"/proc/{server.pid}/task/{server.pid}/children") as children:
        return [int(pid) for pid in children.read().split()]


def test_a_killed_worker_goes_unnoticed_by_the_clients_of_the_others(
        start_process: StartProcess, docroot: Path) -> None:
    """Two workers; keep-alive connections are traced to their worker through ``/proc``. One
    worker is SIGKILLed (as by the OOM killer) while a download from the other is in flight:
    the download completes, and every connection of the survivor goes on answering on the same
    socket. (Replacement and reaping: tests/servers/test_workers.py.)"""
    digest = make_big_file(docroot / "big.bin")
    server = start_process("--workers", "2", "-q")
    workers = _worker_pids(server)
    assert len(workers) == 2
    connections: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in workers}
    opened: list[http.client.HTTPConnection] = []
    try:
        while not all(connections.values()) and len(opened) < 40:
            connection = http.client.HTTPConnection(*server.address, timeout=SETTLE_SECONDS)
            opened.append(connection)
            connection.request("GET", "/small.txt")
            assert connection.getresponse().read() == SMALL
            assert connection.sock is not None
            owner = _owner(_server_side_inode(connection.sock), workers)
            assert owner is not None
            connections[owner].append(connection)
        victim, survivor = workers
        assert connections[victim] and connections[survivor], "SO_REUSEPORT used one worker"
        sockets = [connection.sock for connection in connections[survivor]]
        download, *others = connections[survivor]
        download.request("GET", "/big.bin")
        response = download.getresponse()
        first = response.read(1024 * 1024)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: not os.path.exists(f"/proc/{victim}"), "the killed worker reaped")
        rest = response.read()
        assert hashlib.sha256(first + rest).hexdigest() == digest
        for connection in [download, *others]:
            for _ in range(10):
                connection.request("GET", "/small.txt")
                assert connection.getresponse().read() == SMALL
        assert [connection.sock for connection in connections[survivor]] == sockets
        wait_until(lambda: len(_worker_pids(server)) == 2, "a replacement worker")
    finally:
        for connection in opened:
            connection.close()
    assert server.stop() == 0
