"""The stats path's two answers, the metrics path, and listings, over real sockets, every model.

What a browser gets (the dashboard) and what every other client gets (JSON) from the same path;
the Prometheus text as a scraper reads it, agreeing with the JSON; a listing's query string and
``Accept`` arriving through the protocol; the command line's checks of the two paths.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from evserver.cli import parse_config
from tests.support.servers import RunningServer

BROWSER_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                  "image/webp,*/*;q=0.8")


def fetch(server: RunningServer, target: str, method: str = "GET",
          **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, target, headers={name.replace("_", "-"): value
                                              for name, value in headers.items()})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


@pytest.fixture
def watched(start_server: Callable[..., RunningServer],
            model_name: tuple[str, str]) -> RunningServer:
    model, selector = model_name
    return start_server(model=model, selector=selector, stats_path="/-/stats",
                        metrics_path="/-/metrics")


def test_a_browser_gets_the_dashboard(watched: RunningServer) -> None:
    status, headers, body = fetch(watched, "/-/stats", accept=BROWSER_ACCEPT)
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["vary"] == "Accept" and headers["cache-control"] == "no-store"
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    page = body.decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<canvas") == 5
    # self-contained: nothing to fetch but the JSON from its own address
    assert not re.search(r"\b(?:src|href|srcset)\s*=", page)
    assert "@import" not in page and "url(" not in page
    assert not re.search(r"https?:|//[\w-]+\.", page)
    assert 'fetch(location.pathname' in page
    head_status, head_headers, head_body = fetch(watched, "/-/stats", "HEAD",
                                                 accept=BROWSER_ACCEPT)
    assert head_status == 200 and head_body == b""
    assert head_headers["content-length"] == str(len(body))


@pytest.mark.parametrize("accept", [None, "*/*", "application/json",
                                    "text/html;q=0.5, application/json", "nonsense/;q=x"])
def test_everyone_else_gets_json(watched: RunningServer, accept: str | None) -> None:
    status, headers, body = fetch(watched, "/-/stats",
                                  **({} if accept is None else {"accept": accept}))
    assert status == 200
    assert headers["content-type"] == "application/json" and headers["vary"] == "Accept"
    stats = json.loads(body)
    assert stats["model"] == watched.model and "requests" in stats


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_the_metrics_path_agrees_with_the_json(watched: RunningServer) -> None:
    for target in ("/small.txt", "/nope", "/kib.bin"):
        fetch(watched, target)
    status, headers, body = fetch(watched, "/-/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    found = families(body.decode("utf-8"))
    assert found["evserver_info"].samples[0].labels["model"] == watched.model
    by_class = {s.labels["class"]: s.value for s in found["evserver_responses"].samples}
    assert by_class["2xx"] >= 2 and by_class["4xx"] >= 1
    assert found["evserver_requests"].samples[0].value == sum(by_class.values())
    assert found["evserver_connections_open"].samples[0].value >= 1  # this very request
    assert ("evserver_loop_work_seconds" in found) == (watched.model == "evented")
    assert ("evserver_connection_threads" in found) == (watched.model == "threaded")
    stats = json.loads(fetch(watched, "/-/stats")[2])
    # the metrics request and the JSON request came in between
    assert stats["requests"] == found["evserver_requests"].samples[0].value + 1
    assert fetch(watched, "/-/metrics?x")[0] == 404  # the path exactly, like the stats path
    assert fetch(watched, "/small.txt")[2] == b"hello, world\n"


def test_metrics_alone(start_server: Callable[..., RunningServer]) -> None:
    server = start_server(metrics_path="/metrics")
    assert fetch(server, "/metrics")[0] == 200
    assert fetch(server, "/-/stats")[0] == 404


# -- listings through the protocol ----------------------------------------------------------------


def names_of(page: bytes) -> list[str]:
    return re.findall(r'<td class="name"><a href="([^"]*)"', page.decode())


def test_the_query_string_and_accept_reach_the_listing(server: RunningServer) -> None:
    (server.root / "noindex" / "big.txt").write_bytes(b"x" * 5000)
    status, _, page = fetch(server, "/noindex/?sort=size&order=desc")
    assert status == 200 and names_of(page) == ["../", "big.txt", "x.css"]
    status, _, page = fetch(server, "/noindex/?sort=size&order=asc")
    assert names_of(page) == ["../", "x.css", "big.txt"]
    status, headers, body = fetch(server, "/noindex/?sort=size", accept="application/json")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [entry["name"] for entry in json.loads(body)["entries"]] == ["big.txt", "x.css"]
    status, headers, _ = fetch(server, "/noindex?sort=size")  # the redirect keeps the query
    assert status == 301 and headers["location"] == "/noindex/?sort=size"


def test_a_listing_revalidates(server: RunningServer) -> None:
    _, headers, _ = fetch(server, "/noindex/")
    status, again, body = fetch(server, "/noindex/", if_none_match=headers["etag"])
    assert status == 304 and body == b"" and again["etag"] == headers["etag"]
    assert again["vary"] == "Accept"


def test_curl_gets_a_json_listing(server: RunningServer) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (CI installs it)")
    folder = server.root / "many"
    folder.mkdir()
    for name in ("b.txt", "A.txt", "c10", "c9"):
        (folder / name).write_text(name)
    (folder / "d").mkdir()
    result = subprocess.run([curl, "-sS", "--fail", "-H", "Accept: application/json",
                             server.url("/many/?sort=name&order=desc")], capture_output=True,
                            timeout=20)
    assert result.returncode == 0, result.stderr
    names = [entry["name"] for entry in json.loads(result.stdout)["entries"]]
    assert names == ["d", "c10", "c9", "b.txt", "A.txt"]


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--metrics-path", "metrics"],
                                  ["--stats-path", "/s", "--metrics-path", "/s"]])
def test_bad_metrics_paths_give_one_line_and_status_2(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "evserver", *args], capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evserver: error: --"), result.stderr


def test_the_metrics_path_reaches_the_config(tmp_path: Path) -> None:
    config = parse_config(["-d", str(tmp_path), "--metrics-path", "/-/metrics"])
    assert config.metrics_path == "/-/metrics" and config.stats_path is None
    assert parse_config(["-d", str(tmp_path)]).metrics_path is None
