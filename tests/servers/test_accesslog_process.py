"""The access log of a running server: a file it cannot open, SIGUSR1 (log rotation) in every
model and in every worker, a second Ctrl-C that still writes the buffered lines (in a worker
too), and a download cut short (from a file or from memory) logged with the bytes that really
left."""

from __future__ import annotations

import inspect
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from evserver.bodies import Response
from evserver.config import MODELS
from evserver.net.tls import server_context
from tests.support.processes import ServerProcess
from tests.support.servers import RunningServer
from tests.support.tls import Certificate, client_context
from tests.support.trees import make_big_file
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="signals and /proc: tested on Linux")

StartProcess = Callable[..., ServerProcess]

BUFFERED_REQUESTS = 20
"""Requests whose lines wait in the log's buffer when the second signal comes."""


def get(port: int, path: str = "/") -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:  # a 404 is an answer, logged like any other
        error.read()
        return error.code


def test_an_access_log_that_cannot_be_opened_is_reported_as_such(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "evserver", "0", "-b", "127.0.0.1",
                             "--access-log", str(tmp_path)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"evserver: cannot open the access log {str(tmp_path)!r}: Is a directory"]


@pytest.mark.parametrize(("model", "workers"), [
    *((model, []) for model in MODELS),
    ("evented", ["--workers", "2"]),  # the master passes it on whatever the model
], ids=[*MODELS, "workers"])
def test_sigusr1_reopens_the_log_after_a_rename(start_process: StartProcess, tmp_path: Path,
                                                model: str, workers: list[str]) -> None:
    path = tmp_path / "access.log"
    server = start_process("--model", model, "--access-log", str(path), "--stats-path",
                           "/-/stats", *workers)
    get(server.port, "/before")  # 404, logged
    wait_until(lambda: path.exists() and "/before" in path.read_text(), "the first line")
    path.rename(tmp_path / "access.log.1")
    server.process.send_signal(signal.SIGUSR1)
    # Ask until the new file has lines: with workers, connections spread over both, and
    # each must have reopened for requests to keep landing in the new file.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for _ in range(4):
            get(server.port, "/after")
        if path.exists() and path.read_text().count("/after") >= 4:
            break
        time.sleep(0.2)
    assert path.exists(), "no new file after SIGUSR1"
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/-/stats", timeout=10) as page:
        stats = json.load(page)
    assert stats["access_log"]["lines_lost"] == 0
    assert server.stop() == 0
    old = (tmp_path / "access.log.1").read_text()
    assert "/before" in old
    if workers:  # each worker wrote its later lines to the new file: none to the old one late
        assert path.read_text().count("/after") >= 4
    assert "/after" in path.read_text()


@pytest.mark.parametrize("args", [
    [], ["--workers", "1"], ["--workers", "1", "--model", "threaded"],
], ids=["single", "worker", "threaded-worker"])
def test_a_second_ctrl_c_still_writes_the_buffered_lines(start_process: StartProcess,
                                                         tmp_path: Path, args: list[str]) -> None:
    path = tmp_path / "access.log"
    server = start_process("--access-log", str(path), *args)
    with socket.create_connection(server.address) as held:
        held.sendall(b"GET /x HTTP/1.1\r\n")  # half a request: the drain waits for it
        for index in range(BUFFERED_REQUESTS):  # well within the log's one-second flush
            get(server.port, f"/buffered/{index}")
        server.process.send_signal(signal.SIGINT)
        # Two signals at once would reach Python's handler as one: wait for the drain (the
        # master's line, or the single server's).
        wait_until(lambda: any("shutting down" in line or "to drain" in line
                               for line in server.stderr_lines), "the graceful stop")
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(10) == 128 + signal.SIGINT
    text = path.read_text() if path.exists() else ""
    missing = [index for index in range(BUFFERED_REQUESTS) if f"/buffered/{index} " not in text]
    assert missing == [], "".join(server.stderr_lines)


