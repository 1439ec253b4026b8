"""The iterative model's documented behaviour: one connection at a time (head-of-line blocking).

A second client waits until the first closes or times out; nothing here measures how long, only
the order in which things happen. What every model shares is in tests/servers/test_e2e.py and
tests/servers/test_blocking_models.py.
"""

from __future__ import annotations

from tests.support.clients import WAIT, at_eof, close_with_reset, open_client, read_response

REQUEST = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


def test_a_second_client_waits_until_the_first_closes(start_server):
    server = start_server(model="iterative")
    first = open_client(server)
    first.sendall(REQUEST)
    assert first.recv(12) == b"HTTP/1.1 200"  # the server is now busy with the first client
    with open_client(server) as second, second.makefile("rb") as stream:
        second.sendall(REQUEST)  # connected (the kernel's listen queue), but not accepted
        assert server.server.stats.connections_total == 1
        first.close()
        assert read_response(stream)[2] == b"hello, world\n"
    assert server.server.stats.connections_total == 2


def test_an_idle_first_client_holds_the_server_until_its_idle_timeout(start_server):
    server = start_server(model="iterative", idle_timeout=0.3)
    with open_client(server) as first, open_client(server) as second:
        first.sendall(REQUEST)
        assert first.recv(4096).startswith(b"HTTP/1.1 200")  # then the first goes idle
        second.sendall(REQUEST)
        with second.makefile("rb") as stream:
            assert read_response(stream)[0] == 200
        # The second client was answered only once the first had been dropped for idling.
        first.setblocking(False)
        assert first.recv(1) == b""
    assert server.server.stats.timeouts["idle"] == 1


def test_connections_are_served_one_after_another(start_server):
    server = start_server(model="iterative")
    clients = [open_client(server) for _ in range(10)]  # all queue up at once
    for sock in clients:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    for sock in clients:
        with sock, sock.makefile("rb") as stream:
            assert read_response(stream)[2] == b"hello, world\n"
            assert stream.read() == b""
    assert server.server.stats.connections_total == 10


def test_shutdown_closes_the_idle_connection_being_served(start_server):
    server = start_server(model="iterative")  # idle timeout 60 s: a prompt close is shutdown's
    with open_client(server) as idle:
        idle.sendall(REQUEST)
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        server.server.shutdown()
        assert at_eof(idle)
    server.thread.join(WAIT)
    assert not server.thread.is_alive()


def test_a_client_that_resets_does_not_stop_the_server(start_server):
    server = start_server(model="iterative")
    sock = open_client(server)
    sock.sendall(b"GET /medium.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    sock.recv(10)
    close_with_reset(sock)
    with open_client(server) as other, other.makefile("rb") as stream:
        other.sendall(REQUEST)
        assert read_response(stream)[2] == b"hello, world\n"
