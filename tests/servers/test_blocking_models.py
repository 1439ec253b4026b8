"""The blocking driver and the shared accept loop, through both blocking models.

These run against real servers (``start_server`` from tests/conftest.py, port 0, always
stopped). The behaviour every model shares is in tests/servers/test_e2e.py; here is what the
blocking driver (``evserver.drivers.blocking.drive``) and the accept loop the threaded and
iterative models share add: timeouts, lingering, shutdown, batches of pipelined requests. The
send helpers under them (``evserver.net.blocking``) are unit-tested in tests/unit/test_blocking.py.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import select
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from evserver.drivers import blocking as blocking_driver
from evserver.protocol import MAX_RESPONSES_PER_BATCH
from evserver.servers import threaded
from tests.support.clients import WAIT, linger_zero, open_client, read_response
from tests.support.procfs import open_fds
from tests.support.trees import BIG_FILE_SIZE, make_big_file

BLOCKING_MODELS = ["threaded", "iterative"]


@pytest.fixture(params=BLOCKING_MODELS)
def blocking_model(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


def test_keep_alive_serves_several_requests_on_one_connection(start_server, blocking_model):
    server = start_server(model=blocking_model)
    with open_client(server) as sock, sock.makefile("rb") as stream:
        for name, expected in [("small.txt", b"hello, world\n"), ("kib.bin", None),
                               ("small.txt", b"hello, world\n")]:
            sock.sendall(b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % name.encode())
            status, fields, body = read_response(stream)
            assert status == 200 and "connection" not in fields
            assert body == (expected if expected is not None else bytes(range(256)) * 4)
    assert server.server.stats.connections_total == 1


def test_more_pipelined_requests_than_one_batch_come_back_in_order(start_server,
                                                                   blocking_model):
    server = start_server(model=blocking_model)
    count = MAX_RESPONSES_PER_BATCH * 2 + 5  # the protocol pauses twice; drive must resume it
    names = [b"small.txt" if n % 2 else b"kib.bin" for n in range(count)]
    data = b"".join(b"GET /%s?n=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (name, n)
                    for n, name in enumerate(names))
    with open_client(server) as sock, sock.makefile("rb") as stream:
        sock.sendall(data + b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        for name in names:
            status, _, body = read_response(stream)
            assert status == 200 and len(body) == (13 if name == b"small.txt" else 1024)
        status, fields, body = read_response(stream)
        assert fields["connection"] == "close" and body == b"hello, world\n"
        assert stream.read() == b""  # and then the server closed


def test_http10_keep_alive_is_honoured(start_server, blocking_model):
    server = start_server(model=blocking_model)
    with open_client(server) as sock, sock.makefile("rb") as stream:
        for _ in range(2):
            sock.sendall(b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, fields, body = read_response(stream)
            assert status == 200 and fields["connection"] == "keep-alive"
        sock.sendall(b"GET /small.txt HTTP/1.0\r\n\r\n")
        status, fields, body = read_response(stream)
        assert fields["connection"] == "close" and body == b"hello, world\n"
        assert stream.read() == b""


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "no-sendfile"])
def test_a_large_file_arrives_intact_over_keep_alive(start_server, blocking_model, docroot,
                                                     use_sendfile):
    digest = make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model, use_sendfile=use_sendfile)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    for _ in range(2):
        conn.request("GET", "/big.bin")
        response = conn.getresponse()
        assert response.status == 200
        assert hashlib.sha256(response.read()).hexdigest() == digest
    conn.close()
    stats = server.server.stats
    assert stats.sendfile_bytes == (2 * BIG_FILE_SIZE if use_sendfile else 0)


def test_slowloris_is_cut_off_by_the_header_timeout(start_server, blocking_model):
    """One byte at a time, each well within the timeout: the deadline runs from the first byte,
    so the whole head must arrive in time, and a 408 comes back before it is complete."""
    server = start_server(model=blocking_model, header_timeout=0.5)
    head = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"z" * 10_000
    with open_client(server) as sock:
        sent = 0
        readable: list[socket.socket] = []
        while not readable and sent < len(head):
            sock.sendall(head[sent:sent + 1])
            sent += 1
            readable, _, _ = select.select([sock], [], [], 0.05)  # the pace of the attack
        assert sent < len(head), "the server waited for the whole dribbled head"
        with sock.makefile("rb") as stream:
            status, fields, _ = read_response(stream)
            assert status == 408 and fields["connection"] == "close"
            assert stream.read() == b""
    assert server.server.stats.timeouts["header"] == 1


def test_an_idle_keep_alive_connection_is_closed_silently(start_server, blocking_model):
    server = start_server(model=blocking_model, idle_timeout=0.3)
    with open_client(server) as sock, sock.makefile("rb") as stream:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_response(stream)[0] == 200
        assert stream.read() == b""  # no 408 on an idle connection (RFC 9112 9.5), just a close
    assert server.server.stats.timeouts["idle"] == 1


def test_after_an_error_the_client_reads_the_response_not_a_reset(start_server,
                                                                  blocking_model):
    """The server closes with unread input waiting: without lingering the kernel would send a
    reset and the client could lose the 400 it has not read yet."""
    server = start_server(model=blocking_model)
    with open_client(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
        sock.sendall(b"junk that follows the bad request " * 2000)
        with sock.makefile("rb") as stream:
            status, fields, _ = read_response(stream)
            assert status == 400 and fields["connection"] == "close"
            assert stream.read() == b""


def test_graceful_shutdown_lets_a_transfer_in_flight_finish(start_server, blocking_model,
                                                            docroot):
    digest = make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model)
    with open_client(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 200")  # the response has begun
        server.server.shutdown()  # returns at once, from this thread
        while stream.readline() != b"\r\n":
            pass
        assert hashlib.sha256(stream.read(BIG_FILE_SIZE)).hexdigest() == digest
        assert stream.read() == b""  # then the keep-alive connection is closed, not reused
        stream.close()
    server.thread.join(WAIT)
    assert not server.thread.is_alive()


def test_the_drain_timeout_ends_a_transfer_that_does_not_progress(start_server,
                                                                  blocking_model, docroot):
    make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model, drain_timeout=0.2)
    with open_client(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")  # begun; then we stop reading
        server.server.shutdown()
        server.thread.join(WAIT)
        assert not server.thread.is_alive()


def test_a_second_shutdown_stops_at_once(start_server, blocking_model, docroot):
    make_big_file(docroot / "big.bin")
    server = start_server(model=blocking_model, drain_timeout=3600)
    with open_client(server) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        server.server.shutdown()
        server.server.shutdown()
        server.thread.join(WAIT)
        assert not server.thread.is_alive()


def test_descriptors_come_back_after_resets_and_errors(start_server, blocking_model):
    server = start_server(model=blocking_model)
    before = open_fds()
    for n in range(30):
        sock = open_client(server)
        if n % 3 == 0:
            sock.sendall(b"GET /medium.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.recv(10)
            linger_zero(sock)
        elif n % 3 == 1:
            sock.sendall(b"NOT HTTP\r\n\r\n")
            sock.recv(10)
        sock.close()  # a reset, a closed error connection, or a connection that sent nothing
    with open_client(server) as sock, sock.makefile("rb") as stream:  # the server is healthy
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert read_response(stream)[0] == 200
        assert stream.read() == b""
    server.stop()  # (the fixture's own stop() then finds it stopped)
    assert open_fds() <= before - 3  # listener and wake-up pair closed too


WAITING_CONNECTIONS = 8


def _threads_waiting_in(function_name: str, count: int) -> bool:
    frames = sys._current_frames().values()
    return sum(frame.f_code.co_name == function_name for frame in frames) >= count


def test_a_connection_waiting_for_its_next_request_holds_only_its_own_buffer(start_server):
    # recv(n) allocates its n-byte result before it blocks, so a thread waiting for a request
    # would hold a block from the moment its wait began; hundreds of them, of all ages, scatter
    # the allocator's heap (RSS grows in a long soak while live objects stay level). A waiting
    # connection must hold only the buffer it was given at its start.
    server = start_server(model="threaded")
    tracemalloc.start()
    clients = []
    try:
        for _ in range(WAITING_CONNECTIONS):
            sock = open_client(server)
            clients.append(sock)
            sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock.makefile("rb"))[0] == 200
        deadline = time.monotonic() + WAIT
        while not _threads_waiting_in("_converse", WAITING_CONNECTIONS):
            assert time.monotonic() < deadline, "the connections' threads never went back to wait"
            time.sleep(0.01)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
        for sock in clients:
            sock.close()
    held_by_the_wait = sum(
        trace.size for trace in snapshot.traces
        if trace.traceback[0].filename == blocking_driver.__file__
        and trace.size > 1024)  # the last request's bytes are still referenced, and small
    buffers = WAITING_CONNECTIONS * blocking_driver.BLOCKING_RECV_SIZE
    assert held_by_the_wait <= buffers + 4096


REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout: the probe below imports the test helpers from it."""

