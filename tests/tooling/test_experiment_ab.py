"""The runner's A/B mode: what it accepts and refuses, its verdict, one quick run end to end.

Bad input (a revision git does not know, a folder that is no checkout, no git repository, no
wrk, options evserver refuses) is one line and exit status 2 (1 for a missing tool), and no
worktree is left behind. The verdict is judged on made-up records, so its arithmetic can fail
without a benchmark. The quick run (needs wrk) measures HEAD against HEAD for one short round:
it checks that each server ran its own worktree's code, the report's structure, and that the
worktrees are gone afterwards; nothing about speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools import ab, experiment

ROOT = next(folder for folder in Path(__file__).resolve().parents
            if (folder / "setup.cfg").exists())
"""The project folder, wherever in tests/ this file lives."""

IN_GIT = shutil.which("git") is not None and subprocess.run(
    ["git", "-C", str(ROOT), "rev-parse", "--git-dir"], capture_output=True,
    check=False).returncode == 0
needs_git = pytest.mark.skipif(not IN_GIT, reason="not a git checkout, or no git")


def worktrees() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
                          capture_output=True, text=True, check=True).stdout


def run_ab(tmp_path: Path, *argv: str) -> int:
    return experiment.main(["ab", *argv, "--quick", "--out", str(tmp_path / "run"),
                            "--docroot", str(tmp_path / "tree")])


def point(case: str, server: str, round_number: int, rps: float,
          requests: int = 1000, cpu_seconds: float = 1.0) -> dict[str, Any]:
    return {"case": case, "server": server, "round": round_number, "rps": rps,
            "requests": requests, "cpu_seconds": cpu_seconds}


def test_a_verdict_needs_every_round_on_one_side_of_one() -> None:
    assert ab.verdict([1.02, 1.05, 1.01]) == "B is faster"
    assert ab.verdict([0.98, 0.97, 0.99]) == "B is slower"
    assert ab.verdict([0.99, 1.04, 1.03]) == "B is indistinguishable"
    assert ab.verdict([1.0, 1.1]) == "B is indistinguishable"  # a tie in one round
    assert ab.verdict([1.5]).startswith("not judged")
    assert ab.verdict([]) == "not measured"


def test_the_table_divides_each_round_by_the_same_round() -> None:
    case = "1k keep-alive c64"
    # Round 2 ran on a faster machine state for both: per-round ratios divide it out.
    points = [point(case, "A", 1, 100), point(case, "A", 2, 200), point(case, "A", 3, 100),
              point(case, "B", 1, 110), point(case, "B", 2, 210, cpu_seconds=0.5),
              point(case, "B", 3, 105), point(case, "nginx", 1, 120)]
    table, verdicts = ab.ab_table(points, ["nginx"])
    assert table.splitlines()[0] == ("| case | A req/s | B req/s | B/A (rounds) | A req/CPU-s | "
                                     "B req/CPU-s | nginx req/s |")
    assert (f"| {case} | 100 (100-200) | 110 (105-210) | 1.050 (1.050-1.100) | "
            f"1,000 (1,000-1,000) | 1,000 (1,000-2,000) | 120 |") in table
    assert verdicts == [f"- **{case}**: B is faster (B/A 1.050 (1.050-1.100); identical code "
                        f"gets a verdict this firm in 1 run of 4)"]
    slower = [point(case, "A", r, 100) for r in (1, 2)] + [point(case, "B", 1, 99),
                                                           point(case, "B", 2, 101)]
    assert ab.ab_table(slower, [])[1][0].startswith(f"- **{case}**: B is indistinguishable")


def test_cases_are_named_from_a_fixed_list() -> None:
    with pytest.raises(SystemExit) as refused:
        experiment.parser().parse_args(["ab", "HEAD", "HEAD", "--cases", "2k"])
    assert refused.value.code == 2


@needs_git
@pytest.mark.parametrize(("argv", "says"), [
    (["no-such-revision-here", "HEAD"], "'no-such-revision-here': neither a revision of"),
    (["HEAD", "{tmp}"], "a folder, but not an evserver checkout"),
    (["HEAD", "HEAD", "--cases", "16m"], "--cases 16m: not in the quick tree"),
    (["HEAD", "HEAD", "--server-args", "--selector 'x"], "No closing quotation"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], says: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert run_ab(tmp_path, *argv) == 2
    error = capsys.readouterr().err
    assert says in error and error.count("\n") == 1, error


@needs_git
def test_revisions_outside_a_git_repository_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(experiment, "PROJECT_DIR", str(tmp_path))
    assert run_ab(tmp_path, "HEAD", "HEAD") == 2
    error = capsys.readouterr().err
    assert "is not a git repository" in error and error.count("\n") == 1, error


@needs_git
def test_without_wrk_nothing_is_checked_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(experiment, "tool_missing", lambda name: name == "wrk")
    assert run_ab(tmp_path, "HEAD", "HEAD") == 1
    assert "wrk is not installed" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@needs_git
def test_options_evserver_refuses_leave_no_worktree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(experiment, "tool_missing", lambda name: False)
    assert run_ab(tmp_path, "HEAD", "HEAD", "--server-args", "--selector nope") == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'nope'" in error
    # Both were checked out (and each imported its own evserver) before evserver refused.
    assert f"A = HEAD: evserver from {tmp_path / 'run' / 'checkout-A'}" in error
    assert not (tmp_path / "run" / "checkout-A").exists()
    assert not (tmp_path / "run" / "checkout-B").exists()
    assert str(tmp_path) not in worktrees()


@needs_git
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed (apt-get install wrk); CI installs it")
def test_quick_ab_of_head_against_itself(tmp_path: Path) -> None:
    rundir = tmp_path / "run"
    assert run_ab(tmp_path, "HEAD", "HEAD", "--duration", "1") == 0
    points = json.loads((rundir / "points.json").read_text())
    assert {(p["server"], p["round"]) for p in points} == {("A", 1), ("B", 1)}
    assert all(p["requests"] > 0 and p["non_2xx_3xx"] == 0 for p in points)
    text = (rundir / "report.md").read_text()
    assert text.startswith("# evserver experiment report")
    assert "Quick mode: a smoke test" in text
    section = text.split("## A/B: B against A\n", 1)[1].split("\n## ", 1)[0]
    for label in ("A", "B"):  # each ran its own worktree's code
        checkout = rundir / f"checkout-{label}"
        assert f"| {label} | `HEAD` | " in section
        assert f"`{checkout / 'evserver' / '__init__.py'}`" in section
    assert "| case | A req/s | B req/s | B/A (rounds) |" in section
    assert "- **1k keep-alive c64**: not judged (one round has no spread)" in section
    assert (rundir / "points.csv").exists()
    assert not (rundir / "checkout-A").exists() and not (rundir / "checkout-B").exists()
    assert str(tmp_path) not in worktrees()
