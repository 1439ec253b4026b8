"""The threaded model's own promises: many clients at once, a stalled client costs only its own
thread, the bound on threads, idle connections closed promptly on shutdown, whole log lines.

What every model shares is tested in tests/servers/test_e2e.py and (for the blocking models) in
tests/servers/test_blocking_models.py.
"""

from __future__ import annotations

import re
import select
import socket
import threading

from evserver.servers.threaded import THREAD_STACK_SIZE
from tests.support.clients import WAIT, at_eof, open_client, read_response
from tests.support.trees import make_big_file

REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


def test_many_concurrent_keep_alive_clients_each_hold_a_thread(start_server):
    server = start_server(model="threaded")
    clients = [open_client(server) for _ in range(100)]
    streams = [sock.makefile("rb") for sock in clients]
    try:
        for sock in clients:
            sock.sendall(REQUEST)
        for stream in streams:
            assert read_response(stream)[2] == b"hello, world\n"
        threads = server.server.stats_extra()["threads"]
        assert threads["connections"] == 100  # all open at once: one thread each
        assert threads["stack_bytes"] == THREAD_STACK_SIZE
        assert server.server.stats.connections_open == 100
    finally:
        for stream, sock in zip(streams, clients, strict=True):
            stream.close()
            sock.close()


def test_a_client_that_never_reads_does_not_block_others(start_server, docroot):
    make_big_file(docroot / "big.bin")
    server = start_server(model="threaded")
    with open_client(server) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")  # and never reads
        assert stalled.recv(12) == b"HTTP/1.1 200"  # its thread is now stuck sending
        for _ in range(5):
            with open_client(server) as other, other.makefile("rb") as stream:
                other.sendall(REQUEST)
                assert read_response(stream)[2] == b"hello, world\n"


def test_accepting_waits_at_the_connection_bound(start_server):
    server = start_server(model="threaded", max_connections=2)
    first, second = open_client(server), open_client(server)
    for sock in (first, second):
        sock.sendall(REQUEST)
        assert sock.recv(12) == b"HTTP/1.1 200"  # both accepted and served: the bound is hit
    with open_client(server) as third:  # the kernel completes the handshake; we do not accept
        third.sendall(REQUEST)
        assert select.select([third], [], [], 0.3)[0] == []  # not served while at the bound
        assert server.server.stats.connections_total == 2
        first.close()  # a slot frees: the waiting client is accepted and served
        assert third.recv(12) == b"HTTP/1.1 200"
    second.close()


def test_shutdown_closes_idle_connections_at_once_and_finishes_transfers(start_server,
                                                                         docroot):
    make_big_file(docroot / "big.bin")
    server = start_server(model="threaded")  # idle timeout: 60 s; a prompt close is shutdown's
    with open_client(server) as idle, open_client(server) as busy:
        idle.sendall(REQUEST)
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")  # served, now idle in keep-alive
        busy.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        stream = busy.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 200")
        server.server.shutdown()
        assert at_eof(idle)  # closed while the transfer goes on
        while stream.readline() != b"\r\n":
            pass
        assert len(stream.read(20 * 1024 * 1024)) == 20 * 1024 * 1024
        stream.close()
    server.thread.join(WAIT)
    assert not server.thread.is_alive()
    assert server.server.stats_extra()["threads"]["connections"] == 0


def test_access_log_lines_from_many_threads_stay_whole(start_server, tmp_path):
    log_path = tmp_path / "access.log"
    server = start_server(model="threaded", quiet=False, access_log=str(log_path))

    def client() -> None:
        with open_client(server) as sock, sock.makefile("rb") as stream:
            for _ in range(20):
                sock.sendall(REQUEST)
                read_response(stream)

    workers = [threading.Thread(target=client) for _ in range(10)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    server.stop()
    lines = log_path.read_text().splitlines()
    assert len(lines) == 200
    pattern = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET /small\.txt HTTP/1\.1" 200 13$')
    assert all(pattern.match(line) for line in lines), lines[:3]
