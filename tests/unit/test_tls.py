"""TLS below the drivers: the context, the socket's manners, the transport over OpenSSL's rules,
and the evented driver's handshake phase.

Real TCP on loopback and a certificate made at test time (``certificate``, tests/conftest.py).
No loop runs: each test moves both ends itself (``select`` on the descriptors, a fake clock for
the driver), so every state in between can be read.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from selectors import EVENT_READ, EVENT_WRITE

import pytest

from evserver.bodies import FileRegion, Response
from evserver.config import ServerConfig
from evserver.drivers.evented import LIFE_MOVES, ConnectionContext, TLSConnection
from evserver.event.reactor import Reactor
from evserver.http.events import Request
from evserver.net.blocking import TIMEVAL
from evserver.net.tls import (
    ALPN_PROTOCOLS,
    HANDSHAKE_DONE,
    HANDSHAKE_FAILED,
    HANDSHAKE_TIMED_OUT,
    IGNORE_EOF_OPTION,
    KTLS_OPTION,
    PEER_GONE,
    TLS_RECORD_SIZE,
    WANTS_READ,
    WANTS_WRITE,
    TLSSetupError,
    TLSSocket,
    TLSTransport,
    body_path,
    send_tls,
    server_context,
    wrap_server_socket,
)
from evserver.protocol import ServerProtocol
from evserver.stats import Stats
from tests.support.clients import linger_zero
from tests.support.tls import Certificate, client_context, client_hello

WAIT = 10.0

SMALL_BUFFER = 4096
"""SO_SNDBUF of the server's end and SO_RCVBUF of the client's: writes back up."""


class Pair:
    """A server-side TLSSocket (non-blocking, in a TLSTransport) and its client (SSLSocket)."""

    def __init__(self, certificate: Certificate, *, small_buffers: bool = False,
                 ragged_eofs_allowed: bool = True, stats: Stats | None = None) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            raw_client = socket.socket()
            if small_buffers:
                raw_client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
            raw_client.connect(listener.getsockname())
            server_end, _ = listener.accept()
        if small_buffers:
            server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        server_end.setblocking(False)
        self.context = server_context(str(certificate.cert), str(certificate.key))
        self.sock = wrap_server_socket(self.context, server_end)
        self.transport = TLSTransport(self.sock, stats=stats)
        raw_client.setblocking(False)
        self.client = client_context(certificate).wrap_socket(
            raw_client, server_hostname="localhost", do_handshake_on_connect=False,
            suppress_ragged_eofs=ragged_eofs_allowed)

    def handshake(self) -> None:
        """Both ends, step by step, until both are done."""
        client_done = server_done = False
        for _ in range(100):
            if not client_done:
                try:
                    self.client.do_handshake()
                    client_done = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            if not server_done:
                outcome = self.transport.handshake()
                assert outcome in (HANDSHAKE_DONE, WANTS_READ, WANTS_WRITE), outcome
                server_done = outcome == HANDSHAKE_DONE
            if client_done and server_done:
                self.client.settimeout(WAIT)
                return
            select.select([self.sock, self.client], [], [], 0.5)
        raise AssertionError("the handshake did not finish")

    def pump(self, total: int) -> bytes:
        """Flush on writable, read on readable, until at least ``total`` bytes arrived (the
        client reads without blocking: a readable socket may hold half a record)."""
        received = bytearray()
        self.client.setblocking(False)
        try:
            while len(received) < total:
                if not self.client.pending():
                    writers = [self.sock] if self.transport.pending_bytes else []
                    readable, writable, _ = select.select([self.client], writers, [], WAIT)
                    assert readable or writable, "no progress"
                    if writable:
                        self.transport.flush()
                try:
                    chunk = self.client.recv(1 << 20)
                except ssl.SSLWantReadError:
                    continue
                assert chunk, "the server closed"
                received += chunk
        finally:
            self.client.settimeout(WAIT)
        return bytes(received)

    def server_reads(self, size: int = 65536) -> bytes | None:
        assert select.select([self.sock], [], [], WAIT)[0], "nothing arrived"
        return self.transport.recv(size)

    def close(self) -> None:
        self.transport.abort()
        self.client.close()


@pytest.fixture
def pairs(certificate: Certificate) -> Iterator[list[Pair]]:
    made: list[Pair] = []
    yield made
    for pair in made:
        pair.close()


@pytest.fixture
def pair(certificate: Certificate, pairs: list[Pair]) -> Pair:
    made = Pair(certificate)
    pairs.append(made)
    made.handshake()
    return made


# -- the context ---------------------------------------------------------------------------------

def test_the_handshake_asks_for_what_the_selectors_watch() -> None:
    assert (WANTS_READ, WANTS_WRITE) == (EVENT_READ, EVENT_WRITE)
    assert HANDSHAKE_DONE == 0 and len({HANDSHAKE_FAILED, PEER_GONE, HANDSHAKE_TIMED_OUT}) == 3


def test_the_context_speaks_tls_12_and_13_and_http_11_only(certificate: Certificate) -> None:
    context = server_context(str(certificate.cert), str(certificate.key))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.options & IGNORE_EOF_OPTION == IGNORE_EOF_OPTION  # a FIN ends input
    assert context.verify_mode == ssl.CERT_NONE  # no client certificates
    assert context.sslsocket_class is TLSSocket
    assert ALPN_PROTOCOLS == ("http/1.1",)
    assert body_path(context).startswith("TLS bodies: ")
    if not KTLS_OPTION:
        assert body_path(context) == "TLS bodies: 16 KiB reads"


def test_a_password_protected_key_opens_with_its_password_only(tmp_path: Path,
                                                               certificate: Certificate) -> None:
    from tests.support.tls import make_certificate

    locked = make_certificate(tmp_path, "locked", password="correct horse")
    assert locked.password_file is not None
    server_context(str(locked.cert), str(locked.key), str(locked.password_file))
    with pytest.raises(TLSSetupError, match=r"--tls-key: .* is encrypted"):
        server_context(str(locked.cert), str(locked.key))  # and no prompt on the terminal
    locked.password_file.write_text("wrong\n")
    with pytest.raises(TLSSetupError, match="--tls-password-file: the password does not"):
        server_context(str(locked.cert), str(locked.key), str(locked.password_file))


def test_kernel_tls_is_used_only_where_the_kernel_says_it_encrypts(
        certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> None:
    """kTLS cannot run here (Python 3.11 has no ssl.OP_ENABLE_KTLS); its decisions can."""
    from evserver.net import tls

    context = server_context(str(certificate.cert), str(certificate.key))

    class SSLObject:
        def __init__(self, answer: bool) -> None:
            self.answer = answer

        def uses_ktls_for_send(self) -> bool:
            return self.answer

    class Socket:
        def __init__(self, answer: bool) -> None:
            self._sslobj = SSLObject(answer)

    monkeypatch.setattr(tls, "KTLS_OPTION", 0)
    assert not tls._kernel_encrypts(Socket(True))  # type: ignore[arg-type]
    assert body_path(context) == "TLS bodies: 16 KiB reads"
    monkeypatch.setattr(tls, "KTLS_OPTION", 1 << 3)  # OpenSSL's SSL_OP_ENABLE_KTLS
    assert tls._kernel_encrypts(Socket(True))  # type: ignore[arg-type]
    assert not tls._kernel_encrypts(Socket(False))  # type: ignore[arg-type]
    context.options |= 1 << 3
    monkeypatch.setattr(tls, "_kernel_tls_available", lambda: False)
    assert body_path(context).endswith("(kTLS: the kernel's tls module is not loaded)")
    monkeypatch.setattr(tls, "_kernel_tls_available", lambda: True)
    assert body_path(context).startswith("TLS bodies: kTLS sendfile")
    with socket.socket() as plain:  # without Python's answer, the kernel's: not encrypting
        assert not tls._kernel_encrypts(plain)  # type: ignore[arg-type]


def test_a_context_not_from_server_context_is_refused() -> None:
    with socket.socket() as sock, pytest.raises(TypeError):
        wrap_server_socket(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), sock)


# -- the transport -------------------------------------------------------------------------------

def test_after_the_handshake_a_response_is_one_write(pair: Pair) -> None:
    assert pair.client.version() in ("TLSv1.2", "TLSv1.3")
    assert pair.client.selected_alpn_protocol() == "http/1.1"
    assert pair.sock.handshake_done and not pair.sock.broken
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + b"x" * 1024
    pair.transport.write([response])
    assert pair.transport.pending_bytes == 0  # written at once, no queue
    assert pair.pump(len(response)) == response


def test_a_large_body_through_small_buffers_moves_a_record_at_a_time(
        certificate: Certificate, pairs: list[Pair]) -> None:
    pair = Pair(certificate, small_buffers=True)
    pairs.append(pair)
    pair.handshake()
    head, body = b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n", os.urandom(300_000)
    pair.transport.write([head, body])
    assert pair.transport.pending_bytes > 0  # the buffers are full: the rest is queued
    seen = {pair.transport.pending_bytes}
    received = bytearray()
    while len(received) < len(head) + len(body):
        received += pair.pump(1)
        seen.add(pair.transport.pending_bytes)
    assert bytes(received) == head + body
    assert all(pending % TLS_RECORD_SIZE == len(body) % TLS_RECORD_SIZE for pending in seen
               if 0 < pending < len(body)), "pending_bytes moves by whole records"


def test_file_regions_are_read_in_records_never_sent_with_sendfile(
        certificate: Certificate, pairs: list[Pair], tmp_path: Path) -> None:
    stats = Stats()
    pair = Pair(certificate, stats=stats)
    pairs.append(pair)
    pair.handshake()
    data = os.urandom(3 * TLS_RECORD_SIZE + 123)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    pair.transport.write([b"head\r\n", FileRegion(fd, 100, len(data) - 100)])
    assert pair.pump(6 + len(data) - 100) == b"head\r\n" + data[100:]
    with pytest.raises(OSError):
        os.fstat(fd)  # released once sent
    if not pair.sock.kernel_sends:
        assert stats.sendfile_bytes == 0  # sendfile would have sent the clear text


def test_recv_takes_what_the_tls_object_decrypted_beyond_the_size(pair: Pair) -> None:
    sent = os.urandom(10_000)
    pair.client.sendall(sent)  # one TLS record
    assert pair.server_reads(1000) == sent  # not 1000: the rest would wait unseen
    assert pair.transport.recv(1000) is None  # nothing more, and nothing hidden


def test_a_readable_socket_may_bring_no_application_bytes(pair: Pair) -> None:
    assert pair.transport.recv(1000) is None
    pair.client.sendall(b"ping")
    assert pair.server_reads() == b"ping"


def test_a_clean_close_says_close_notify(certificate: Certificate, pairs: list[Pair]) -> None:
    pair = Pair(certificate, ragged_eofs_allowed=False)
    pairs.append(pair)
    pair.handshake()
    pair.transport.write([b"the last response"])
    pair.transport.abort()  # nothing queued: a clean end
    assert pair.client.recv(100) == b"the last response"
    assert pair.client.recv(100) == b""  # close_notify: with ragged EOFs refused, a clean end


def test_no_close_notify_after_a_response_cut_short(certificate: Certificate,
                                                     pairs: list[Pair]) -> None:
    pair = Pair(certificate, small_buffers=True, ragged_eofs_allowed=False)
    pairs.append(pair)
    pair.handshake()
    pair.transport.write([os.urandom(500_000)])
    assert pair.transport.pending_bytes > 0
    pair.transport.abort()  # the rest is dropped: the client must not see a clean end
    with pytest.raises((ssl.SSLEOFError, ConnectionResetError)):
        while pair.client.recv(1 << 20):
            pass


def test_a_file_that_shrank_aborts_without_close_notify(
        certificate: Certificate, pairs: list[Pair], tmp_path: Path) -> None:
    pair = Pair(certificate, ragged_eofs_allowed=False)
    pairs.append(pair)
    pair.handshake()
    path = tmp_path / "shrinking.bin"
    path.write_bytes(b"x" * 1000)
    region = FileRegion(os.open(path, os.O_RDONLY), 0, 5000)  # promises more than there is
    pair.transport.write([region])
    assert pair.transport.closed and pair.sock.broken
    with pytest.raises((ssl.SSLEOFError, ConnectionResetError)):
        while pair.client.recv(1 << 20):
            pass


def test_a_lingering_shutdown_says_close_notify_and_reads_on(
        certificate: Certificate, pairs: list[Pair]) -> None:
    pair = Pair(certificate, ragged_eofs_allowed=False)
    pairs.append(pair)
    pair.handshake()
    pair.sock.shutdown(socket.SHUT_WR)
    assert pair.client.recv(100) == b""  # close_notify, then the end of the stream
    pair.client.sendall(b"still talking")  # the client may go on sending: it is read, dropped
    assert pair.server_reads() in (None, b"still talking")
    pair.client.close()
    while (data := pair.server_reads()) is None or data:
        pass


# -- failed and abandoned handshakes ------------------------------------------------------------

def test_plain_http_fails_the_handshake_and_nothing_is_sent_in_clear_text(
        certificate: Certificate, pairs: list[Pair], caplog: pytest.LogCaptureFixture) -> None:
    pair = Pair(certificate)
    pairs.append(pair)
    raw = socket.socket(fileno=os.dup(pair.client.fileno()))
    raw.setblocking(True)
    raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    select.select([pair.sock], [], [], WAIT)
    with caplog.at_level(logging.INFO, "evserver.tls"):
        assert pair.transport.handshake() == HANDSHAKE_FAILED
    assert "plain HTTP sent to the HTTPS port" in caplog.text
    assert not pair.transport.closed and pair.sock.broken
    rest = pair.transport.recv(65536)  # what followed the first bytes, read raw (to discard)
    assert rest is None or b"Host: x" in rest
    for send in (pair.sock.send, pair.sock.sendall):
        with pytest.raises(ValueError, match="clear text"):
            send(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    pair.sock.shutdown(socket.SHUT_WR)
    raw.settimeout(WAIT)
    assert raw.recv(100) == b""  # not a byte came back
    raw.close()


def test_a_client_vanishing_mid_handshake_is_logged_at_debug_only(
        certificate: Certificate, pairs: list[Pair], caplog: pytest.LogCaptureFixture) -> None:
    pair = Pair(certificate)
    pairs.append(pair)
    raw = socket.socket(fileno=os.dup(pair.client.fileno()))
    raw.sendall(client_hello()[:50])
    linger_zero(raw)
    raw.close()
    pair.client.close()  # the last descriptor of the client: a reset
    select.select([pair.sock], [], [], WAIT)
    with caplog.at_level(logging.DEBUG, "evserver.tls"):
        outcome = pair.transport.handshake()
        while outcome == WANTS_READ:
            select.select([pair.sock], [], [], WAIT)
            outcome = pair.transport.handshake()
    assert outcome == PEER_GONE and pair.transport.closed
    assert [r.levelno for r in caplog.records if r.name == "evserver.tls"] == [logging.DEBUG]


# -- the blocking side ---------------------------------------------------------------------------

@pytest.fixture
def blocking_pair(certificate: Certificate) -> Iterator[tuple[TLSSocket, ssl.SSLSocket]]:
    """A blocking server-side TLSSocket after its handshake, and its client."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        raw_client = socket.create_connection(listener.getsockname(), timeout=WAIT)
        server_end, _ = listener.accept()
    sock = wrap_server_socket(server_context(str(certificate.cert), str(certificate.key)),
                              server_end)
    outcomes: list[int] = []
    thread = threading.Thread(target=lambda: outcomes.append(sock.shake_hands(WAIT)))
    thread.start()
    client = client_context(certificate).wrap_socket(raw_client, server_hostname="localhost")
    thread.join(WAIT)
    assert outcomes == [HANDSHAKE_DONE]
    yield sock, client
    sock.close()
    client.close()


