"""Tests of the experiment tools that need no load generator: parsing, trees, holding, tables.

Servers here are stdlib ``http.server`` instances on port 0 in a thread, always shut down; the
tests wait on sockets and events, never on sleeps, and assert nothing about speed.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import docroot, holdconns, procstat, report, servers, wrkrun

WRK_OUTPUT = """\
Running 2s test @ http://127.0.0.1:8000/bench/1k.bin
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms  312.05us   9.43ms   90.40%
    Req/Sec    44.13k     3.55k   47.97k    80.00%
  Latency Distribution
     50%    1.20ms
     75%    1.26ms
     90%    1.39ms
     99%  554.00us
  89496 requests in 2.01s, 109.10MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  44548.66
Transfer/sec:     54.28MB
"""


def test_wrk_output_is_parsed_with_units() -> None:
    result = wrkrun.parse(WRK_OUTPUT)
    assert result.requests == 89496
    assert result.duration == pytest.approx(2.01)
    assert result.requests_per_second == pytest.approx(44548.66)
    assert result.transfer_per_second == pytest.approx(54.28 * 1024**2)
    assert result.bytes_read == pytest.approx(109.10 * 1024**2)
    assert result.latency_avg == pytest.approx(1.21e-3)
    assert result.latency_max == pytest.approx(9.43e-3)
    assert result.percentiles == pytest.approx({"50": 1.2e-3, "75": 1.26e-3, "90": 1.39e-3,
                                                "99": 554e-6})
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert result.non_2xx_3xx == 5
    assert result.errors == 10


def test_wrk_output_without_errors_has_none() -> None:
    text = "\n".join(line for line in WRK_OUTPUT.splitlines()
                     if "errors" not in line and "Non-2xx" not in line)
    assert wrkrun.parse(text).errors == 0


def test_wrk_command_pins_and_closes() -> None:
    argv = wrkrun.command("http://127.0.0.1:1/x", 64, 2, close=True, core=1)
    if argv[0] == "taskset":
        assert argv[:3] == ["taskset", "-c", "1"]
    assert "-c64" in argv and "-t1" in argv and "--latency" in argv and "-d2s" in argv
    assert argv[argv.index("-H") + 1] == "Connection: close"
    assert argv[-1] == "http://127.0.0.1:1/x"


def test_docroot_is_deterministic_and_reused(tmp_path: Path) -> None:
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    manifest = docroot.generate(first, seed=7, profile_name="quick")
    docroot.generate(second, seed=7, profile_name="quick")
    for entry in manifest["files"]:
        relative = entry["path"].lstrip("/")
        with open(os.path.join(first, relative), "rb") as a, \
                open(os.path.join(second, relative), "rb") as b:
            data = a.read()
            assert data == b.read()
        assert len(data) == entry["size"]
    assert os.path.getsize(os.path.join(first, "bench", "1k.bin")) == 1024
    assert os.path.getsize(os.path.join(first, "bench", "64k.bin")) == 64 * 1024
    assert any(entry["path"].count("/") >= 4 for entry in manifest["files"])  # nested folders
    with open(os.path.join(first, "index.html")) as index_file:
        index = index_file.read()
    assert all(entry["path"] in index for entry in manifest["files"][1:])
    assert docroot.load_manifest(first) == manifest


def test_docroot_is_regenerated_when_damaged_or_reseeded(tmp_path: Path) -> None:
    root = str(tmp_path / "tree")
    docroot.ensure(root, seed=1, profile_name="quick")
    victim = os.path.join(root, "bench", "4k.bin")
    with open(victim, "ab") as out:
        out.write(b"x")
    assert docroot.load_manifest(root) is None
    docroot.ensure(root, seed=1, profile_name="quick")
    assert os.path.getsize(victim) == 4096
    other = docroot.ensure(root, seed=2, profile_name="quick")
    assert other["seed"] == 2


def test_different_seeds_make_different_trees() -> None:
    plan_a = docroot._file_plan(1, docroot.PROFILES["full"])
    plan_b = docroot._file_plan(2, docroot.PROFILES["full"])
    assert plan_a != plan_b
    sizes = [size for _, size in plan_a]
    assert min(sizes) >= 1024 and max(sizes) == 16 * 1024 * 1024


class _KeepAliveHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connections can be held

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def keepalive_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    root = str(tmp_path / "root")
    docroot.generate(root, seed=3, profile_name="quick")

    def handler(*args: object) -> _KeepAliveHandler:
        return _KeepAliveHandler(*args, directory=root)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_holder_holds_every_connection_and_refreshes(keepalive_server: tuple[str, int]) -> None:
    host, port = keepalive_server
    holder = holdconns.Holder(host, port, 20, "/bench/1k.bin")
    try:
        result = holder.open_all(timeout=20)
        assert result.held == 20 and result.failed == 0
        assert len(holder.conns) == 20
        result = holder.hold(seconds=0.6, refresh_interval=0.2)
        assert result.refreshes >= 20  # every connection asked again at least once
        assert result.closed_by_server == 0
    finally:
        holder.close()


def test_holder_counts_a_server_that_closes(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    docroot.generate(root, seed=3, profile_name="quick")

    class OneShot(_KeepAliveHandler):
        protocol_version = "HTTP/1.0"  # like `python -m http.server`: closes after each answer

    def handler(*args: object) -> OneShot:
        return OneShot(*args, directory=root)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = holdconns.hold_connections("127.0.0.1", server.server_address[1], 5,
                                            "/bench/1k.bin", open_timeout=20)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.held == 0
    assert result.closed_by_server == 5


def test_content_length_is_found_case_insensitively() -> None:
    head = b"HTTP/1.1 200 OK\r\nserver: x\r\ncontent-LENGTH: 42\r\n"
    assert holdconns._content_length(head) == 42
    assert holdconns._content_length(b"HTTP/1.1 304 Not Modified\r\nETag: x") == 0
    assert holdconns._persistent(b"HTTP/1.1 200 OK\r\nContent-Length: 1")
    assert not holdconns._persistent(b"HTTP/1.1 200 OK\r\nConnection: close")
    assert not holdconns._persistent(b"HTTP/1.0 200 OK\r\nContent-Length: 1")
    assert holdconns._persistent(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive")


def test_process_tree_sample_of_this_process() -> None:
    sample = procstat.sample_tree(os.getpid())
    assert sample is not None
    assert sample.rss_kib > 0 and sample.threads >= 1 and sample.fds >= 3
    assert sample.cpu_seconds > 0
    assert os.getpid() in procstat.descendants(os.getpid())
    assert procstat.sample_tree(2**22 + 12345) is None  # above pid_max: no such process


def test_summary_medians_ranges_and_ratios() -> None:
    records = [
        {"case": "c", "server": "a", "rps": 100.0, "p99_ms": 1.0, "connections": 1, "group": "g"},
        {"case": "c", "server": "a", "rps": 300.0, "p99_ms": 3.0, "connections": 1, "group": "g"},
        {"case": "c", "server": "a", "rps": 200.0, "p99_ms": None, "connections": 1, "group": "g"},
        {"case": "c", "server": "b", "rps": 50.0, "connections": 1, "group": "g"},
    ]
    rows = report.summarise(records, ("rps", "p99_ms", "cpu_seconds"))
    a, b = rows
    assert (a["rps"], a["rps_min"], a["rps_max"], a["n"]) == (200.0, 100.0, 300.0, 3)
    assert a["p99_ms"] == 2.0  # the missing value is skipped, not counted as zero
    assert a["cpu_seconds"] is None and b["p99_ms"] is None
    assert report.ratio(rows, "c", "a", "b", "rps") == 4.0
    assert report.ratio(rows, "c", "a", "nobody", "rps") is None
    assert report.fmt_range(a, "rps") == "200 (100-300)"
    assert report.fmt(12345.6) == "12,346"


def test_points_table_has_a_ratio_column_per_baseline() -> None:
    records = [{"case": "c", "server": name, "rps": value, "connections": 1, "group": "g"}
               for name, value in (("evented", 900.0), ("nginx", 1000.0))]
    rows = report.summarise(records, report.POINT_METRICS)
    table = report.points_table(rows, ["nginx"])
    lines = table.splitlines()
    assert lines[0].endswith("x nginx |")
    assert lines[2].startswith("| c | evented | 900 |") and lines[2].endswith("| 0.90 |")


def test_records_are_written_as_json_and_csv(tmp_path: Path) -> None:
    rundir = str(tmp_path)
    report.write_records(rundir, "points", [{"a": 1, "nested": {"x": 2}, "raw": "long"},
                                            {"a": 2, "b": 3}])
    with open(os.path.join(rundir, "points.csv")) as csv_file:
        csv_text = csv_file.read().splitlines()
    assert csv_text[0] == "a,nested,b"  # "raw" wrk output stays in the JSON only
    assert '"{""x"": 2}"' in csv_text[1]
    with open(os.path.join(rundir, "points.json")) as json_file:
        assert '"raw": "long"' in json_file.read()


def test_nginx_config_stays_inside_the_run_folder(tmp_path: Path) -> None:
    text = servers.nginx_config(str(tmp_path), "/tmp/run/nginx", 12345)
    assert "listen 127.0.0.1:12345" in text
    assert "worker_processes 1;" in text and "sendfile on;" in text
    assert "access_log off;" in text and "daemon off;" in text
    assert "keepalive_requests 100000;" in text
    settings = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "/etc/nginx" not in settings and "/var/" not in settings
    assert "${" not in text


def test_http_server_peer_starts_and_stops(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    docroot.generate(root, seed=1, profile_name="quick")
    server = servers.start(servers.ServerSpec("http.server", "http.server"), root,
                           str(tmp_path), core=None)
    try:
        assert servers._accepts(server.port)
        sample = procstat.sample_tree(server.pid)
        assert sample is not None and sample.sockets >= 1
    finally:
        server.stop()
    assert server.process.poll() is not None


def test_stopping_a_process_that_has_already_ended() -> None:
    """A server that exited on its own (a refused option) is reaped by the stop, not an error."""
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"],
                               start_new_session=True)
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # ended, not yet reaped
    assert servers.stop_process(process) == 2


def test_targets_table_judges_each_model_against_nginx() -> None:
    def point(case: str, server: str, rps: float, p99: float) -> dict[str, object]:
        return {"case": case, "server": server, "rps": rps, "p99_ms": p99, "connections": 64,
                "group": "g", "transfer_mib_s": rps, "cpu_s_per_gib": 1.0}

    records = [point("1k keep-alive c64", "nginx", 1000, 1.0),
               point("1k keep-alive c64", "evented", 850, 3.0),
               point("1k keep-alive c64", "threaded", 600, 9.0),
               point("1k access log c64", "evented", 1000, 1.0),
               point("1k access log c64", "evented+log", 800, 1.0)]
    idle = [{"case": "idle 10", "server": "evented", "connections": 10, "held": 10,
             "rss_growth_kib_per_conn": 1.5, "probe_ms_median": 0.5, "probe_ms_max": 2.0,
             "seconds_to_open": 0.1}]
    table = report.targets_table(report.summarise(records, report.POINT_METRICS),
                                 report.summarise(idle, report.IDLE_METRICS),
                                 models=("evented", "threaded"))
    cells = {line.split(" | ")[0].lstrip("| "): [cell.strip(" |") for cell in
                                                   line.split(" | ")[1:]]
             for line in table.splitlines()[2:]}
    lines = {label: row[0] for label, row in cells.items()}  # the evented column
    assert cells["1k keep-alive c64: req/s >= 0.55x nginx (threaded)"] == ["-", "0.60 met"]
    assert cells["1k keep-alive c64: req/s >= 1.00x nginx (evented)"][1] == "-"
    assert lines["1k keep-alive c64: req/s >= 1.00x nginx (evented)"] == "0.85 MISSED"
    assert lines["1k keep-alive c64: p99 <= 2x nginx"] == "3.00 MISSED"
    assert lines["access log on vs -q: >= 0.95 (evented only)"] == "0.80 MISSED"
    assert lines["idle 10: all held"] == "10 met"
    assert lines["idle: RSS growth <= 1 KiB per connection (evented)"] == "1.50 MISSED"
    assert lines["1k new conn c64: req/s >= 0.90x nginx"] == "-"  # not measured: no verdict
