"""Worker processes under a master: serving, supervision, reload, port sharing, fleet stats.

Real processes: ``python -m evserver --workers N`` in a child, on port 0. The master prints the
banner (with the port) once every worker has reported ready, so a client can connect at once.
Workers are found through the stats page (each row has its pid) and signalled directly. A worker
is "reaped" once its ``/proc`` entry is gone (a dead child the master did not wait for stays
there as a zombie).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evserver.config import MAX_WORKERS, PORT_SHARING_MODES, available_cores
from evserver.servers.master import HEARTBEAT_TIMEOUT_ENV, START_ATTEMPTS
from tests.support.load import LoadResult, run_clients
from tests.support.processes import ServerProcess
from tests.support.trees import BIG_FILE_SIZE, make_big_file
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="worker processes are tested on Linux (fork, /proc)")

StartProcess = Callable[..., ServerProcess]

STATS = "/-/stats"
HEALTH = "/-/health"
SMALL = b"hello, world\n"
"""``/small.txt`` of the test document root."""

CLIENTS = 4
"""Keep-alive connections of the load during a reload: more than the workers, few enough for a
two-core machine that also runs the server."""

ACCESS_LINE = re.compile(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                         r'"GET /small\.txt HTTP/1\.1" 200 13')


def get(server: ServerProcess, path: str) -> http.client.HTTPResponse:
    """One request on a new connection (the iterative model serves one connection at a time)."""
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def fleet(server: ServerProcess) -> dict[str, Any]:
    """The stats page, read over a new connection. This is the tests' instrument, not the load
    they judge: a reset before any byte of the answer is retried once, as urllib3 retries an
    idempotent request (it was seen once, in a reload in exclusive mode on a machine loaded
    four times over; the load clients' own failures are what the reload tests count)."""
    try:
        return _read_stats(server)
    except ConnectionResetError:
        return _read_stats(server)


def _read_stats(server: ServerProcess) -> dict[str, Any]:
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        connection.request("GET", STATS, headers={"Connection": "close"})
        stats: dict[str, Any] = json.loads(connection.getresponse().read())
        return stats
    finally:
        connection.close()


def pids(server: ServerProcess) -> dict[int, int]:
    """Worker index -> pid, of a fleet not in the middle of a reload."""
    rows = fleet(server)["workers"]
    return {row["index"]: row["pid"] for row in rows}


def all_replaced(server: ServerProcess, old: set[int]) -> bool:
    """Two workers, none of them one of ``old`` (those have been reaped)."""
    rows = fleet(server)["workers"]
    return len(rows) == 2 and not old & {row["pid"] for row in rows}


def wait_for_answers(result: LoadResult, more: int) -> None:
    """Until the clients have had ``more`` answers than now."""
    target = result.requests + more
    wait_until(lambda: result.requests >= target, f"{more} more answers")


def reaped(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evserver", *args], capture_output=True,
                          text=True, timeout=timeout)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--workers", "0"], ["--workers", "-1"], ["--workers", "two"], ["--workers", "1.5"],
    ["--workers", ""], ["--workers", str(MAX_WORKERS + 1)], ["--port-sharing", "inherited"],
    ["--workers", "2", "--port-sharing", "shared"],
    ["--workers", "2", "--port-sharing", "exclusive", "--selector", "poll"],
    ["--workers", "2", "--trace"],
])
def test_bad_worker_settings_give_one_line_and_status_2(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evserver: error:"), result.stderr


@pytest.mark.parametrize("mode", PORT_SHARING_MODES)
def test_a_port_in_use_is_reported_in_one_line_before_anything_forks(mode: str,
                                                                      docroot: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(str(port), "-b", "127.0.0.1", "-d", str(docroot), "--workers", "2",
                         "--port-sharing", mode)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"evserver: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_a_second_server_on_the_port_is_refused_even_with_reuseport(
        start_process: StartProcess) -> None:
    """SO_REUSEPORT would let a second server share the port silently: the probe refuses it."""
    first = start_process("--workers", "1", "-q")
    result = run_cli(str(first.port), "-b", "127.0.0.1", "--workers", "1")
    assert result.returncode == 1 and "Address already in use" in result.stderr
    assert first.stop() == 0


def test_a_worker_that_cannot_start_ends_the_master_with_its_error(docroot: Path,
                                                                    tmp_path: Path) -> None:
    """The access log is a folder: every worker fails as it starts; a few tries, then exit 1."""
    started = time.monotonic()
    result = run_cli("0", "-b", "127.0.0.1", "-d", str(docroot), "--workers", "2",
                     "--access-log", str(tmp_path))
    assert result.returncode == 1, result
    assert time.monotonic() - started < 10  # no fork loop
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"evserver: worker [01] cannot start: .*Is a directory.*", last), last
    assert result.stderr.count("could not start") <= 2 * (START_ATTEMPTS - 1)
    assert "Traceback" not in result.stderr


