"""The soak tool: its judge of bodies, its churn's versions, its figures (drift, descriptors,
the access log's lines), its pause, its verdict, its arguments, and a short run.

The short run is the CI soak: about half a minute of the whole mix (Locust, the idle crowd,
slow, resetting and checker clients, the churn, a short SIGSTOP) against the evented server,
which must end in PASS with a sample a second, every figure of the summary present, and the
results written.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tools import soak

CI_SOAK_SECONDS = 30
"""The CI run: long enough for every kind of client to act many times and the churn to touch
each file dozens of times; the 30-minute figures come from a run by hand."""

CI_PAUSE_SECONDS = 2
"""The CI run's SIGSTOP: long enough that every client waits on it, short beside the run."""

SOAK = os.path.join(os.path.dirname(soak.__file__), "soak.py")


def test_a_body_is_whole_aborted_truncated_under_sendfile_or_a_mix() -> None:
    versions = soak.Versions()
    old, new = b"a" * 8192, b"b" * 8192
    versions.add(old)
    versions.add(new)
    assert soak.judge_body(old, len(old), versions) == "ok"
    assert soak.judge_body(old[:100], len(old), versions) == "aborted"
    assert soak.judge_body(old[:4096] + new[4096:], 8192, versions) == "mix"
    versions.add_truncation(old, 5000)  # sendfile had queued all of it: the pages from 4096 on
    assert soak.judge_body(old[:4096] + new[4096:], 8192, versions) == "truncated under sendfile"
    assert soak.judge_body(new[:4096] + old[4096:], 8192, versions) == "mix"


def test_every_page_boundary_of_a_grow_is_a_version() -> None:
    versions = soak.Versions()
    old, appended = b"o" * 5000, b"n" * 10000
    versions.add_grow(old, appended)
    assert versions.known(old + appended)
    assert versions.known((old + appended)[:8192]) and versions.known((old + appended)[:12288])
    assert not versions.known((old + appended)[:6000])


def test_the_churn_never_grows_a_truncated_inode(tmp_path: Path) -> None:
    versions = soak.Versions()
    churn = soak.Churn(str(tmp_path), versions, seed=3)
    for step in range(200):
        index = step % len(churn.paths)
        was_truncated = churn.truncated[index]
        before = os.stat(churn.paths[index])
        churn.step(index)
        after = os.stat(churn.paths[index])
        if was_truncated and after.st_ino == before.st_ino:
            assert after.st_size <= before.st_size
        with open(churn.paths[index], "rb") as file:
            assert versions.known(file.read())
    assert set(churn.operations) == {"replace", "rename", "truncate", "grow"}


