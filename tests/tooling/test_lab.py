"""The course lab: ``tools/lab.py list`` and ``run``, its guide, and every lab in its quick form.

The quick runs start real servers and clients (``wrk`` for most labs), so they are slow tests;
each checks that the run folder is complete (report, raw data, plots) and one robust sign of the
lesson -- a figure whose side of a wide margin cannot depend on a noisy machine (40 ms against
well under one, a probe waiting for a timeout against one that does not). Servers bind port 0
and are stopped by the lab itself; the open-loop client's tests use an in-process server.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import RunningServer
from tools import experiment, lab, openloop, plots
from tools.labs import BY_NAME, LABS, base, open_closed, workers

ROOT = next(folder for folder in Path(__file__).resolve().parents
            if (folder / "setup.cfg").exists())
GUIDE = ROOT / "tools" / "labs" / "README.rst"


# --- the command line -------------------------------------------------------------------------

def test_list_shows_every_lab_with_its_question(capsys: pytest.CaptureFixture[str]) -> None:
    assert lab.main(["list"]) == 0
    out = capsys.readouterr().out
    for each in LABS:
        assert re.search(rf"^{re.escape(each.name)} ", out, re.M), each.name
        assert each.question.split()[0] in out
    assert len(LABS) == 9


def test_an_unknown_lab_lists_the_known_ones_and_exits_2(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert lab.main(["run", "select-vs-kqueue", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "select-vs-kqueue" in err
    for each in LABS:
        assert each.name in err
    assert not (tmp_path / "run").exists()


def test_a_missing_tool_is_one_line_saying_what_to_install(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(experiment, "tool_missing", lambda name: True)
    assert lab.main(["run", "nagle", "--quick", "--out", str(tmp_path / "run")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"lab nagle cannot run: {experiment.INSTALL_WRK}"]
    assert "apt-get install wrk" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing was started, nothing written


def test_every_lab_says_what_to_expect_and_look_for() -> None:
    for each in LABS:
        assert each.question.endswith("?"), each.name
        assert len(each.expected) > 100 and len(each.look_for) > 50, each.name
        assert set(each.needs) <= set(base.INSTALL), each.name
        assert each.minutes[0] < 1, f"{each.name}: --quick must take well under a minute"


# --- the guide ----------------------------------------------------------------------------------

def test_the_guide_has_a_section_and_the_commands_for_every_lab() -> None:
    text = GUIDE.read_text()
    run_commands = set(re.findall(r"tools/lab\.py run ([\w-]+)", text))
    assert run_commands == set(BY_NAME), "the guide runs exactly the labs there are"
    for each in LABS:
        section = text.split(f"Lab ``{each.name}``")[1].split("\nLab ``")[0]
        for heading in ("The question", "Background", "Run it", "Expected", "What to look for",
                        "Questions", "Exercise"):
            assert heading in section, f"{each.name}: no {heading!r}"
    assert "Before you measure" in text
    assert "statediagram.py" in text


def test_the_guide_renders_without_warnings() -> None:
    docutils_core = pytest.importorskip("docutils.core")
    import io

    errors = io.StringIO()
    docutils_core.publish_string(GUIDE.read_text(), writer="html", settings_overrides={
        "warning_stream": errors, "report_level": 2, "halt_level": 5})
    assert errors.getvalue() == ""


def test_the_guide_names_only_code_that_exists() -> None:
    """An exercise that names a file or a function the code no longer has would send a
    student nowhere."""
    text = GUIDE.read_text()
    for path in set(re.findall(r"``((?:evserver|tools)/[\w/]+\.py)``", text)):
        assert (ROOT / path).is_file(), path
    for path, name in set(re.findall(r"``((?:evserver|tools)/[\w/]+\.py)``, ``([\w.]+)``",
                                     text)):
        source = (ROOT / path).read_text()
        leaf = name.split(".")[-1]
        assert re.search(rf"(def|class) {re.escape(leaf)}\b|^{re.escape(leaf)}\s*(:[^=\n]*)?=",
                         source,
                         re.M), f"{path} has no {name}"


# --- pieces -------------------------------------------------------------------------------------

def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert base.percentile(values, 0.5) == 50
    assert base.percentile(values, 0.99) == 99
    assert base.percentile([7.0], 0.99) == 7
    assert base.percentile([], 0.5) is None


def test_time_wait_sockets_are_counted_on_each_side(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:1F90 0100007F:C350 06 00000000:00000000\n"  # server side, TIME_WAIT
        "   1: 0100007F:1F90 0100007F:C351 06 00000000:00000000\n"
        "   2: 0100007F:C352 0100007F:1F90 06 00000000:00000000\n"  # client side
        "   3: 0100007F:1F90 0100007F:C353 01 00000000:00000000\n"  # established
        "   4: 0100007F:1F91 0100007F:C354 06 00000000:00000000\n")  # another port
    assert base.count_tcp_states(8080, files=[str(table), str(tmp_path / "absent")]) == (2, 1)


def test_generic_figures_are_written(tmp_path: Path) -> None:
    if plots._pyplot() is None:
        pytest.skip("matplotlib is not installed (the plot extra)")
    lines = str(tmp_path / "lines.png")
    assert plots.lines_figure(lines, [plots.LinePanel(
        "t", "x", "y", {"a": [(1, 1.0), (10, 2.0)], "b": [(1, 3.0), (10, 0.5)]}, logx=True,
        logy=True, spans=[(2, 3, "span")])], "title", quick=True)
    bars = str(tmp_path / "bars.png")
    assert plots.bars_figure(bars, [plots.BarPanel("t", "y", ["p50", "p99"],
                                                   {"a": [1.0, None], "b": [2.0, 40.0]},
                                                   logy=True)], "title", quick=False)
    assert Path(lines).stat().st_size > 1000 and Path(bars).stat().st_size > 1000


def test_accepts_per_worker_are_counted_between_two_readings() -> None:
    before = {"workers": [{"index": 0, "pid": 10, "accepted": 5},
                          {"index": 1, "pid": 11, "accepted": 7}]}
    after = {"workers": [{"index": 1, "pid": 11, "accepted": 40},
                         {"index": 0, "pid": 12, "accepted": 30}]}  # worker 0 was replaced
    assert workers.accepted_during(before, after) == [30, 33]
    assert workers.accepted_during(before, {"requests": 1}) is None  # a single process
    assert workers.spread_pct([30, 34]) == pytest.approx(6.2, abs=0.1)
    assert workers.spread_pct([64, 0]) == 100.0
    assert workers.spread_pct([0, 0]) is None
    points = [{"case": "c", "server": "s", "accepted": counts} for counts in ([10, 30], [30, 30])]
    assert workers.summed_shares(points, "c", "s") == [40.0, 60.0]


@pytest.fixture
def evented(start_server: Callable[..., RunningServer]) -> RunningServer:
    return start_server(model="evented")


def test_the_open_loop_keeps_its_schedule(evented: RunningServer) -> None:
    records = openloop.OpenLoop("127.0.0.1", evented.port, "/small.txt", rate=200,
                                duration=0.5, connections=4).run()
    assert [r["i"] for r in records] == list(range(100))
    assert {r["status"] for r in records} == {200}
    intended = [r["intended"] for r in records]
    assert intended == sorted(intended) and intended[-1] == pytest.approx(0.495, abs=0.001)
    for record in records:  # from the due time, never less than from the send
        assert record["latency_ms"] >= record["service_ms"] > 0


def test_the_open_loop_opens_a_connection_per_request_with_close(
        evented: RunningServer) -> None:
    records = openloop.OpenLoop("127.0.0.1", evented.port, "/small.txt", rate=100,
                                duration=0.2, connections=4, close=True).run()
    assert len(records) == 20 and {r["status"] for r in records} == {200}
    assert evented.server.stats.connections_total >= 20


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose connections are accepted by the kernel and never answered."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_the_open_loop_gives_up_on_requests_never_answered(silent_listener: int) -> None:
    finished = threading.Event()
    records: list[dict[str, Any]] = []

    def run() -> None:
        records.extend(openloop.OpenLoop("127.0.0.1", silent_listener, "/", rate=20,
                                         duration=0.25, connections=2, timeout=0.3).run())
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(10), "the run is bounded: duration + timeout + a second"
    assert len(records) == 5
    assert all(r["latency_ms"] is None for r in records)
    assert {r["status"] for r in records} <= {"timeout", "unsent"}
    assert any(r["status"] == "timeout" for r in records)


# --- every lab, quick ---------------------------------------------------------------------------

def lesson_nagle(run: dict[str, Any]) -> None:
    p50 = {r["server"]: r["p50_ms"] for r in run["points"]}
    assert p50["both"] > 20, p50  # the delayed ACK: 40 ms on Linux
    assert p50["defaults"] < 5 and p50["no-nodelay"] < 5 and p50["split-writes"] < 5, p50


def lesson_selectors(run: dict[str, Any]) -> None:
    over = [r for r in run["points"] if r["idle"] == 1100]
    assert over and over[0]["server"] == "select"
    assert over[0]["held"] <= 960 and over[0]["probe_answered"] == 0
    measured = {(r["server"], r["idle"]) for r in run["points"] if r.get("rps")}
    assert {("epoll", 900), ("poll", 900), ("select", 900)} <= measured


def lesson_models(run: dict[str, Any]) -> None:
    assert {r["server"] for r in run["points"]} == {"evented", "threaded", "iterative"}
    idle = {r["server"]: r for r in run["idle"]}
    assert idle["threaded"]["threads_during"] - idle["threaded"]["threads_before"] >= 100
    assert idle["evented"]["threads_during"] == idle["evented"]["threads_before"]


def lesson_head_of_line(run: dict[str, Any]) -> None:
    def worst(model: str) -> float:
        return max(p["latency_ms"] for p in run["probes"]
                   if p["server"] == model and p["slow"] == "idle" and p["latency_ms"])

    timeout_ms = 2000  # the quick run's timeouts
    assert worst("iterative") > timeout_ms / 2
    assert worst("evented") < timeout_ms / 2 and worst("threaded") < timeout_ms / 2


def lesson_sendfile(run: dict[str, Any]) -> None:
    assert {r["server"] for r in run["points"]} == {"sendfile", "no-sendfile"}
    stats = {r["server"]: r["stats_after"] for r in run["points"] if r["file"] == "1m"}
    assert stats["sendfile"]["sendfile_bytes"] > 0
    assert stats["no-sendfile"]["sendfile_bytes"] == 0


def lesson_keep_alive(run: dict[str, Any]) -> None:
    closed = [r for r in run["points"] if r["close"]]
    assert all(r["time_wait_server"] > 0 for r in closed)
    for model in ("evented", "threaded"):
        per = {r["close"]: r["cpu_us_per_request"] for r in run["points"] if r["server"] == model}
        assert per[True] > per[False], (model, per)


def lesson_backpressure(run: dict[str, Any]) -> None:
    for flood in run["floods"]:
        assert not flood["capped"] and flood["sent_mib"] > 0
        assert flood["peak_growth_mib"] < 200, flood


def lesson_open_loop(run: dict[str, Any]) -> None:
    p99 = {r["client"]: r["p99_ms"] for r in run["points"]}
    assert p99[open_closed.OPEN_DUE] > 300, p99  # a 1 s stall in a 5 s run
    assert p99[open_closed.CLOSED] < 100, p99  # 16 slow requests of tens of thousands
    timeline = [r for r in run["requests"] if r["latency_ms"] is not None]
    assert sum(1 for r in timeline if r["latency_ms"] > 100) > 100


def lesson_workers(run: dict[str, Any]) -> None:
    points = run["points"]
    assert {p["server"] for p in points} >= {"single", "inherited x1", "exclusive x2",
                                              "reuseport x2"}
    assert all(p["requests_per_cpu_second"] for p in points)
    assert all(p["accepted"] is None for p in points if p["server"] == "single")
    for p in points:
        if p["server"] != "single":
            assert len(p["accepted"]) == p["workers"], p["accepted"]
        if p["close"] and p["server"] != "single":  # a connection per request, all counted
            assert p["accepted_total"] >= p["requests"], p
    spread = [p["accepted"] for p in points if p["server"] == "reuseport x2" and not p["close"]]
    assert spread and all(min(counts) > 0 for counts in spread), spread  # 64 over two hashes


LESSONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "nagle": lesson_nagle, "selectors": lesson_selectors, "models": lesson_models,
    "head-of-line": lesson_head_of_line, "sendfile": lesson_sendfile,
    "keep-alive": lesson_keep_alive, "backpressure": lesson_backpressure,
    "open-loop": lesson_open_loop, "workers": lesson_workers,
}


def test_every_lab_has_a_quick_test() -> None:
    assert set(LESSONS) == set(BY_NAME)


@pytest.mark.slow
@pytest.mark.parametrize("name", [each.name for each in LABS])
def test_each_lab_runs_quick_and_shows_its_lesson(name: str, tmp_path: Path) -> None:
    if base.missing_tools(BY_NAME[name]):
        pytest.skip(f"{name} needs {', '.join(BY_NAME[name].needs)}; CI installs it")
    rundir = tmp_path / "run"
    code = lab.main(["run", name, "--quick", "--out", str(rundir), "--docroot",
                     str(tmp_path / "tree")])
    assert code == 0
    summary = json.loads((rundir / "summary.json").read_text())
    assert summary["headline"] and not summary["interrupted"], summary
    assert summary["seconds"] < 60, "--quick must finish well under a minute"
    report = (rundir / "report.md").read_text()
    assert report.startswith(f"# Lab `{name}`")
    assert "Quick mode: a smoke test" in report and summary["headline"] in report
    assert "## What we expect, and why" in report
    if plots._pyplot() is not None:
        assert summary["figures"]
        for figure in summary["figures"]:
            assert (rundir / figure["file"]).stat().st_size > 1000, figure
            assert f"`{figure['file']}`: " in report
    records = {name: json.loads((rundir / f"{name}.json").read_text())
               for name in summary["records"]}
    assert all(records.values())
    LESSONS[name](records)
    assert shutil.which("pgrep") is None or not _leftover_processes(tmp_path)


def _leftover_processes(folder: Path) -> bool:
    """True when a process still names ``folder`` (the tree, the run folder): a server or a
    client the lab did not stop."""
    import subprocess

    found = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True,
                           check=False)
    return bool(found.stdout.strip())