# -- serving and stopping ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["evented", "threaded", "iterative"])
def test_every_model_serves_under_the_master_and_stops_with_status_0(
        start_process: StartProcess, model: str) -> None:
    server = start_process("--workers", "2", "--model", model, "-q", "--stats-path", STATS)
    assert f"(model {model}," in server.banner
    for _ in range(4):
        assert get(server, "/small.txt").status == 200
    workers = pids(server)
    assert sorted(workers) == [0, 1]
    assert server.stop() == 0
    assert all(reaped(pid) for pid in workers.values())
    assert not any("Traceback" in line for line in server.stderr_lines)


def test_the_banner_names_the_workers_the_mode_and_more_workers_than_cores(
        start_process: StartProcess) -> None:
    count = available_cores() + 1
    server = start_process("--workers", str(count), "--port-sharing", "inherited", "-q")
    wait_until(lambda: any("more workers than cores" in line for line in server.stderr_lines),
               "the banner's line about the cores")
    text = "".join(server.stderr_lines)
    assert f"{count} worker process(es), port sharing inherited" in text
    assert server.stop() == 0


def test_stats_sum_the_workers_and_show_one_row_each(start_process: StartProcess) -> None:
    server = start_process("--workers", "2", "-q", "--stats-path", STATS)
    for _ in range(20):  # new connections: SO_REUSEPORT spreads them over both workers
        get(server, "/small.txt")

    def counted() -> bool:  # each worker publishes its figures once a second
        return sum(row["requests"] for row in fleet(server)["workers"]) >= 20

    wait_until(counted, "every request counted in the workers' rows")
    stats = fleet(server)
    rows = stats["workers"]
    assert [row["index"] for row in rows] == [0, 1]
    for row in rows:
        assert set(row) == {"index", "pid", "uptime_seconds", "restarts", "connections_open",
                            "connections_total", "requests", "body_bytes", "accepted", "loop"}
        assert row["restarts"] == 0 and row["accepted"] > 0  # 20 connections never all hash
        assert set(row["loop"]) == {"iterations", "poll_seconds", "work_seconds"}
    for key in ("requests", "connections_total", "body_bytes", "connections_open"):
        assert stats[key] == sum(row[key] for row in rows), key
    assert stats["responses"]["2xx"] >= 20 and stats["model"] == "evented"
    assert server.stop() == 0


# -- supervision ---------------------------------------------------------------------------------


def test_a_killed_worker_is_replaced_and_reaped(start_process: StartProcess) -> None:
    server = start_process("--workers", "2", "-q", "--stats-path", STATS)
    victim = pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: pids(server).get(0, victim) != victim, "a new worker 0")
    assert [row["restarts"] for row in fleet(server)["workers"]] == [1, 0]
    wait_until(lambda: reaped(victim), "the killed worker reaped")
    assert get(server, "/small.txt").status == 200
    assert server.stop() == 0


def test_a_stopped_worker_is_taken_for_hung_and_replaced(start_process: StartProcess,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HEARTBEAT_TIMEOUT_ENV, "1")
    server = start_process("--workers", "2", "--stats-path", STATS)
    victim = pids(server)[1]
    os.kill(victim, signal.SIGSTOP)  # beats no more, as a loop stuck in a handler
    wait_until(lambda: pids(server).get(1, victim) != victim, "a new worker 1")
    wait_until(lambda: reaped(victim), "the stopped worker killed and reaped")
    assert any(f"(pid {victim}) sent no heartbeat" in line for line in server.stderr_lines)
    assert server.stop() == 0


def test_sigttin_and_sigttou_add_and_remove_a_worker(start_process: StartProcess) -> None:
    server = start_process("--workers", "1", "-q", "--stats-path", STATS)
    server.process.send_signal(signal.SIGTTIN)
    wait_until(lambda: sorted(pids(server)) == [0, 1], "a second worker")
    leaving = pids(server)[1]
    server.process.send_signal(signal.SIGTTOU)
    wait_until(lambda: sorted(pids(server)) == [0] and reaped(leaving), "back to one worker")
    assert server.stop() == 0


