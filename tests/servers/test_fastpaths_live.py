"""The hot path's speed shortcuts that only a running server shows, on every model.

The batched access log must still reach its file when traffic stops, and a new connection that
never speaks must get the header timeout, not the idle one, however cheaply the per-connection
timers are kept. The shortcuts the protocol alone shows are in tests/unit/test_fastpaths.py.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.servers import MODEL_PARAMS, RunningServer
from tests.support.waiting import wait_until


@pytest.mark.parametrize(("model", "selector"), MODEL_PARAMS[:1] + MODEL_PARAMS[-2:])
def test_access_log_lines_reach_the_file_while_the_server_is_idle(
        start_server: Callable[..., RunningServer], tmp_path: Path, model: str,
        selector: str) -> None:
    log_path = tmp_path / "access.log"
    server = start_server(model=model, selector=selector, quiet=False,
                          access_log=str(log_path), log_format="combined")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/small.txt", headers={"User-Agent": "fastpath-test"})
    assert conn.getresponse().read() == b"hello, world\n"

    def logged() -> str:
        return log_path.read_text() if log_path.exists() else ""

    # No more traffic: the batched log must still be written within about a second.
    wait_until(lambda: "fastpath-test" in logged(), "the access log line reached the file")
    assert '"GET /small.txt HTTP/1.1" 200 13 "-" "fastpath-test"' in logged()
    conn.close()


def test_a_client_that_never_speaks_is_closed_by_the_header_timeout(
        start_server: Callable[..., RunningServer], model_name: tuple[str, str]) -> None:
    """Every model gives a silent new connection header_timeout, not idle_timeout, to start."""
    model, selector = model_name
    server = start_server(model=model, selector=selector, header_timeout=0.3, idle_timeout=60)
    with socket.create_connection(server.address, timeout=20) as silent:
        assert silent.recv(1024) == b""  # closed without a word, long before idle_timeout