def test_a_blocking_receive_timeout_is_reported_as_the_kernels_would_be(
        blocking_pair: tuple[TLSSocket, ssl.SSLSocket]) -> None:
    sock, client = blocking_pair
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, TIMEVAL.pack(0, 200_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, TIMEVAL.pack(7, 0))
    buffer = bytearray(1000)
    started = time.monotonic()
    with pytest.raises(BlockingIOError):
        sock.recv_into(buffer)
    assert 0.15 < time.monotonic() - started < 5
    client.sendall(b"x" * 20_000)
    assert sock.recv_into(buffer) == 1000 and buffer == b"x" * 1000
    # The rest of the first record waits inside the TLS object: the next read takes it at
    # once, without waiting for the network (the receive timeout would fail a wait here).
    assert sock.recv_into(buffer) == 1000
    received = 2000
    while received < 20_000:
        received += sock.recv_into(buffer)
    assert received == 20_000
    sock.use_send_timeout()
    assert sock.gettimeout() == 7
    assert not sock.broken


def test_send_tls_sends_bytes_and_regions_in_records(
        blocking_pair: tuple[TLSSocket, ssl.SSLSocket], tmp_path: Path) -> None:
    sock, client = blocking_pair
    data = os.urandom(2 * TLS_RECORD_SIZE + 7)
    path = tmp_path / "region.bin"
    path.write_bytes(data)
    items = [b"head ", b"and more ", FileRegion(os.open(path, os.O_RDONLY), 7, len(data) - 7),
             b" tail"]
    sent = threading.Thread(target=send_tls, args=(sock, items, True))
    sent.start()
    expected = b"head and more " + data[7:] + b" tail"
    received = b""
    while len(received) < len(expected):
        received += client.recv(1 << 20)
    sent.join(WAIT)
    assert received == expected
    assert not sock.broken


