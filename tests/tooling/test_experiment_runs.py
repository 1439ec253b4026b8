"""The runner when things go wrong during a run: a server that will not start, and Ctrl-C.

A server that fails to start is reported with the end of its log and the others are measured.
Ctrl-C (SIGINT to the runner's process group, as a terminal sends it) stops every process the
run started -- servers, wrk, Locust -- and still writes the report of what was measured, with
exit status 130. Quick runs only (needs ``wrk``); the runner is waited on through its output
lines and its exit, never a sleep.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tools import experiment

ROOT = next(folder for folder in Path(__file__).resolve().parents
            if (folder / "setup.cfg").exists())
"""The project folder, wherever in tests/ this file lives."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None,
                       reason="wrk is not installed (apt-get install wrk); CI installs it"),
]

RUN_DEADLINE = 300.0
"""Seconds a quick run may take before the test fails."""


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (a test's own temporary folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                line = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if text in line and state != "Z":
            found.append(f"{pid}: {line}")
    return found


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_a_server_that_does_not_start_is_reported_and_the_others_go_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rundir = tmp_path / "run"
    code = experiment.main([
        "compare", "--quick", "--server", "evented",
        "--server", "broken=evented --access-log /nonexistent-folder/access.log",
        "--connections", "1", "--duration", "1", "--hold", "", "--locust-time", "0",
        "--out", str(rundir), "--docroot", str(tmp_path / "tree")])
    assert code == 0
    err = capsys.readouterr().err
    assert "broken did not start (exit status 1); the end of its log" in err
    assert "broken is left out; the others go on" in err
    report = (rundir / "report.md").read_text()
    assert "## Not measured" in report and "- broken: did not start" in report
    assert "| 1k keep-alive c1 | evented |" in report
    assert "| broken |" not in report.split("## Not measured")[1]


def run_and_interrupt(tmp_path: Path, extra: list[str], when: str,
                      ready: Callable[[Path], bool] = lambda rundir: True
                      ) -> tuple[int, str, Path]:
    """Start a quick run in its own process group; when a line containing ``when`` appears
    on its standard error and ``ready(rundir)`` holds, send SIGINT to the group (as Ctrl-C in a
    terminal does), and wait for the runner to end."""
    rundir = tmp_path / "run"
    argv = [sys.executable, "tools/experiment.py", "compare", "--quick", "--out", str(rundir),
            "--docroot", str(tmp_path / "tree"), *extra]
    runner = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    assert runner.stderr is not None
    lines = []
    deadline = time.monotonic() + RUN_DEADLINE
    try:
        for line in runner.stderr:
            lines.append(line)
            if when in line:
                while not ready(rundir):
                    assert time.monotonic() < deadline, "".join(lines)
                    time.sleep(0.1)  # polling a file another process writes: no event to wait on
                os.killpg(runner.pid, signal.SIGINT)
                break
            assert time.monotonic() < deadline, "".join(lines)
        lines += runner.stderr.readlines()
        code = runner.wait(RUN_DEADLINE)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        runner.stderr.close()
    return code, "".join(lines), rundir


def test_ctrl_c_during_wrk_stops_everything_and_writes_what_was_measured(
        tmp_path: Path) -> None:
    code, err, rundir = run_and_interrupt(
        tmp_path, ["--server", "evented", "--server", "threaded", "--connections", "1,16,64",
                   "--duration", "2", "--hold", "", "--locust-time", "0"], "[1/")
    assert code == experiment.INTERRUPTED_EXIT, err
    assert "Traceback" not in err and "Ctrl-C: stopping every process" in err
    report = (rundir / "report.md").read_text()
    assert "**Interrupted** (Ctrl-C) after 1 of 6 measurements" in report
    assert "| 1k keep-alive c1 | evented |" in report
    assert processes_mentioning(str(tmp_path)) == []


def test_ctrl_c_during_locust_stops_its_processes(tmp_path: Path) -> None:
    if not experiment.locust_available():
        pytest.skip("Locust is not installed (the load extra)")
    code, err, rundir = run_and_interrupt(
        tmp_path, ["--server", "evented", "--connections", "1", "--duration", "1", "--hold", "",
                   "--locust-time", "60", "--locust-processes", "2"], "Locust running",
        ready=lambda rundir: "evserver scenarios:" in _text(rundir / "locust-evented.log"))
    assert code == experiment.INTERRUPTED_EXIT, err
    assert "Traceback" not in err
    assert "| 1k keep-alive c1 | evented |" in (rundir / "report.md").read_text()
    assert processes_mentioning(str(tmp_path)) == []
