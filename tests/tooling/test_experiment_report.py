"""Reports and plots that cannot mislead, from hand-made records (no server, no load).

The report names the side that limited a point (server, wrk, Locust, or the users' think
time), says where a server kept few of wrk's connections open, shows min-max beside medians,
and judges nothing in quick mode. The plots draw bars for cases measured at one concurrency and
lines only through sweeps, and fit memory per connection through the measured points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools import plots, report


def point(case: str, server: str, connections: int, rps: float, **extra: Any
          ) -> dict[str, Any]:
    return {"case": case, "server": server, "connections": connections, "group": "1k keep-alive",
            "file": "1k", "rps": rps, "p50_ms": 1.0, "p99_ms": 4.0, "transfer_mib_s": rps / 1000,
            "server_cpu_pct": 95.0, "loadgen_cpu_pct": 50.0, **extra}


def test_the_limiting_side_of_a_wrk_point() -> None:
    assert report.wrk_limit(99.0, 60.0) == "server"
    assert report.wrk_limit(50.0, 97.0) == "wrk"
    assert report.wrk_limit(50.0, 40.0) == "neither"
    assert report.wrk_limit(None, 40.0) == "-"


def test_notes_name_wrk_limits_and_servers_that_kept_few_connections_open() -> None:
    rows = report.summarise([
        point("1k keep-alive c64", "evented", 64, 9000.0, open_connections_max=64),
        point("1k keep-alive c64", "iterative", 64, 3000.0, open_connections_max=1,
              server_cpu_pct=40.0, loadgen_cpu_pct=30.0),
        point("1k keep-alive c64", "nginx", 64, 9500.0, server_cpu_pct=60.0,
              loadgen_cpu_pct=98.0, open_connections_max=64),
    ], report.POINT_METRICS)
    notes = report.point_notes(rows)
    assert "**wrk was the limit** (its core busy, the server's not) in: 1k keep-alive c64 " \
           "(nginx)" in notes
    assert "**iterative, 1k keep-alive c64**: at most 1 of wrk's 64 connections" in notes
    assert "evented," not in notes
    table = report.points_table(rows, ["evented"])
    assert "| 1k keep-alive c64 | nginx | 9,500 |" in table and "| wrk |" in table


def test_every_median_has_its_range_beside_it() -> None:
    records = [point("c", "evented", 1, rps, round=n) for n, rps in enumerate((90., 100., 120.))]
    row = report.summarise(records, report.POINT_METRICS)[0]
    line = report.points_table([row], []).splitlines()[2]
    assert "| 100 (90-120) |" in line  # requests/s
    assert "| 1.00 (1.00-1.00) |" in line  # p50, unchanged over rounds, still with its range


def test_quick_targets_carry_no_verdict() -> None:
    records = [point("1k keep-alive c64", "nginx", 64, 1000.0),
               point("1k keep-alive c64", "evented", 64, 500.0)]
    rows = report.summarise(records, report.POINT_METRICS)
    judged = report.targets_table(rows, [], models=("evented",))
    quick = report.targets_table(rows, [], models=("evented",), verdicts=False)
    assert "0.50 MISSED" in judged
    assert "| 0.50 |" in quick and "MISSED" not in quick and " met" not in quick


def locust_record(server: str, starved: int, never: int, **extra: Any) -> dict[str, Any]:
    scenarios = {"Browser": {"users": 10, "starved_users": starved, "sent": 40,
                             "answered": 40 - never, "never_answered": never}}
    total = {"users": 10, "starved_users": starved, "sent": 40, "answered": 40 - never,
             "never_answered": never}
    return {"server": server, "users": 12, "seconds": 5, "rps": 8.0, "p50_ms": 2.0,
            "p99_ms": 9.0, "failures": 0, "server_cpu_pct": 3.0, "loadgen_cpu_pct": 5.0,
            "loadgen_cores": 1, "scenarios": {"scenarios": scenarios, "total": total},
            "notes": ["Downloader cannot run: the folder has no file of 1 MiB or more"],
            **extra}


def test_locust_rows_say_who_set_the_rate() -> None:
    assert report.locust_limit(locust_record("evented", 0, 0)) == "think time"
    assert report.locust_limit(locust_record("iterative", 9, 30)).startswith(
        "server (requests waited")
    assert report.locust_limit(locust_record("evented", 0, 0, cpu_warning=True)).startswith(
        "Locust (its CPU warning)")
    busy = locust_record("evented", 0, 0, loadgen_cpu_pct=99.0, server_cpu_pct=30.0)
    assert report.locust_limit(busy) == "Locust (its cores busy, the server's not)"
    two_cores = {**busy, "loadgen_cores": 2}
    assert report.locust_limit(two_cores) == "think time"  # 99% of two cores is half busy
    assert report.locust_limit(locust_record("nginx", 0, 0, server_cpu_pct=97.0)) == \
        "server (its core busy)"


def test_locust_tables_show_starved_users_per_scenario() -> None:
    records = [locust_record("evented", 0, 0), locust_record("iterative", 9, 30)]
    table = report.locust_table(records)
    assert "| iterative | 12 (10) | 9 | 40 | 10 | 30 |" in table
    scenarios = report.scenario_table(records)
    assert "| Browser | 0/10 · 0/40 | 9/10 · 30/40 |" in scenarios
    assert scenarios.count("Downloader cannot run") == 1


def test_memory_slope_goes_through_the_origin() -> None:
    assert plots.slope_through_origin([(1000, 800.0), (5000, 4000.0)]) == pytest.approx(0.8)
    assert plots.slope_through_origin([]) is None
    idle = [{"server": "iterative", "held": 1, "rss_before_kib": 10, "rss_during_kib": 50},
            {"server": "evented", "held": 1000, "rss_before_kib": 10, "rss_during_kib": 810}]
    assert plots.memory_points(idle, "iterative", ("rss_before_kib", "rss_during_kib")) == []
    assert plots.memory_points(idle, "evented", ("rss_before_kib", "rss_during_kib")) == [
        (1000.0, 800.0)]


@pytest.fixture
def pyplot() -> Any:
    found = plots._pyplot()
    if found is None:
        pytest.skip("matplotlib is not installed (the plot extra)")
    return found


def test_sweeps_are_lines_and_single_cases_are_bars(pyplot: Any, tmp_path: Path) -> None:
    sweep = [point(f"1k keep-alive c{c}", server, c, 1000.0 * c, n=1)
             for c in (1, 16, 64) for server in ("evented", "threaded")]
    single = [{**point("64k keep-alive c64", server, 64, 900.0), "group": "64k keep-alive",
               "file": "64k", "n": 1} for server in ("evented", "threaded")]
    rows = report.summarise(sweep + single, report.POINT_METRICS)
    names = [Path(path).name for path, _ in plots.all_figures(
        rows, [], [], ["evented", "threaded"], str(tmp_path))]
    assert names == ["rps-1k-keep-alive.png", "latency-1k-keep-alive.png",
                     "cases-throughput.png", "cases-latency.png"]
    bench = [Path(path).name for path, _ in plots.all_figures(
        rows, [], [], ["evented", "threaded"], str(tmp_path), sweeps=False)]
    assert bench == ["cases-throughput.png", "cases-latency.png"]


def test_ticks_are_plain_numbers(pyplot: Any) -> None:
    figure, axes = pyplot.subplots()
    axes.plot([1, 16, 64, 1024], [0.2, 1, 30, 400])
    axes.set_xscale("log", base=2)
    plots._ticks_at(axes.xaxis, [1, 16, 64, 1024])
    plots._plain_log_y(axes, [0.2, 400])
    figure.canvas.draw()
    x_labels = [tick.get_text() for tick in axes.get_xticklabels()]
    y_labels = {tick.get_text() for tick in axes.get_yticklabels()}
    pyplot.close(figure)
    assert x_labels == ["1", "16", "64", "1,024"]
    assert {"1", "10", "100"} <= y_labels
    assert not any("^" in label or "$" in label for label in y_labels)


def test_linear_ticks_never_print_over_each_other() -> None:
    # A select() server held 960 where 1,000 were asked: the two labels would read "1,960".
    assert plots._spread([960, 1000, 5000]) == [1000, 5000]
    assert plots._spread([0, 200]) == [0, 200]
    assert plots._spread([1000, 5000, 10000]) == [1000, 5000, 10000]


def test_bars_that_measure_wrk_are_hollow_and_said_so(pyplot: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{**point("16m keep-alive c8", server, 8, 100.0), "group": "16m keep-alive",
             "file": "64k", "n": 1, "server_cpu_pct": server_pct, "loadgen_cpu_pct": 99.0}
            for server, server_pct in (("evented", 40.0), ("threaded", 99.0))]
    saved: list[tuple[str, list[bool], str]] = []

    def keep(pyplot: Any, figure: Any, path: str, quick: bool, note: str = "") -> None:
        bars = [patch for patch in figure.axes[0].patches if patch.get_height() > 0]
        saved.append((Path(path).name, [bar.get_facecolor()[:3] == (1.0, 1.0, 1.0)
                                        for bar in bars], note))
        pyplot.close(figure)

    monkeypatch.setattr(plots, "_save", keep)
    plots.case_figures(pyplot, {"16m keep-alive c8": report.summarise(
        rows, report.POINT_METRICS)}, {"evented": "C0", "threaded": "C1"}, str(tmp_path), False)
    name, hollow, note = saved[0]
    assert name == "cases-throughput.png"
    assert hollow == [True, False]  # evented's core was idle while wrk's was busy
    assert note == plots.WRK_BOUND_NOTE