def cut_download(running: RunningServer, target: str,
                 tls: ssl.SSLContext | None = None) -> int:
    """Ask for ``target`` (over TLS with ``tls``), read a quarter MiB of it, then reset: the
    body bytes read."""
    raw = socket.create_connection(running.address)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client = raw if tls is None else tls.wrap_socket(raw, server_hostname="localhost")
    with client:
        client.sendall(f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode())
        received = b""
        while len(received) < 256 * 1024:
            received += client.recv(65536)
        # A reset, not a polite close: the server's next send fails.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return len(received) - received.index(b"\r\n\r\n") - 4


def logged_bytes(running: RunningServer, path: Path, target: str) -> int:
    """The body bytes the access log at ``path`` gives the one response to ``target``."""
    running.server.access_log_flush()
    wait_until(lambda: target in path.read_text() if path.exists() else False,
               "the line of the cut download", seconds=15)
    running.stop()
    (line,) = [text for text in path.read_text().splitlines() if f" {target} " in text]
    return int(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("model", MODELS)
def test_a_download_cut_short_logs_the_bytes_that_left(start_server: Callable[...,
                                                       RunningServer], tmp_path: Path,
                                                       model: str) -> None:
    root = tmp_path / "cut"
    root.mkdir()
    size = 8 * 1024 * 1024
    make_big_file(root / "big.bin", size)
    path = tmp_path / "access.log"
    running = start_server(root, model=model, access_log=str(path), quiet=False)
    got = cut_download(running, "/big.bin")
    sent = logged_bytes(running, path, "/big.bin")
    assert got <= sent < size


@pytest.mark.parametrize("model", MODELS)
def test_a_body_from_memory_cut_short_logs_the_bytes_that_left(
        start_server: Callable[..., RunningServer], tmp_path: Path, model: str) -> None:
    # A body in memory (as a cached small file is) goes out with send, not sendfile; one
    # larger than what the kernel's buffers take is cut halfway by the client's reset.
    body = bytes(16 * 1024 * 1024)
    fields = f"Content-Length: {len(body)}\r\n".encode()
    path = tmp_path / "access.log"
    running = start_server(model=model, access_log=str(path), quiet=False)
    running.server.handler = lambda request: Response(200, fields, (body,), len(body))
    got = cut_download(running, "/memory")
    sent = logged_bytes(running, path, "/memory")
    assert got <= sent < len(body)


@pytest.mark.parametrize("model", MODELS)
def test_a_body_cut_short_over_tls_logs_the_bytes_that_left(
        start_server: Callable[..., RunningServer], tmp_path: Path, model: str,
        certificate: Certificate) -> None:
    # The blocking models write TLS records themselves: their count must reach the log too.
    body = bytes(16 * 1024 * 1024)
    fields = f"Content-Length: {len(body)}\r\n".encode()
    path = tmp_path / "access.log"
    running = start_server(model=model, access_log=str(path), quiet=False,
                           tls_context=server_context(str(certificate.cert),
                                                      str(certificate.key)))
    running.server.handler = lambda request: Response(200, fields, (body,), len(body))
    got = cut_download(running, "/memory", tls=client_context(certificate))
    sent = logged_bytes(running, path, "/memory")
    assert got <= sent < len(body)


@pytest.mark.parametrize("model", ["evented", "threaded", "iterative"])
def test_every_protocol_is_handed_one_bound_record_method(start_server, tmp_path, model):
    # Calling an instance costs a __call__ lookup and an argument tuple per response; a bound
    # method made once per server is called by the fast path and costs no memory per connection.
    running = start_server(model=model, access_log=str(tmp_path / "access.log"), quiet=False)
    first = running.server.new_protocol("192.0.2.1")
    second = running.server.new_protocol("192.0.2.2")
    assert inspect.ismethod(first._access_log)
    assert first._access_log is second._access_log
    assert first._access_log.__func__.__name__ == "record"
