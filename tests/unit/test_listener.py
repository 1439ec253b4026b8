"""The listener: options, dual stack, a port in use, accept-time options."""

from __future__ import annotations

import errno
import socket

import pytest

from evserver.net.listener import (
    ACCEPT_BATCH,
    RESOURCE_ERRNOS,
    configure_client_socket,
    open_listener,
    peer_name,
)


def test_explicit_host_binds_listens_with_reuseaddr() -> None:
    with open_listener("127.0.0.1", 0, 16) as sock:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        with socket.create_connection((host, port), timeout=5):
            client, _ = sock.accept()
            client.close()


def test_no_host_is_dual_stack_or_ipv4() -> None:
    with open_listener(None, 0, 16) as sock:
        port = sock.getsockname()[1]
        if sock.family == socket.AF_INET6:
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        else:
            assert sock.getsockname()[0] == "0.0.0.0"
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # IPv4 client
            client, address = sock.accept()
            assert peer_name(address) == "127.0.0.1"
            client.close()


def test_port_in_use_raises_oserror() -> None:
    with open_listener("127.0.0.1", 0, 16) as first:
        port = first.getsockname()[1]
        with pytest.raises(OSError) as info:
            open_listener("127.0.0.1", port, 16)
        assert info.value.errno == errno.EADDRINUSE


def test_client_socket_gets_nodelay() -> None:
    with open_listener("127.0.0.1", 0, 16) as sock, \
            socket.create_connection(sock.getsockname(), timeout=5):
        client, _ = sock.accept()
        with client:
            configure_client_socket(client)
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_the_teaching_switch_leaves_nagle_on() -> None:
    with open_listener("127.0.0.1", 0, 16) as sock, \
            socket.create_connection(sock.getsockname(), timeout=5):
        client, _ = sock.accept()
        with client:
            configure_client_socket(client, nodelay=False)
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0


def test_constants() -> None:
    assert 1 <= ACCEPT_BATCH <= 1024
    assert {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM} == RESOURCE_ERRNOS
    assert peer_name(("::1", 80, 0, 0)) == "::1"
    assert peer_name(("::ffff:10.0.0.1", 80, 0, 0)) == "10.0.0.1"


def test_connections_from_one_host_share_its_name() -> None:
    # Memory: each connection keeps its peer's name; equal names are one string.
    first = peer_name(("".join(["10.1.2.", "3"]), 80))
    second = peer_name(("::ffff:" + "".join(["10.1.2.", "3"]), 81, 0, 0))
    assert first == second == "10.1.2.3" and first is second
