"""The runner's command line: server specs, bad input, missing tools -- no measurement here.

A bad ``--server`` spec, an unknown peer or file, a folder of the user's own given as
``--docroot``: one line and exit status 2, before anything starts and without a traceback. A
missing nginx or Locust: one line saying what to install, and the plan goes on without it.
evserver judges the options of a spec itself (it is started for an instant on an empty folder),
so these tests start short-lived servers on port 0; none takes the benchmark lock.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools import docroot, experiment, servers

ROOT = next(folder for folder in Path(__file__).resolve().parents
            if (folder / "setup.cfg").exists())
"""The project folder, wherever in tests/ this file lives."""


def plan_of(*argv: str) -> experiment.Plan:
    return experiment.make_plan(experiment.parser().parse_args(list(argv)))


def labels(*specs: str) -> list[str]:
    return [spec.label for spec in servers.label_specs([servers.parse_spec(s) for s in specs])]


def test_servers_are_labelled_by_what_sets_them_apart() -> None:
    assert labels("evented", "evented --selector poll", "evented --no-sendfile", "threaded",
                  "nginx") == ["evented", "evented selector=poll", "evented no-sendfile",
                               "threaded", "nginx"]
    # Options every server shares do not tell them apart: left out of the labels.
    assert labels("evented --idle-timeout 5", "threaded --idle-timeout 5") == [
        "evented", "threaded"]
    assert labels("fast=evented --selector epoll") == ["fast"]
    spec = servers.parse_spec("evented --selector=select --index 'my index.html'")
    assert spec.extra_args == ("--selector=select", "--index", "my index.html")


@pytest.mark.parametrize(("spec", "says"), [
    ("evnted", "the first word must be a model"),
    ("", "empty"),
    ("nginx --foo", "takes no options"),
    ("evented -d /tmp", "the runner sets -d itself"),
    ("evented --stats-path=/x", "the runner sets --stats-path itself"),
    ("evented 'unclosed", "No closing quotation"),
])
def test_a_spec_the_runner_refuses(spec: str, says: str) -> None:
    with pytest.raises(servers.SpecError, match=says) as refused:
        servers.label_specs([servers.parse_spec(spec)])
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("spec", "says"), [
    ("evented --selector foo", "invalid choice: 'foo'"),
    ("evented --no-such-option", "unrecognized arguments: --no-such-option"),
    ("threaded --max-connections lots", "--max-connections"),
])
def test_a_spec_evserver_refuses_is_its_own_one_line(spec: str, says: str) -> None:
    with pytest.raises(servers.SpecError, match=says) as refused:
        servers.check_specs([servers.parse_spec(spec)])
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"--server {spec!r}: evserver: error:")


def test_good_specs_pass_the_check() -> None:
    servers.check_specs([servers.parse_spec(s) for s in (
        "evented --selector poll", "evented --no-sendfile", "threaded --idle-timeout 5")])


@pytest.mark.parametrize(("argv", "says"), [
    (["--server", "evented", "--server", "evented"], "the same server as"),
    (["--server", "evented --selector nope"], "invalid choice"),
    (["--peers", "apache"], "--peers 'apache': choose from http.server, nginx"),
    (["--quick", "--files", "16m"], "not in the quick tree"),
])
def test_bad_input_is_one_line_and_status_2(argv: list[str], says: str,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    code = experiment.main(["compare", *argv, "--out", str(tmp_path / "run"),
                            "--docroot", str(tmp_path / "tree")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "tree").exists()


def test_a_folder_of_ones_own_is_never_written(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "myfolder"
    mine.mkdir()
    (mine / "index.html").write_text("mine")
    code = experiment.main(["compare", "--quick", "--server", "evented", "--docroot", str(mine),
                            "--out", str(tmp_path / "run")])
    assert code == 2
    assert "holds files of its own" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["index.html"]
    assert (mine / "index.html").read_text() == "mine"
    with pytest.raises(docroot.NotATree):
        docroot.ensure(str(mine))


def test_argument_errors_do_not_print_a_traceback(tmp_path: Path) -> None:
    for argv in (["--connections", "many"], ["--connections", "0"], ["--files", "2k"],
                 ["--server", "evented --selector foo"]):
        done = subprocess.run([sys.executable, "tools/experiment.py", "compare", *argv,
                               "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.strip(), done.stderr


def test_missing_nginx_and_locust_are_one_line_each_and_the_plan_goes_on(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setattr(servers, "nginx_binary", lambda: None)
    monkeypatch.setattr(experiment, "locust_available", lambda: False)
    plan = plan_of("compare", "--quick", "--server", "evented", "--peers", "nginx",
                   "--docroot", str(tmp_path / "tree"))
    assert [spec.label for spec in plan.specs] == ["evented"]
    assert plan.locust_seconds == 0 and plan.cases
    err = capsys.readouterr().err.splitlines()
    assert any("nginx is not installed (Debian: sudo apt-get install nginx)" in line
               for line in err)
    assert any("Locust is not installed (.venv/bin/pip install -e '.[load]')" in line
               for line in err)
    assert len(plan.skipped) == 2


def test_missing_wrk_keeps_the_idle_cases(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path) -> None:
    monkeypatch.setattr(experiment, "tool_missing", lambda name: name == "wrk")
    plan = plan_of("compare", "--quick", "--server", "evented", "--locust-time", "0",
                   "--docroot", str(tmp_path / "tree"))
    assert [case.kind for case in plan.cases] == ["idle"]
    assert "wrk is not installed (Debian: sudo apt-get install wrk)" in capsys.readouterr().err
    with pytest.raises(experiment.PlanError, match="nothing left to measure"):
        plan_of("compare", "--quick", "--server", "evented", "--locust-time", "0", "--hold",
                "", "--docroot", str(tmp_path / "tree"))


def test_no_connection_levels_leave_only_the_idle_cases(tmp_path: Path) -> None:
    plan = plan_of("compare", "--quick", "--server", "evented", "--connections", "",
                   "--hold", "300", "--locust-time", "0", "--docroot", str(tmp_path / "tree"))
    assert [(case.kind, case.connections) for case in plan.cases] == [("idle", 300)]
    default = plan_of("compare", "--quick", "--server", "evented", "--locust-time", "0",
                      "--docroot", str(tmp_path / "tree"))
    assert [case.connections for case in default.cases if case.kind == "wrk"] == [1, 64]


def test_models_and_servers_combine_and_have_help() -> None:
    args = experiment.parser().parse_args(["compare", "--models", "evented,threaded",
                                           "--server", "evented --selector select"])
    specs = experiment.compare_specs(args, [])
    assert [s.label for s in specs] == ["evented selector=select", "evented", "threaded"]
    default = experiment.compare_specs(experiment.parser().parse_args(["compare"]), [])
    assert [s.label for s in default] == ["evented", "threaded", "iterative"]
    help_text = experiment.parser()._subparsers._group_actions[0].choices[  # type: ignore
        "compare"].format_help()
    assert "--models LIST" in help_text and "--server SPEC" in help_text
    assert "issue" not in help_text.lower()


def test_the_full_comparison_is_estimated_at_under_an_hour(tmp_path: Path) -> None:
    args = experiment.parser().parse_args([
        "compare", "--server", "evented --selector epoll", "--server", "evented --selector poll",
        "--server", "evented --selector select", "--server", "evented --no-sendfile",
        "--server", "threaded", "--server", "iterative", "--peers", "nginx",
        "--docroot", str(tmp_path / "tree")])
    plan = experiment.compare_plan(args)
    assert 30 * 60 < experiment.estimate_seconds(plan) < 60 * 60