def test_a_blocking_handshake_ends_at_its_timeout(certificate: Certificate) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener, \
            socket.create_connection(listener.getsockname()):
        server_end, _ = listener.accept()
        sock = wrap_server_socket(server_context(str(certificate.cert), str(certificate.key)),
                                  server_end)
        started = time.monotonic()
        assert sock.shake_hands(0.3) == HANDSHAKE_TIMED_OUT
        assert 0.25 < time.monotonic() - started < 5
        assert sock.broken
        sock.close()


# -- the evented driver's handshake phase --------------------------------------------------------

def ok_handler(request: Request) -> Response:
    return Response(200, b"Content-Length: 2\r\n", (b"ok",), 2)


class Driven:
    """A TLSConnection on a reactor whose loop never runs, with a fake clock."""

    def __init__(self, certificate: Certificate, tmp_path: Path) -> None:
        self.now = 1000.0
        self.reactor = Reactor("poll", clock=lambda: self.now)
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.raw = socket.create_connection(listener.getsockname(), timeout=WAIT)
            server_end, _ = listener.accept()
        server_end.setblocking(False)
        self.config = ServerConfig(root=str(tmp_path), header_timeout=10,
                                   tls_context=server_context(str(certificate.cert),
                                                              str(certificate.key)))
        assert self.config.tls_context is not None
        self.stats = Stats()
        self.conn = TLSConnection(self.reactor, wrap_server_socket(self.config.tls_context,
                                                                   server_end),
                                  ServerProtocol(ok_handler),
                                  ConnectionContext(self.config, self.stats))
        self.states = [self.conn.state]

    def event(self) -> None:
        """What the loop would do when the descriptor is ready: call its current callback."""
        ready = select.select([self.conn.fd], [self.conn.fd] if self.conn._mask & EVENT_WRITE
                              else [], [], WAIT)
        assert ready[0] or ready[1], "nothing to do"
        key = self.reactor._selector.get_key(self.conn.fd)
        key.data(EVENT_READ if ready[0] else EVENT_WRITE)
        self.states.append(self.conn.state)

    def close(self) -> None:
        self.conn.abort()
        self.raw.close()
        self.reactor.close()


