"""Shared fixtures: a document root, and running servers of every model (in-process or not).

Only fixtures live here; what they are built on (server starters, trees, clients, the strict
response reader) is in ``tests/support/``, which tests and tools import directly.

Every end-to-end test that asks for ``server`` runs once per concurrency model, and the evented
model once per selector available here: one parametrized fixture, not copies. A test that only
makes sense for some models asks for ``model_name`` and says why it skips the others.

Servers bind 127.0.0.1 port 0 and are always stopped (the fixtures' finalizers shut them down
even when a test fails); nothing here sleeps to wait for readiness: the listener is bound and
listening before the fixture returns, so a client's connect succeeds at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ServerDidNotStart, ServerProcess, spawn_server
from tests.support.servers import MODEL_IDS, MODEL_PARAMS, RunningServer, start_in_thread
from tests.support.tls import INSTALL_OPENSSL, Certificate, make_certificate, openssl_missing
from tests.support.trees import make_docroot


def pytest_configure(config: pytest.Config) -> None:
    """Children start with Ctrl-C at its default, even when the suite does not.

    A shell starts a background job (``pytest &``, ``nohup ... &`` in a script) with SIGINT
    ignored, and children inherit an ignored signal: a tool would then never see the SIGINT
    that a test sends as Ctrl-C, and the test would wait for nothing. A handled signal, by
    contrast, is back at its default in a child after ``exec``; so the suite handles SIGINT
    itself, as Python does in a foreground process."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def docroot(tmp_path: Path) -> Path:
    return make_docroot(tmp_path / "root")


@pytest.fixture
def start_server(docroot: Path) -> Iterator[Callable[..., RunningServer]]:
    """A factory: ``start_server(root=None, model="evented", selector="auto", **config)``."""
    running: list[RunningServer] = []

    def start(root: Path | None = None, **overrides: Any) -> RunningServer:
        handle = start_in_thread(root or docroot, **overrides)
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


@pytest.fixture
def start_process(docroot: Path) -> Iterator[Callable[..., ServerProcess | None]]:
    """A factory that runs ``python -m evserver 0 -b 127.0.0.1 -d ROOT ARGS...`` in a child.

    ``nofile`` and ``wrapper`` are :func:`tests.support.processes.spawn_server`'s;
    ``required=False`` returns ``None`` instead of failing when the child exits before its
    banner.
    """
    running: list[ServerProcess] = []

    def start(*args: str, root: Path | None = None, nofile: int | None = None,
              wrapper: tuple[str, ...] = (), required: bool = True) -> ServerProcess | None:
        try:
            handle = spawn_server(root or docroot, *args, nofile=nofile, wrapper=wrapper)
        except ServerDidNotStart:
            if required:
                raise
            return None
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.stop(signal.SIGKILL if handle.process.poll() is None else signal.SIGTERM)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (made once)."""
    if openssl_missing():
        pytest.skip(INSTALL_OPENSSL)
    return make_certificate(tmp_path_factory.mktemp("tls"))
