"""The command line: help, one-line errors with status 2, a port in use, the banner."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from evserver.cli import parse_config

PYTHON = sys.executable


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "evserver", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_works_as_module_and_as_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--selector" in result.stdout and "--model" in result.stdout
    script = Path(PYTHON).parent / "evserver"
    command = str(script) if script.exists() else shutil.which("evserver")
    if command is None:
        pytest.skip("the evserver console script is not installed")
    result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0 and "--directory" in result.stdout


@pytest.mark.parametrize("args", [
    ["70000"], ["-1"], ["eight"], ["+80"], ["8_0"], ["--model", "forked"],
    ["--selector", "nonsense"], ["--max-connections", "0"], ["--backlog", "1_0"],
    ["--header-timeout", "-1"], ["--idle-timeout", "nan"], ["--send-timeout", "inf"],
    ["-d", "/nonexistent/folder"], ["--stats-path", "stats"], ["--index", "../x"],
    ["--log-format", "json"], ["--no-such-option"], ["80", "81"],
])
def test_bad_arguments_give_one_line_and_status_2(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("evserver: error:")
    assert "Traceback" not in result.stderr


def test_port_in_use_gives_one_line_and_status_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(str(port), "-b", "127.0.0.1", "-d", str(tmp_path), "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot listen" in result.stderr


def test_parse_config_defaults_match_http_server(tmp_path: Path) -> None:
    cfg = parse_config(["-d", str(tmp_path)])
    assert cfg.port == 8000 and cfg.host is None and cfg.root == os.path.abspath(tmp_path)
    assert cfg.model == "evented" and cfg.listing and cfg.index_names == ("index.html",)
    assert not cfg.stat_every_request
    cfg = parse_config(["9000", "-b", "127.0.0.1", "--index", "a.html", "--index", "b.html",
                        "--no-listing", "--no-sendfile", "-q", "--max-body", "10",
                        "--stat-every-request"])
    assert (cfg.port, cfg.host) == (9000, "127.0.0.1")
    assert cfg.index_names == ("a.html", "b.html")
    assert not cfg.listing and not cfg.use_sendfile and cfg.quiet and cfg.stat_every_request
    assert cfg.limits.max_body == 10
