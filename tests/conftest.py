"""Shared fixtures: a document root, and running servers of every model (in-process or not).

Every end-to-end test that asks for ``server`` runs once per concurrency model, and the evented
model once per selector available here: one parametrized fixture, not copies. A test that only
makes sense for some models asks for ``model_name`` and says why it skips the others.

Servers bind 127.0.0.1 port 0 and are always stopped (the fixtures' finalizers shut them down
even when a test fails); nothing here sleeps to wait for readiness: the listener is bound and
listening before the fixture returns, so a client's connect succeeds at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from evserver.config import ServerConfig
from evserver.servers import BaseServer, make_server

SELECTORS_HERE = [name for name, cls in (("epoll", "EpollSelector"), ("poll", "PollSelector"),
                                          ("select", "SelectSelector"))
                  if hasattr(selectors, cls)]
MODEL_PARAMS = [("evented", s) for s in SELECTORS_HERE] + [("threaded", "auto"),
                                                           ("iterative", "auto")]
MODEL_IDS = [f"evented-{s}" if m == "evented" else m for m, s in MODEL_PARAMS]

STOP_TIMEOUT = 30.0
"""Seconds a server may take to stop before the test fails (drain timeouts are shorter)."""

BIG_FILE_SIZE = 20 * 1024 * 1024
"""The 20 MiB file of issue 4's tests: large enough that sendfile runs many partial rounds."""


@dataclass
class RunningServer:
    """A server serving in a background thread of this process."""

    server: BaseServer
    thread: threading.Thread
    root: Path

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    @property
    def port(self) -> int:
        return self.server.address[1]

    @property
    def model(self) -> str:
        return self.server.model

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(STOP_TIMEOUT)
            assert not self.thread.is_alive(), f"{self.model} server did not stop"
            self.server.server_close()


@dataclass
class ServerProcess:
    """A server running as ``python -m evserver`` in a child process."""

    process: subprocess.Popen[str]
    port: int
    root: Path
    banner: str
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.process.stderr:
                self.process.stderr.close()


def make_docroot(root: Path, big: bool = False) -> Path:
    """The standard tree the end-to-end tests use."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "index.html").write_text("<!DOCTYPE html><title>home</title><p>evserver test root\n")
    (root / "small.txt").write_text("hello, world\n")
    (root / "kib.bin").write_bytes(bytes(range(256)) * 4)
    (root / "medium.bin").write_bytes(os.urandom(300_000))
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "a.txt").write_text("in a folder\n")
    (root / "noindex").mkdir(exist_ok=True)
    (root / "noindex" / "x.css").write_text("p { color: red }\n")
    (root / "with space é.txt").write_text("spaces and UTF-8\n")
    if big:
        make_big_file(root / "big.bin")
    return root


def make_big_file(path: Path, size: int = BIG_FILE_SIZE) -> str:
    """Write a file of pseudo-random bytes (cheaply: a 1 MiB block repeated with a counter)."""
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for n in range(size // len(block)):
            piece = n.to_bytes(8, "big") + block[8:]
            f.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_config(root: Path, **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {"root": str(root), "host": "127.0.0.1", "port": 0,
                                "quiet": True, "access_log": None}
    settings.update(overrides)
    return ServerConfig(**settings)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    return make_docroot(tmp_path / "root")


@pytest.fixture
def start_server(docroot: Path) -> Iterator[Callable[..., RunningServer]]:
    """A factory: ``start_server(root=None, model="evented", selector="auto", **config)``."""
    running: list[RunningServer] = []

    def start(root: Path | None = None, **overrides: Any) -> RunningServer:
        server = make_server(test_config(root or docroot, **overrides))
        thread = threading.Thread(target=server.serve_forever, name=f"{server.model}-server",
                                  daemon=True)
        thread.start()
        handle = RunningServer(server, thread, root or docroot)
        running.append(handle)
        return handle

    yield start
    for handle in reversed(running):
        handle.stop()


@pytest.fixture(params=MODEL_PARAMS, ids=MODEL_IDS)
def model_name(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(model, selector)``: every model, and the evented one with every selector here."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def server(start_server: Callable[..., RunningServer], model_name: tuple[str, str],
           ) -> RunningServer:
    """A running server of each model over the standard document root."""
    model, selector = model_name
    return start_server(model=model, selector=selector)


_BANNER_ADDRESS = re.compile(r" on http://(\[[^\]]+\]|[^:/]+):(\d+)/")


@pytest.fixture
def start_process(docroot: Path) -> Iterator[Callable[..., ServerProcess]]:
    """A factory that runs ``python -m evserver 0 -b 127.0.0.1 -d ROOT ARGS...`` in a child.

    ``nofile`` lowers the child's RLIMIT_NOFILE before the server starts (set in the child
    itself: ``preexec_fn`` is unsafe in a process with threads); ``wrapper`` is a command
    prefix such as ``["setpriv", ...]``; ``required=False`` returns ``None`` instead of failing
    when the child exits before its banner.
    """
    running: list[ServerProcess] = []

    def start(*args: str, root: Path | None = None, nofile: int | None = None,
              wrapper: tuple[str, ...] = (), required: bool = True) -> ServerProcess | None:
        folder = root or docroot
        server_args = ["0", "-b", "127.0.0.1", "-d", str(folder), *args]
        if nofile is None:
            command = [sys.executable, "-m", "evserver", *server_args]
        else:
            code = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
                    f"({nofile}, {nofile})); sys.argv = {['evserver', *server_args]!r}; "
                    "runpy.run_module('evserver', run_name='__main__', alter_sys=True)")
            command = [sys.executable, "-c", code]
        process = subprocess.Popen([*wrapper, *command], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        lines = []
        for line in process.stderr:  # the banner is the first line that names the address
            lines.append(line)
            match = _BANNER_ADDRESS.search(line)
            if match:
                handle = ServerProcess(process, int(match.group(2)), folder, line, lines)
                running.append(handle)
                # Keep reading the server's log, or a chatty server blocks on a full pipe.
                threading.Thread(target=_collect, args=(process.stderr, lines),
                                 daemon=True).start()
                return handle
        process.wait()
        process.stderr.close()
        if not required:
            return None
        raise AssertionError(f"server exited ({process.returncode}): {''.join(lines)}")

    yield start  # type: ignore[misc]
    for handle in running:
        handle.stop(signal.SIGKILL if handle.process.poll() is None else signal.SIGTERM)


def _collect(stream: Any, lines: list[str]) -> None:
    try:
        for line in stream:
            lines.append(line)
    except (OSError, ValueError):
        pass  # the stream was closed by stop()


def raw_exchange(address: tuple[str, int], data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection, half-close, and read until the server closes."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
