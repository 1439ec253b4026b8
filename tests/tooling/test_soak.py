"""The soak tool: its judge of bodies, its churn's versions, its arguments, and a short run.

The short run is the CI soak: about half a minute of the whole mix (Locust when installed, the
idle crowd, slow, resetting and checker clients, the churn) against the evented server, which
must end in PASS with a sample a second and the results written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import soak

CI_SOAK_SECONDS = 30
"""The CI run: long enough for every kind of client to act many times and the churn to touch
each file dozens of times; the 30-minute figures come from a run by hand."""

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
                             "--out", "soak", "--idle", "100", "--users", "5"],
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
    assert (out / "server-evented.log").is_file()


def test_a_mix_fails_the_verdict() -> None:
    record = {"server_died": False, "server_exit": 0, "locust": {}, "samples": [],
              "clients": {"counts": {"checker ok": 5}, "problems": ["checker GET /x: a mix"]},
              "fds_before": 10, "fds_after": 10, "rss_kib_after_warmup_and_end": None}
    assert soak.verdict(record) == ["checker GET /x: a mix"]