@pytest.fixture
def driven(certificate: Certificate, tmp_path: Path) -> Iterator[Driven]:
    made = Driven(certificate, tmp_path)
    yield made
    made.close()
    moves = set(zip(made.states, made.states[1:], strict=False))
    table = {(start, end) for start, end, _ in LIFE_MOVES}
    assert {move for move in moves if move[0] != move[1]} <= table


def test_a_stalled_handshake_keeps_the_first_deadline_and_is_dropped_at_it(
        driven: Driven) -> None:
    deadline = driven.conn._deadline
    assert deadline == driven.now + driven.config.header_timeout
    driven.raw.sendall(client_hello()[:60])  # half a ClientHello, then nothing
    driven.event()
    assert driven.conn.state == "idle" and driven.conn._deadline == deadline  # not moved
    driven.now = deadline + 0.1
    driven.reactor.now = driven.now
    driven.conn._on_timer()
    assert driven.conn.state == "closed"
    assert driven.stats.timeouts["idle"] == 1


def test_a_finished_handshake_hands_over_to_the_conversation(driven: Driven,
                                                            certificate: Certificate) -> None:
    driven.raw.setblocking(False)
    client = client_context(certificate).wrap_socket(driven.raw, server_hostname="localhost",
                                                     do_handshake_on_connect=False)
    for _ in range(200):
        try:
            client.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        if driven.reactor._selector.get_key(driven.conn.fd).data == driven.conn._on_event:
            break  # the server is done (after the client, whose Finished it waited for)
        if select.select([driven.conn.fd], [], [], 0.05)[0]:
            driven.event()
    assert driven.reactor._selector.get_key(driven.conn.fd).data == driven.conn._on_event
    client.settimeout(WAIT)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    driven.event()
    assert client.recv(1000).endswith(b"\r\n\r\nok")
    driven.raw = client


def test_a_write_waiting_for_the_clients_bytes_waits_for_readable(driven: Driven) -> None:
    driven.conn.transport.write_waits_for_read = True
    driven.conn._mask = EVENT_READ | EVENT_WRITE
    driven.reactor.modify(driven.conn.fd, driven.conn._mask, driven.conn._on_event)
    driven.conn.transport._pending = 1  # as if a write were queued
    driven.conn._update()
    assert driven.conn._mask == EVENT_READ
    driven.conn.transport._pending = 0
    assert driven.conn.transport.recv(100) is None  # the writes are retried first
    assert not driven.conn.transport.write_waits_for_read