@pytest.mark.parametrize("args", [["--duration", "0"], ["--duration", "x"], ["--idle", "-1"],
                                  ["--server", "nginx"], ["--server", ""]])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    result = subprocess.run([sys.executable, SOAK, *args], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2, result


def test_a_short_soak_of_the_evented_server_passes(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    # A relative --out, as one types it by hand: every file must still land in it.
    result = subprocess.run([sys.executable, SOAK, "--duration", str(CI_SOAK_SECONDS),
                             "--out", "soak", "--idle", "100", "--users", "5",
                             "--pause", str(CI_PAUSE_SECONDS)],
                            capture_output=True, text=True, timeout=CI_SOAK_SECONDS + 120,
                            cwd=tmp_path)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((out / "soak.json").read_text())
    assert record["verdict"] == "PASS" and record["reasons"] == []
    assert len(record["samples"]) >= CI_SOAK_SECONDS - 3
    assert all("stats" in entry for entry in record["samples"])
    counts = record["clients"]["counts"]
    assert counts["checker ok"] > 0 and counts["slow ok"] > 0 and counts["resets"] > 0
    assert record["locust"]["requests"] > 0, record["locust"]  # CI installs Locust
    assert (out / "server-evented.log").is_file() and (out / "soak.png").is_file()
    served = record["requests"]["served"]
    assert all(served[client] > 0 for client in ("locust", "checkers", "slow", "idle crowd"))
    assert sum(record["requests"]["failed"].values()) == 0
    assert record["drift"]["from_seconds"] == CI_SOAK_SECONDS / 4
    assert record["descriptors"]["under_load"]["median"] > 100  # the idle crowd is held
    pause = record["pause"]
    assert pause["stopped_for"] >= CI_PAUSE_SECONDS and pause["client_errors"] == 0
    assert 0 <= pause["recovery_seconds"] < soak.RECOVERY_LIMIT_SECONDS
    log = record["access_log"]
    assert log["lines_lost"] == 0 and log["lines_minus_responses"] == 1, log
    for words in ("requests served", "before the load", "after it stopped", "drift from",
                  "truncated under sendfile", "SIGSTOP at", "access log: lines lost 0"):
        assert words in result.stdout


def _passing_record() -> dict[str, Any]:
    return {"server_died": False, "server_exit": 0, "locust": {"requests": 9, "failures": 0},
            "samples": [], "sendfile": True,
            "clients": {"counts": {"checker ok": 5, "checker truncated under sendfile": 2},
                        "problems": []},
            "descriptors": {"before_load": 10, "under_load": None, "after_load": 10},
            "drift": None, "pause": None, "access_log": {"lines_lost": 0}}


def test_a_mix_fails_the_verdict() -> None:
    record = _passing_record()
    record["clients"]["problems"] = ["checker GET /x: a mix"]
    assert soak.verdict(record) == ["checker GET /x: a mix"]


def test_bodies_truncated_under_sendfile_are_a_known_limit_not_a_failure() -> None:
    assert soak.verdict(_passing_record()) == []


def test_lost_log_lines_an_unrecovered_pause_and_leaked_descriptors_fail() -> None:
    record = _passing_record()
    record["access_log"]["lines_lost"] = 3
    record["pause"] = {"checkers": 4, "checkers_answered_again": 3, "recovery_seconds": None}
    record["descriptors"]["after_load"] = 10 + soak.FD_SLACK + 1
    reasons = soak.verdict(record)
    assert len(reasons) == 3
    assert "lost 3 lines" in reasons[2] and "3 of 4 checkers" in reasons[1]


def test_drift_runs_from_the_warm_ups_end_to_the_loads_end_on_medians() -> None:
    samples = [{"t": float(t), "rss_kib": 1000 + t, "fds": 200 + t % 3} for t in range(1, 61)]
    warmup = soak.warmup_seconds(60)
    assert warmup == 15 and soak.warmup_seconds(3600) == soak.WARMUP_MAX_SECONDS
    moved = soak.drift(samples, warmup, 60)
    assert moved is not None
    window = moved["window_seconds"]
    assert window == warmup / 2  # a short run: half its warm-up, not the full window
    assert moved["rss_kib"] == {"from": 1011, "to": 1056, "change": 45}
    assert abs(moved["fds"]["change"]) <= 2
    assert soak.drift(samples, warmup, warmup + 1) is None  # the load did not outlast it


def test_descriptors_are_told_apart_before_under_and_after_the_load() -> None:
    samples = [{"t": 1.0, "fds": 220}, {"t": 2.0, "fds": 224}, {"t": 3.0, "fds": 222},
               {"t": 9.0, "fds": 9}]  # the last one after the load
    assert soak.descriptors(8, samples, 5.0, 7) == {
        "before_load": 8, "under_load": {"min": 220, "median": 222, "max": 224},
        "after_load": 7}


def test_the_soak_gives_the_server_an_access_log_unless_its_spec_names_one(
        tmp_path: Path) -> None:
    spec = soak.with_access_log(soak.servers.parse_spec("evented --workers 2"), str(tmp_path))
    assert soak.access_log_file(spec) == str(tmp_path / soak.ACCESS_LOG_NAME)
    own = soak.servers.parse_spec("evented --access-log=mine.log")
    assert soak.with_access_log(own, str(tmp_path)) == own
    assert soak.access_log_file(own) == os.path.abspath("mine.log")
    assert soak.access_log_file(soak.servers.parse_spec("evented --access-log -")) is None


def test_locusts_totals_are_read_from_its_csv(tmp_path: Path) -> None:
    (tmp_path / "locust_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time\n"
        "GET,404,298,0,2\n,Aggregated,5159,3,1\n")
    assert soak._locust_counts(str(tmp_path)) == {"requests": 5159, "failures": 3}
    assert "error" in soak._locust_counts(str(tmp_path / "nowhere"))


def test_a_pause_stops_the_whole_process_group_and_times_the_recovery() -> None:
    # A stand-in server: a leader and its child in their own process group, both sleeping.
    program = "import os, time; os.fork(); time.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", program], start_new_session=True)
    try:
        assert _wait_for(lambda: len(_group_states(leader.pid)) == 2)
        tally, stop = soak.Tally(), threading.Event()
        pause = soak.Pause(leader.pid, 1.0, 0.0, checkers=1, tally=tally)
        pausing = threading.Thread(target=pause.run, args=(time.monotonic(), stop))
        pausing.start()
        assert _wait_for(lambda: _group_states(leader.pid) == ["T", "T"])
        pause.answered(0)  # before SIGCONT: does not count
        assert pause.first_answers == {}
        assert _wait_for(lambda: pause.resumed is not None)
        pause.answered(0)
        stop.set()  # no need to wait for the aftermath
        pausing.join(10)
        assert pause.report["stopped_for"] >= 1.0
        assert pause.report["checkers_answered_again"] == 1
        assert 0 <= pause.report["recovery_seconds"] < 1
        assert pause.report["client_errors"] == 0
        assert _wait_for(lambda: "T" not in _group_states(leader.pid))  # both continued
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def _wait_for(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _group_states(group: int) -> list[str]:
    states = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group:  # the process group
            states.append(fields[0])
    return states