ARENA_PROBE = """
import ctypes, sys
from pathlib import Path
from tests.support.clients import open_client, read_response
from tests.support.servers import start_in_thread
from tests.support.trees import make_docroot

running = start_in_thread(make_docroot(Path(sys.argv[1])), model="threaded")
clients = []
for _ in range(8):  # eight connection threads, each allocating while it serves
    sock = open_client(running)
    sock.sendall(b"GET /small.txt HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
    assert read_response(sock.makefile("rb"))[0] == 200
    clients.append(sock)
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
stream = ctypes.c_void_p(libc.fopen(sys.argv[2].encode(), b"w"))
libc.malloc_info(0, stream)  # glibc's report: one <heap> element per arena
libc.fclose(stream)
for sock in clients:
    sock.close()
running.stop()
"""


def glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not glibc(), reason="malloc arenas are glibc's")
@pytest.mark.parametrize("user_setting", [None, "4"])
def test_connection_threads_share_one_malloc_arena_unless_the_user_says(tmp_path, user_setting):
    # glibc's default gives each new thread an arena of its own; the threads then hold the sum
    # of all the arenas' high-water marks, and RSS creeps up in a long run.
    env = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    if user_setting is not None:
        env["MALLOC_ARENA_MAX"] = user_setting
    report = tmp_path / "malloc-info.xml"
    subprocess.run([sys.executable, "-c", ARENA_PROBE, str(tmp_path / "root"), str(report)],
                   cwd=REPO_ROOT, env=env, check=True, timeout=WAIT * 4)
    arenas = report.read_text().count("<heap nr=")
    if user_setting is None:
        assert arenas == threaded.MALLOC_ARENAS
    else:
        assert 1 < arenas <= int(user_setting)  # their choice, not ours
