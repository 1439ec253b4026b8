"""The serving options on the command line: one-line errors with status 2, the config they make,
and the banner's warning when every network interface listens."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from evserver.cli import every_interface_warning, parse_config
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    (tmp_path / "404.html").write_text("<p>lost</p>\n")
    (tmp_path / "index.html").write_text("<p>app</p>\n")
    (tmp_path / "huge.html").write_bytes(b"x" * (1024 * 1024 + 1))
    return tmp_path


@pytest.mark.parametrize("args", [
    ["-H", "NoColon"], ["-H", "X-Empty:"], ["-H", "Content-Length: 5"], ["--header", "X: a\x01"],
    ["-H", "Bad Name: v"], ["--cache-control", "a\tb\x02"], ["--cache-control", ""],
    ["--cors", "-H", "Access-Control-Allow-Origin: https://a.example"],
    ["-H", "Cache-Control: no-store", "--cache-control", "max-age=1"],
    ["--error-page", "404"], ["--error-page", "404="], ["--error-page", "x=404.html"],
    ["--error-page", "200=404.html"], ["--error-page", "413=404.html"],
    ["--error-page", "404=missing.html"], ["--error-page", "404=huge.html"],
    ["--error-page", "404=."], ["--error-page", "404=404.html", "--error-page", "404=index.html"],
    ["--fallback", "missing.html"], ["--fallback", "."],
])
def test_bad_serving_options_give_one_line_and_status_2(args: list[str], pages: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "evserver", "-d", str(pages), *args],
                            capture_output=True, text=True, timeout=20, cwd=pages)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("evserver: error:")
    assert "Traceback" not in result.stderr


def test_serving_options_reach_the_config(pages: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = parse_config(["-d", str(pages)])
    assert not cfg.dotfiles and cfg.precompressed and not cfg.gzip and not cfg.cors
    assert cfg.headers == () and cfg.cache_control is None
    assert cfg.error_pages == () and cfg.fallback is None
    monkeypatch.chdir(pages)
    cfg = parse_config(["-d", str(pages), "--dotfiles", "--no-precompressed", "--gzip",
                        "-H", "X-A: 1", "--header", "X-B:  two words ", "--cors",
                        "--cache-control", "no-cache", "--error-page", "404=404.html",
                        "--error-page", "403=index.html", "--fallback", "index.html"])
    assert cfg.dotfiles and not cfg.precompressed and cfg.gzip and cfg.cors
    assert cfg.headers == (("X-A", "1"), ("X-B", "two words"))
    assert cfg.cache_control == "no-cache"
    assert cfg.error_pages == ((403, str(pages / "index.html")), (404, str(pages / "404.html")))
    assert cfg.fallback == str(pages / "index.html")


@pytest.mark.parametrize(("host", "warns"), [
    (None, True), ("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("::1", False),
    ("192.0.2.1", False), ("localhost", False),
])
def test_every_interface_is_warned_about(host: str | None, warns: bool) -> None:
    assert (every_interface_warning(host) is not None) is warns


def test_the_banner_warns_when_every_interface_listens(
    start_process: Callable[..., ServerProcess]
) -> None:
    exposed = start_process("-b", "0.0.0.0")  # the later -b wins over the helper's 127.0.0.1
    wait_until(lambda: any("warning: listening on every network interface" in line
                           for line in exposed.stderr_lines), "the warning line")
    assert exposed.stop(signal.SIGTERM) == 0
    local = start_process()
    assert local.stop(signal.SIGTERM) == 0
    assert not any("warning" in line for line in local.stderr_lines), local.stderr_lines
