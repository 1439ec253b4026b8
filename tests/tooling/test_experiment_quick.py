"""The experiment runner's quick mode, end to end, as CI runs it (needs ``wrk``).

It starts the three evserver models (and ``http.server`` as a peer), runs a tiny sweep, an idle
hold and the Locust scenarios, and checks the run folder: raw data for every point, a report
with the table, the plots. Nothing is asserted about speed -- only that every point was measured
and served without errors, that the report says it is a smoke test and judges nothing, and that
every server got the same Locust workload, with the iterative model's starved users shown.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tools import experiment, plots

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None,
                       reason="wrk is not installed (apt-get install wrk); CI installs it"),
]


def test_quick_compare_writes_a_complete_run_folder(tmp_path: Path) -> None:
    rundir = str(tmp_path / "run")
    tree = str(tmp_path / "docroot")
    code = experiment.main(["compare", "--quick", "--models", "evented,threaded,iterative",
                            "--peers", "http.server", "--out", rundir, "--docroot", tree])
    assert code == 0
    with open(os.path.join(rundir, "points.json")) as points_file:
        points = json.load(points_file)
    measured = {(p["server"], p["connections"]) for p in points}
    assert measured == {(server, c) for server in ("evented", "threaded", "iterative",
                                                   "http.server") for c in (1, 64)}
    for point in points:
        if point["server"] == "evented":
            assert point["requests"] > 0 and point["non_2xx_3xx"] == 0, point["raw"]
            assert point["stats_after"]["model"] == "evented"
    with open(os.path.join(rundir, "report.md")) as report_file:
        text = report_file.read()
    assert "| 1k keep-alive c64 | evented |" in text
    assert "x evented" in text
    for label in ("evented", "threaded"):  # idle cases are held on a freshly started server
        assert os.path.exists(os.path.join(rundir, f"server-{label}-fresh.log"))
    with open(os.path.join(rundir, "samples.json")) as samples_file:
        assert json.load(samples_file), "the server was never sampled"
    assert "Quick mode: a smoke test" in text.splitlines()[2]
    assert " met" not in text and "MISSED" not in text
    assert "CPU % wrk" in text and "(min-max)" in text
    if plots._pyplot() is not None:
        for name in ("rps-1k-keep-alive.png", "latency-1k-keep-alive.png", "memory.png"):
            assert os.path.getsize(os.path.join(rundir, name)) > 1000
            assert f"`{name}`: " in text  # each plot is named with what it shows
    if experiment.locust_available():
        with open(os.path.join(rundir, "locust.json")) as locust_file:
            runs = {run["server"]: run for run in json.load(locust_file)}
        assert set(runs) == {"evented", "threaded", "iterative", "http.server"}
        workloads = {(run["users"], run["seconds"], run["scenarios"]["total"]["users"])
                     for run in runs.values()}
        assert len(workloads) == 1, workloads  # the same users and scenarios for every server
        assert runs["evented"]["scenarios"]["total"]["starved_users"] == 0
        assert runs["iterative"]["scenarios"]["total"]["starved_users"] > 0
        assert runs["iterative"]["scenarios"]["total"]["never_answered"] > 0
        assert "## Locust scenarios (the same workload for every server)" in text
        assert "Traceback" not in Path(runs["evented"]["log"]).read_text()