def test_a_second_stop_signal_kills_every_worker_at_once(start_process: StartProcess,
                                                         docroot: Path) -> None:
    make_big_file(docroot / "big.bin")
    server = start_process("--workers", "2", "--stats-path", STATS, "--drain-timeout", "60")
    workers = pids(server)
    with socket.create_connection(server.address, timeout=10) as stalled:
        stalled.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        assert stalled.recv(100).startswith(b"HTTP/1.1 200")  # then we read no more: the
        server.process.send_signal(signal.SIGTERM)            # drain would wait 60 s
        wait_until(lambda: any("to drain" in line for line in server.stderr_lines),
                   "the master began the drain")
        assert server.stop(signal.SIGTERM, timeout=10) == 128 + signal.SIGTERM
    assert all(reaped(pid) for pid in workers.values())


def test_a_sigterm_to_the_whole_process_group_drains_like_one_to_the_master(
        start_process: StartProcess, docroot: Path) -> None:
    """systemd signals every process of a service: a worker then hears SIGTERM twice (from
    systemd and from the master), which must not cut the transfer in flight."""
    digest = make_big_file(docroot / "big.bin")
    server = start_process("--workers", "2", "-q", wrapper=("setsid",))  # its own group
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"HTTP/1.1 200")
        os.killpg(server.pid, signal.SIGTERM)
        while stream.readline() != b"\r\n":
            pass
        assert hashlib.sha256(stream.read(BIG_FILE_SIZE)).hexdigest() == digest
        stream.close()
    assert server.process.wait(20) == 0  # stopped by that one signal: no other is sent


# -- reload ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "mode"), [("evented", mode) for mode in PORT_SHARING_MODES]
                         + [("threaded", "reuseport")])
def test_a_reload_under_load_fails_no_request(start_process: StartProcess, model: str,
                                              mode: str) -> None:
    """SIGHUP twice while keep-alive clients ask without pause: every worker is replaced each
    time, and no request fails (a request that crossed the close of an idle keep-alive
    connection is retried once, as browsers and urllib3 do; see tests/support/load.py)."""
    server = start_process("--workers", "2", "--model", model, "--port-sharing", mode, "-q",
                           "--stats-path", STATS)
    result, stop = LoadResult(), threading.Event()
    clients = run_clients(server.address, "/small.txt", SMALL, CLIENTS, stop, result)
    try:
        for _ in range(2):
            before = set(pids(server).values())
            wait_for_answers(result, 100)
            server.process.send_signal(signal.SIGHUP)
            wait_until(lambda old=before: all_replaced(server, old), "every worker replaced")
        wait_for_answers(result, 100)
    finally:
        stop.set()
        for client in clients:
            client.join(10)
    print(f"reload under load, {model} {mode}: {result.requests} requests, {result.retried} "
          f"retried after a keep-alive close, {len(result.failures)} failed")
    assert result.failures == []
    assert server.stop() == 0


def test_a_worker_handing_over_answers_503_with_connection_close(
        start_process: StartProcess) -> None:
    server = start_process("--workers", "1", "-q", "--health-path", HEALTH)
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    connection.request("GET", HEALTH)
    response = connection.getresponse()
    assert (response.status, response.read(), response.will_close) == (200, b"ok\n", False)
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:  # the same connection, busy: the old worker answers it until it hands over
        connection.request("GET", HEALTH)
        response = connection.getresponse()
        body = response.read()
        if response.status == 503:
            break
        assert response.status == 200 and time.monotonic() < deadline
        time.sleep(0.01)
    assert body == b"draining\n" and response.will_close
    assert response.getheader("Cache-Control") == "no-store"
    connection.close()
    assert get(server, HEALTH).status == 200  # the successor
    assert server.stop() == 0


# -- the access log --------------------------------------------------------------------------


@pytest.mark.parametrize("destination", ["file", "standard error"])
def test_access_log_lines_of_several_workers_never_mix(start_process: StartProcess,
                                                       tmp_path: Path, destination: str) -> None:
    """Enough load that both workers flush lines by the hundred at once (more than PIPE_BUF
    bytes a flush): every line stays whole, and there is one per answer."""
    log_file = tmp_path / "access.log"
    args = ["--access-log", str(log_file)] if destination == "file" else []
    server = start_process("--workers", "2", *args)
    result, stop = LoadResult(), threading.Event()
    clients = run_clients(server.address, "/small.txt", SMALL, CLIENTS, stop, result)
    try:
        wait_for_answers(result, 3000)
    finally:
        stop.set()
        for client in clients:
            client.join(10)
    assert result.failures == []
    assert server.stop() == 0
    if destination == "file":
        lines = log_file.read_text().splitlines()
    else:
        lines = [line.rstrip("\n") for line in server.stderr_lines
                 if not re.match(r"\d{4}-\d\d-\d\d |evserver", line)]
    bad = [line for line in lines if not ACCESS_LINE.fullmatch(line)]
    assert bad == [] and len(lines) == result.requests
