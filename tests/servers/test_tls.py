"""HTTPS end to end, in every model: real clients that verify the certificate, files that arrive
whole, pipelining, stalled and vanishing handshakes, plain HTTP on the TLS port, the command line.

The certificate is made at test time with the ``openssl`` command (``certificate`` in
tests/conftest.py). Clients: ``http.client`` and ``urllib`` with a verifying context, ``curl
--cacert``, ``openssl s_client``, and raw sockets for what no polite client does. Servers bind
127.0.0.1 port 0 and are always stopped (in this process, or as children when descriptors are
counted or the command line is the subject).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from evserver.drivers.evented import HIGH_WATER
from evserver.net.tls import KTLS_OPTION, TLS_RECORD_SIZE, server_context
from evserver.protocol import MAX_BATCH_BODY_BYTES
from tests.support.clients import close_with_reset, raw_exchange
from tests.support.processes import ServerProcess
from tests.support.responses import ResponseReader
from tests.support.servers import RunningServer
from tests.support.tls import (
    Certificate,
    client_context,
    client_hello,
    half_close,
    make_certificate,
    tls_connect,
)
from tests.support.trees import BIG_FILE_SIZE, make_big_file
from tests.support.waiting import wait_until

WAIT = 10.0
STALL_TIMEOUT = 0.5
"""The header timeout of the servers that must drop a stalled handshake (short: tests wait it)."""

RESETTING_CLIENTS = 200


@pytest.fixture
def tls_server(start_server: Callable[..., RunningServer], model_name: tuple[str, str],
               certificate: Certificate) -> RunningServer:
    model, selector = model_name
    return start_server(model=model, selector=selector, header_timeout=STALL_TIMEOUT,
                        tls_context=server_context(str(certificate.cert), str(certificate.key)))


def https(server: RunningServer, certificate: Certificate) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("localhost", server.port, timeout=WAIT,
                                       context=client_context(certificate))


# -- real clients --------------------------------------------------------------------------------

def test_a_verifying_client_gets_files_over_one_keep_alive_connection(
        tls_server: RunningServer, certificate: Certificate) -> None:
    conn = https(tls_server, certificate)
    for name in ["small.txt", "kib.bin", "medium.bin", "sub/a.txt", "small.txt"]:
        conn.request("GET", "/" + name)
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == (tls_server.root / name).read_bytes()
    assert conn.sock is not None
    assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert conn.sock.selected_alpn_protocol() == "http/1.1"
    conn.close()


def test_urllib_with_a_verifying_context(tls_server: RunningServer,
                                         certificate: Certificate) -> None:
    url = tls_server.url("/small.txt").replace("127.0.0.1", "localhost")
    with urllib.request.urlopen(url, timeout=WAIT,
                                context=client_context(certificate)) as response:
        assert response.read() == b"hello, world\n"


def test_a_client_offering_h2_first_gets_http_11(tls_server: RunningServer,
                                                  certificate: Certificate) -> None:
    context = client_context(certificate)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with tls_connect(tls_server.address, context) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"


def test_a_client_that_does_not_trust_the_certificate_is_refused(
        tls_server: RunningServer, certificate: Certificate, tmp_path: Path) -> None:
    stranger = make_certificate(tmp_path, "stranger")
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(tls_server.address, client_context(stranger))
    conn = https(tls_server, certificate)  # and the server goes on
    conn.request("GET", "/small.txt")
    assert conn.getresponse().read() == b"hello, world\n"
    conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed; CI installs it")
def test_curl_with_cacert(tls_server: RunningServer, certificate: Certificate,
                          tmp_path: Path) -> None:
    out = tmp_path / "kib.bin"
    done = subprocess.run(
        ["curl", "-sS", "--cacert", str(certificate.cert), "-o", str(out),
         "-w", "%{http_code} %{http_version}", tls_server.url("/kib.bin")],
        capture_output=True, text=True, timeout=WAIT * 2, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "200 1.1"  # curl offers h2 too: the server chose HTTP/1.1
    assert out.read_bytes() == (tls_server.root / "kib.bin").read_bytes()


def test_openssl_s_client_verifies_and_is_answered(tls_server: RunningServer,
                                                    certificate: Certificate) -> None:
    request = b"GET /small.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{tls_server.port}", "-quiet",
         "-CAfile", str(certificate.cert), "-verify_return_error", "-verify_hostname",
         "localhost", "-alpn", "http/1.1"],
        input=request, capture_output=True, timeout=WAIT * 2, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert done.stdout.endswith(b"\r\n\r\nhello, world\n")


# -- bodies, ranges, pipelining ------------------------------------------------------------------

def test_files_arrive_byte_identical_with_range_and_keep_alive(
        tls_server: RunningServer, certificate: Certificate) -> None:
    big = tls_server.root / "big.bin"
    digest = make_big_file(big)
    data = big.read_bytes()
    conn = https(tls_server, certificate)
    exchanges = [
        ("/kib.bin", {}, 200, (tls_server.root / "kib.bin").read_bytes()),
        ("/big.bin", {}, 200, None),
        ("/big.bin", {"Range": "bytes=1000000-3000000"}, 206, data[1_000_000:3_000_001]),
        ("/big.bin", {"Range": f"bytes=-{TLS_RECORD_SIZE + 1}"}, 206,
         data[-TLS_RECORD_SIZE - 1:]),
        ("/kib.bin", {"Range": "bytes=10-19"}, 206, (tls_server.root / "kib.bin")
         .read_bytes()[10:20]),
    ]
    for target, fields, status, expected in exchanges:
        conn.request("GET", target, headers=fields)
        response = conn.getresponse()
        assert response.status == status
        body = response.read()
        if expected is None:
            assert len(body) == BIG_FILE_SIZE
            assert hashlib.sha256(body).hexdigest() == digest
        else:
            assert body == expected
    conn.close()
    stats = tls_server.server.stats
    assert stats.body_bytes >= BIG_FILE_SIZE
    if not KTLS_OPTION:  # sendfile cannot encrypt: every body went through OpenSSL
        assert stats.sendfile_bytes == 0


def test_fifty_pipelined_requests_are_answered_in_order(
        tls_server: RunningServer, certificate: Certificate) -> None:
    names = ["small.txt", "kib.bin", "sub/a.txt", "medium.bin", "noindex/x.css"] * 10
    requests = b"".join(f"GET /{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for name in names)
    with tls_connect(tls_server.address, client_context(certificate)) as sock:
        sock.sendall(requests)  # all fifty in one go
        reader = ResponseReader(sock)
        for name in names:
            response = reader.next()
            assert response is not None and response.status == 200
            assert response.body == (tls_server.root / name).read_bytes()


def test_a_client_pipelining_without_reading_is_paused_as_over_plain_http(
        start_server: Callable[..., RunningServer], certificate: Certificate) -> None:
    """Backpressure over TLS is the plain path's: the evented driver stops reading while the
    transport holds more than HIGH_WATER, whatever the transport does with the bytes."""
    server = start_server(model="evented", tls_context=server_context(
        str(certificate.cert), str(certificate.key)))
    medium = (server.root / "medium.bin").read_bytes()
    assert len(medium) > HIGH_WATER
    count = 100
    with tls_connect(server.address, client_context(certificate)) as sock:
        sock.sendall(b"GET /medium.bin HTTP/1.1\r\nHost: x\r\n\r\n" * count)  # read nothing

        def paused() -> bool:
            connections = list(server.server.connections)  # type: ignore[attr-defined]
            return bool(connections) and connections[0].state == "paused"

        wait_until(paused, "the connection paused")
        (connection,) = list(server.server.connections)  # type: ignore[attr-defined]
        assert connection.transport.pending_bytes <= MAX_BATCH_BODY_BYTES + len(medium) + 1024
        reader = ResponseReader(sock)
        for _ in range(count):  # then everything arrives, whole and in order
            response = reader.next()
            assert response is not None and response.body == medium


def test_a_client_half_closing_without_close_notify_gets_every_answer(
        tls_server: RunningServer, certificate: Certificate) -> None:
    with tls_connect(tls_server.address, client_context(certificate)) as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        half_close(sock)  # a TCP FIN: "no more requests", as over plain HTTP
        reader = ResponseReader(sock)
        bodies = [response.body for response in iter(reader.next, None)]
    assert bodies == [b"hello, world\n"] * 3


def test_sessions_resume_unless_tickets_are_off(start_server: Callable[..., RunningServer],
                                                 certificate: Certificate) -> None:
    for tickets in (True, False):
        server = start_server(tls_context=server_context(
            str(certificate.cert), str(certificate.key), tickets=tickets))
        context = client_context(certificate)
        with tls_connect(server.address, context) as first:
            first.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ResponseReader(first).next() is not None  # tickets come before it
            session = first.session
        raw = socket.create_connection(server.address, timeout=WAIT)
        with context.wrap_socket(raw, server_hostname="localhost", session=session) as second:
            assert second.session_reused is tickets


# -- hostile handshakes --------------------------------------------------------------------------

def read_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sent until it closed ``sock``, and how long that took (the socket's
    timeout fails the test after ``seconds``)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received, time.monotonic() - started


def test_clients_stalling_mid_handshake_are_closed_at_the_header_timeout(
        tls_server: RunningServer) -> None:
    """Three at once: one that says nothing, one that stops in the middle of its ClientHello,
    one that sends it whole and never answers the server's flight."""
    hello = client_hello()
    sent = [b"", hello[:len(hello) // 2], hello]
    clients = [socket.create_connection(tls_server.address, timeout=WAIT) for _ in sent]
    for sock, data in zip(clients, sent, strict=True):
        sock.sendall(data)  # then nothing more
    # The iterative model handshakes with one client at a time: the others wait their turn.
    turns = len(clients) if tls_server.model == "iterative" else 1
    for sock, data in zip(clients, sent, strict=True):
        with sock:
            received, waited = read_until_closed(sock, turns * STALL_TIMEOUT + WAIT)
        assert waited < turns * STALL_TIMEOUT + 2.0
        assert bool(received) == (data == hello)  # the server's flight, then it waited for ours
    wait_until(lambda: tls_server.server.stats.timeouts["idle"] >= len(clients),
               "each counted as a timeout")


def test_plain_http_on_the_tls_port_is_closed_cleanly(
        tls_server: RunningServer, certificate: Certificate,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "evserver.tls"):
        answer = raw_exchange(tls_server.address, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: "plain HTTP sent to the HTTPS port" in caplog.text, "a log line")
    assert answer == b""  # and an end of stream, not a reset (raw_exchange checks)
    assert "Traceback" not in caplog.text
    conn = https(tls_server, certificate)
    conn.request("GET", "/small.txt")
    assert conn.getresponse().read() == b"hello, world\n"
    conn.close()


def test_a_client_hello_on_the_plain_port_gets_a_400(server: RunningServer) -> None:
    assert raw_exchange(server.address, client_hello()).startswith(b"HTTP/1.1 400 ")


# -- close_notify --------------------------------------------------------------------------------

def test_close_notify_after_the_last_response_and_after_an_error(
        tls_server: RunningServer, certificate: Certificate) -> None:
    for request, status in ((b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                             200),
                            (b"GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
                             400)):
        raw = socket.create_connection(tls_server.address, timeout=WAIT)
        with client_context(certificate).wrap_socket(
                raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):  # an end without close_notify would raise
                received += chunk
        assert received.startswith(b"HTTP/1.1 %d " % status)


def test_close_notify_on_an_idle_timeout(start_server: Callable[..., RunningServer],
                                         model_name: tuple[str, str],
                                         certificate: Certificate) -> None:
    model, selector = model_name
    server = start_server(model=model, selector=selector, idle_timeout=0.3,
                          tls_context=server_context(str(certificate.cert),
                                                     str(certificate.key)))
    raw = socket.create_connection(server.address, timeout=WAIT)
    with client_context(certificate).wrap_socket(raw, server_hostname="localhost",
                                                 suppress_ragged_eofs=False) as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = ResponseReader(sock)
        response = reader.next()
        assert response is not None and response.status == 200
        assert reader.next() is None  # then silence, and a clean end


def test_a_graceful_stop_ends_idle_tls_connections_with_close_notify(
        tls_server: RunningServer, certificate: Certificate) -> None:
    raw = socket.create_connection(tls_server.address, timeout=WAIT)
    with client_context(certificate).wrap_socket(raw, server_hostname="localhost",
                                                 suppress_ragged_eofs=False) as sock:
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.next() is not None
        tls_server.server.shutdown()  # idle connections close at once, cleanly
        assert reader.next() is None  # an end with close_notify (a ragged one would raise)
    tls_server.stop()


# -- descriptors ---------------------------------------------------------------------------------

def test_clients_resetting_mid_handshake_leave_no_descriptor(
        start_process: Callable[..., ServerProcess | None], model_name: tuple[str, str],
        certificate: Certificate) -> None:
    model, selector = model_name
    server = start_process("-q", "--model", model, "--selector", selector,
                           *certificate.server_args())
    assert server is not None
    assert " on https://" in server.banner
    context = client_context(certificate)
    before = server.open_fds()
    fetch(server, context)  # a model may open a descriptor of its own when it first serves
    wait_until(lambda: server.open_fds() <= before + 1, "the first connection closed")
    baseline = server.open_fds()
    hello = client_hello()
    clients = []
    for n in range(RESETTING_CLIENTS):
        sock = socket.create_connection(server.address, timeout=WAIT)
        sock.sendall(hello[: len(hello) // 2] if n % 2 else hello)
        clients.append(sock)
    for sock in clients:
        close_with_reset(sock)
    assert fetch(server, context) == b"hello, world\n"
    wait_until(lambda: server.open_fds() <= baseline, f"descriptors back to {baseline}")
    assert not any("Traceback" in line for line in server.stderr_lines)


def fetch(server: ServerProcess, context: ssl.SSLContext) -> bytes:
    conn = http.client.HTTPSConnection("localhost", server.port, timeout=WAIT, context=context)
    conn.request("GET", "/small.txt", headers={"Connection": "close"})
    body = conn.getresponse().read()
    conn.close()
    return body


def test_https_with_worker_processes(start_process: Callable[..., ServerProcess | None],
                                     certificate: Certificate) -> None:
    """The context is built once, in the master, and every forked worker serves with it."""
    server = start_process("-q", "--workers", "2", *certificate.server_args())
    assert server is not None
    assert " on https://127.0.0.1:" in server.banner
    context = client_context(certificate)
    for _ in range(6):  # new connections, spread over the workers
        assert fetch(server, context) == b"hello, world\n"
    with tls_connect(server.address, context) as sock:  # and a kept one
        sock.sendall(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        reader = ResponseReader(sock)
        assert [reader.next() is not None for _ in range(2)] == [True, True]


# -- a renewed certificate -----------------------------------------------------------------------

def install(certificate: Certificate, cert_path: Path, key_path: Path) -> None:
    """Put a certificate and its key where the server reads them, each file replaced by one
    rename (as a renewal tool does), so the server never reads half a file."""
    for source, target in ((certificate.cert, cert_path), (certificate.key, key_path)):
        incoming = target.with_name(target.name + ".new")
        shutil.copyfile(source, incoming)
        os.replace(incoming, target)


def trusting(*certificates: Certificate) -> ssl.SSLContext:
    """A verifying client context that trusts each of these certificates."""
    return ssl.create_default_context(cadata="".join(c.cert.read_text() for c in certificates))


def served_certificate(server: ServerProcess, context: ssl.SSLContext) -> bytes:
    """The certificate (DER) the server shows a new connection."""
    with tls_connect(server.address, context) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(certificate: Certificate) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certificate.cert.read_text())


@dataclass
class Renewal:
    """A master serving HTTPS from ``cert_path`` and ``key_path`` (``first`` installed there),
    the certificate to renew with (``second``), and a client that trusts both."""

    server: ServerProcess
    first: Certificate
    second: Certificate
    cert_path: Path
    key_path: Path
    context: ssl.SSLContext


@pytest.fixture
def renewal(tmp_path: Path, start_process: Callable[..., ServerProcess | None]) -> Renewal:
    first, second = make_certificate(tmp_path / "first"), make_certificate(tmp_path / "second")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    install(first, cert_path, key_path)
    server = start_process("-q", "--workers", "1", "--tls-cert", str(cert_path),
                           "--tls-key", str(key_path))
    assert server is not None
    return Renewal(server, first, second, cert_path, key_path, trusting(first, second))


def test_sighup_to_a_master_serves_the_renewed_certificate(renewal: Renewal) -> None:
    server, context = renewal.server, renewal.context
    assert served_certificate(server, context) == der(renewal.first)
    install(renewal.second, renewal.cert_path, renewal.key_path)
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: served_certificate(server, context) == der(renewal.second),
               "the renewed certificate served")
    assert server.stop() == 0


def test_a_reload_with_unusable_files_is_refused_and_the_workers_go_on(
        renewal: Renewal) -> None:
    server, context = renewal.server, renewal.context
    shutil.copyfile(renewal.second.key, renewal.key_path)  # a key that does not match
    server.process.send_signal(signal.SIGHUP)
    wait_until(lambda: any("reload refused" in line for line in server.stderr_lines),
               "the master's refusal")
    refusal = next(line for line in server.stderr_lines if "reload refused" in line)
    assert "does not belong to the certificate" in refusal, refusal
    assert not any("reloading" in line for line in server.stderr_lines)
    assert served_certificate(server, context) == der(renewal.first)  # the old worker serves on
    install(renewal.second, renewal.cert_path, renewal.key_path)  # put right: the next reload
    server.process.send_signal(signal.SIGHUP)  # takes them
    wait_until(lambda: served_certificate(server, context) == der(renewal.second),
               "the renewed certificate served")
    assert server.stop() == 0


# -- the command line ----------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evserver", *args], capture_output=True,
                          text=True, timeout=20, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, certificate: Certificate,
              ) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    other = make_certificate(folder, "other")
    locked = make_certificate(folder, "locked", password="right")
    assert locked.password_file is not None
    wrong = folder / "wrong-password.txt"
    wrong.write_text("wrong\n")
    junk = folder / "junk.pem"
    junk.write_text("not a certificate\n")
    return {"cert": certificate.cert, "key": certificate.key, "other_key": other.key,
            "locked_cert": locked.cert, "locked_key": locked.key, "right": locked.password_file,
            "wrong": wrong, "junk": junk, "missing": folder / "missing.pem"}


@pytest.mark.parametrize(("args", "says"), [
    (["--tls-cert", "{missing}"], "--tls-cert: cannot read"),
    (["--tls-cert", "{junk}", "--tls-key", "{key}"], "holds no PEM certificate"),
    (["--tls-cert", "{cert}"], "holds no private key; give it with --tls-key"),
    (["--tls-cert", "{cert}", "--tls-key", "{junk}"], "holds no PEM private key"),
    (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "does not belong to the certificate"),
    (["--tls-cert", "{cert}", "--tls-key", "{locked_key}"], "give its password with"),
    (["--tls-cert", "{cert}", "--tls-key", "{locked_key}", "--tls-password-file", "{wrong}"],
     "the password does not open the key"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-password-file", "{missing}"],
     "--tls-password-file: cannot read"),
    (["--tls-key", "{key}"], "--tls-key requires --tls-cert"),
    (["--tls-password-file", "{right}"], "--tls-password-file requires --tls-cert"),
    (["--tls-no-tickets"], "--tls-no-tickets requires --tls-cert"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--split-writes"], "--split-writes"),
])
def test_unusable_tls_files_give_one_line_and_status_2(args: list[str], says: str,
                                                       bad_files: dict[str, Path],
                                                       tmp_path: Path) -> None:
    result = run_cli("0", "-b", "127.0.0.1", "-d", str(tmp_path),
                     *(arg.format(**bad_files) for arg in args))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evserver: error:"), result.stderr
    assert says in lines[0]


def test_a_password_file_opens_the_key(start_process: Callable[..., ServerProcess | None],
                                       bad_files: dict[str, Path]) -> None:
    server = start_process("-q", "--tls-cert", str(bad_files["locked_cert"]),
                           "--tls-key", str(bad_files["locked_key"]),
                           "--tls-password-file", str(bad_files["right"]))
    assert server is not None
    assert " on https://127.0.0.1:" in server.banner
    assert "TLS bodies: " in server.banner
    if not KTLS_OPTION:
        assert "TLS bodies: 16 KiB reads" in server.banner
    assert fetch(server, client_context(bad_files["locked_cert"])) == b"hello, world\n"


def test_a_plain_server_says_http_in_its_banner(start_process: Callable[..., ServerProcess | None],
                                                ) -> None:
    server = start_process("-q")
    assert server is not None
    assert " on http://" in server.banner and "TLS" not in server.banner
