"""The benchmark's TLS case (``experiment.py bench --tls``) without measuring anything: its plan,
the servers it starts (evserver and nginx over HTTPS with one certificate), their URLs and
stats, and the report's two TLS tables. A quick run with wrk is README's (tests/tooling/
test_experiment_readme.py, among the slow tests).
"""

from __future__ import annotations

import http.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evserver.net.tls import server_context
from tests.support.servers import RunningServer
from tests.support.tls import Certificate, client_context
from tools import docroot, experiment, procstat, report, servers


def plan_of(*argv: str) -> experiment.Plan:
    return experiment.make_plan(experiment.parser().parse_args(list(argv)))


def test_bench_tls_measures_evented_and_nginx_each_over_http_and_https(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "nginx_binary", lambda: "/usr/sbin/nginx")
    plan = plan_of("bench", "--tls", "--quick", "--docroot", str(tmp_path / "tree"),
                   "--out", str(tmp_path / "run"))
    assert plan.tls and plan.command == "bench"
    assert [(spec.label, spec.tls) for spec in plan.specs] == [
        ("evented", False), ("evented+tls", True), ("nginx", False), ("nginx+tls", True)]
    assert [case.name for case in plan.cases] == [
        "1k keep-alive c64", "1m keep-alive c8", "1k new conn c64"]
    assert "--tls-no-tickets" in plan.specs[1].extra_args  # full handshakes, as nginx's
    plain = plan_of("bench", "--quick", "--docroot", str(tmp_path / "tree"),
                    "--out", str(tmp_path / "run2"))
    assert not plain.tls and not any(spec.tls for spec in plain.specs)


def test_nginx_over_tls_gets_the_certificate_and_evservers_settings(tmp_path: Path) -> None:
    text = servers.nginx_config(str(tmp_path), "/tmp/run/nginx-tls", 12345,
                                ("/tmp/run/tls/server-cert.pem", "/tmp/run/tls/server-key.pem"))
    assert "listen 127.0.0.1:12345 ssl backlog=" in text
    for line in ("ssl_certificate /tmp/run/tls/server-cert.pem;",
                 "ssl_certificate_key /tmp/run/tls/server-key.pem;",
                 "ssl_protocols TLSv1.2 TLSv1.3;", "ssl_session_tickets off;"):
        assert line in text
    assert "${" not in text
    plain = servers.nginx_config(str(tmp_path), "/tmp/run/nginx", 12345)
    assert " ssl" not in plain and "ssl_" not in plain


def test_a_tls_spec_is_checked_with_a_certificate_made_for_the_check() -> None:
    spec = servers.evserver_spec("evented", *servers.EVSERVER_TLS_ARGS, label="evented+tls")
    servers.check_specs([spec])  # evserver would exit 2 if the files were missing
    broken = servers.evserver_spec("evented", "--tls-cert", "/nonexistent/cert.pem")
    with pytest.raises(servers.SpecError, match="--tls-cert: cannot read"):
        servers.check_specs([broken])


@pytest.mark.skipif(servers.nginx_binary() is None, reason="nginx is not installed; CI has it")
def test_both_https_servers_start_and_answer(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    docroot.generate(root, seed=1, profile_name="quick")
    rundir = str(tmp_path / "run")
    cert, _ = servers.make_tls_files(rundir)
    context = client_context(Path(cert))
    context.check_hostname = False  # the run's certificate names localhost and 127.0.0.1
    for spec in (servers.evserver_spec("evented", *servers.EVSERVER_TLS_ARGS,
                                       label="evented+tls"),
                 servers.peer_spec(servers.NGINX_TLS)):
        server = servers.start(spec, root, rundir, core=None)
        try:
            assert server.url("/").startswith("https://")
            assert experiment.tls_session(server.port).startswith("TLSv1.3 ")
            conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10,
                                               context=context)
            conn.request("GET", "/")
            status = conn.getresponse().status
            conn.close()
            # An answer over HTTPS is the point; nginx's worker (nobody, when run as root)
            # may not enter pytest's private temporary folder, and then says 403.
            assert status == 200 or (spec.kind == servers.NGINX_TLS and status == 403)
        finally:
            server.stop()


def test_stats_are_fetched_over_https(start_server: Callable[..., RunningServer],
                                      certificate: Certificate) -> None:
    server = start_server(stats_path="/-/stats",
                          tls_context=server_context(str(certificate.cert), str(certificate.key)))
    stats = procstat.fetch_stats(server.url("/-/stats"), timeout=5)
    assert stats is not None and stats["model"] == "evented"


def row(case: str, server: str, file: str, **metrics: float) -> dict[str, Any]:
    return {"case": case, "server": server, "file": file, "n": 1, **metrics}


ROWS = [
    row("1k keep-alive c64", "evented", "1k", rps=40000.0, cpu_s_per_gib=5.0),
    row("1k keep-alive c64", "evented+tls", "1k", rps=30000.0, cpu_s_per_gib=7.0),
    row("1k keep-alive c64", "nginx", "1k", rps=50000.0),
    row("1k keep-alive c64", "nginx+tls", "1k", rps=40000.0),
    row("16m keep-alive c8", "evented", "16m", transfer_mib_s=1600.0, cpu_s_per_gib=0.3),
    row("16m keep-alive c8", "evented+tls", "16m", transfer_mib_s=700.0, cpu_s_per_gib=1.4),
    row("16m keep-alive c8", "nginx+tls", "16m", transfer_mib_s=1000.0, cpu_s_per_gib=1.0),
    row("1k new conn c64", "evented+tls", "1k", rps=900.0),
    row("1k new conn c64", "nginx+tls", "1k", rps=1000.0),
]


def test_the_tls_targets_are_ratios_to_nginx_over_tls() -> None:
    lines = {line.split(" | ")[0].strip("| "): line.split(" | ")[1].strip(" |")
             for line in report.tls_targets_table(ROWS).splitlines()[2:]}
    assert lines["1k keep-alive c64: req/s >= 0.70x nginx"] == "0.75 met"
    assert lines["16m keep-alive c8: throughput >= 0.80x nginx"] == "0.70 MISSED"
    assert lines["1k new conn c64 (a full handshake each): req/s >= 0.80x nginx"] == "0.90 met"
    assert lines["16m keep-alive c8: CPU s/GiB, evented+tls / nginx+tls"] == "1.40 / 1.00"
    quick = report.tls_targets_table(ROWS, verdicts=False)
    assert "met" not in quick and "MISSED" not in quick


def test_what_tls_costs_puts_each_server_beside_itself() -> None:
    table = report.tls_cost_table(ROWS).splitlines()
    assert "| 1k keep-alive c64 | evented | 40,000 | 30,000 | 0.75 | 5.00 | 7.00 |" in table
    assert "| 16m keep-alive c8 | evented | 1600.0 | 700.0 | 0.44 | 0.30 | 1.40 |" in table
    assert not any("| nginx |" in line and "16m" in line for line in table)  # no plain nginx row
    assert report.tls_sessions_line({"a": "TLSv1.3 X http/1.1"}) == "a: TLSv1.3 X http/1.1"

