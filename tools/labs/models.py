"""Lab ``models``: events vs threads vs one connection at a time.

What this lab knows: the experiment runner's sweep (wrk at rising concurrency) and idle hold
(N quiet keep-alive connections, the memory and threads they cost), run on the three models.
What it must not know: how the models work inside.
"""

from __future__ import annotations

import os
from typing import Any

from tools import experiment, plots, report, servers
from tools.labs.base import Lab, LabRun, log, point_rows, row_of, wrk_rounds

MODELS = ("evented", "threaded", "iterative")

HOLDING_MODELS = ("evented", "threaded")
"""The iterative model holds one connection at a time: an idle hold would only show that."""

CONNECTIONS_QUICK = (1, 64)
CONNECTIONS_FULL = (1, 16, 64, 256, 1024)
HOLDS_QUICK = (200,)
HOLDS_FULL = (100, 1000, 5000)


def measure(run: LabRun) -> None:
    # Room for the holds, the probe and the stats requests under the threaded model's cap.
    room = ("--max-connections", str(max(run.pick(HOLDS_QUICK, HOLDS_FULL)) + 100))
    running = run.start([servers.evserver_spec(model, *room, label=model) for model in MODELS])
    rounds = run.pick(1, 3)
    wrk_rounds(run, running, cases_for(run), rounds, run.pick(2.0, 5.0))
    holders = [server for server in running if server.spec.label in HOLDING_MODELS]
    hold_idle(run, holders, run.pick(HOLDS_QUICK, HOLDS_FULL), rounds)


def cases_for(run: LabRun) -> list[experiment.Case]:
    return [experiment.Case(f"1k keep-alive c{c}", "wrk", "1k", c)
            for c in run.pick(CONNECTIONS_QUICK, CONNECTIONS_FULL)]


def summarise(run: LabRun) -> None:
    rows = point_rows(run)
    idle = run.records.get("idle", [])
    idle_rows = report.summarise(idle, report.IDLE_METRICS)
    if rows:
        run.sections += [
            "### Requests/s and latency against concurrency (wrk, 1 KiB, keep-alive)\n",
            report.POINTS_INTRO.format(n=max(row["n"] for row in rows)),
            report.points_table(rows, ["evented"]), "", report.point_notes(rows), ""]
    if idle_rows:
        run.sections += ["### Idle keep-alive connections\n", report.IDLE_INTRO,
                         report.idle_table(idle_rows), "",
                         "The iterative model is not held: it holds one connection at a time.", ""]
    for path, shows in plots.all_figures(rows, idle, [], list(MODELS), run.rundir, run.quick):
        run.figure(os.path.basename(path), shows, True)
    headline(run, rows, idle_rows, cases_for(run)[-1])


def hold_idle(run: LabRun, holders: list[servers.RunningServer], holds: tuple[int, ...],
              rounds: int) -> None:
    """Each idle case on a server restarted for it (``holders`` is updated in place): a process
    that has just served wrk's connections reuses the memory they left and would look free."""
    cases = [experiment.Case(f"idle {n}", "idle", "1k", n) for n in holds]
    for round_number, case, order in experiment.interleaved(rounds, holders, cases):
        for server in run.alive(order):
            fresh = run.restart_fresh(server, holders)
            if fresh is None:
                continue
            labels = {"round": round_number, "case": case.name, "server": fresh.spec.label}
            record = experiment.measure_idle(fresh, case, run.manifest, run.pick(5.0, 20.0),
                                             run.load_cores, labels,
                                             run.records.setdefault("samples", []))
            run.record("idle", record)
            log(f"round {round_number}/{rounds} {fresh.spec.label:10} {case.name:12} "
                f"{report.measurement_line(record)}")


def headline(run: LabRun, rows: list[dict[str, Any]], idle_rows: list[dict[str, Any]],
             top: experiment.Case) -> None:
    parts = []
    for model in MODELS:
        row = row_of(rows, top.name, model)
        if row.get("rps") is None:
            continue
        if model == "iterative":  # its p99 describes the one client it serves, not the others
            parts.append(f"{model} {report.fmt(row['rps'])} req/s, one connection served at a "
                         f"time (its p99 describes only that one)")
        else:
            parts.append(f"{model} {report.fmt(row['rps'])} req/s, p99 "
                         f"{report.fmt(row.get('p99_ms'), 1)} ms")
    memory = [f"{row['server']} {report.fmt(row.get('rss_growth_kib_per_conn'), 1)} KiB"
              for row in idle_rows if row["case"] == idle_rows[-1]["case"]] if idle_rows else []
    if parts:
        run.say(f"at {top.connections} connections: " + "; ".join(parts)
                + (f". Memory per idle connection: {', '.join(memory)}" if memory else ""))


LAB = Lab(
    name="models",
    title="Events vs threads vs one at a time",
    question="How do requests/s and p99 latency change with concurrency (1 to 1,024) for the "
             "evented, threaded and iterative models, and what does each open connection cost "
             "in memory and threads?",
    expected="At concurrency 1 the three are close (one request at a time whatever the model). "
             "As concurrency grows, the evented model keeps its requests/s and its p99 grows "
             "about linearly with the queue; the threaded model serves fewer requests/s (the "
             "GIL and a thread switch per request) and its p99 grows faster; the iterative "
             "model serves one connection and the others wait in its listen queue, so its "
             "figures describe one client (the report marks those points). An idle "
             "connection costs the evented model one to two KiB and no thread, the threaded "
             "model one thread and 20 to 30 KiB.",
    look_for="Where the threaded line falls below the evented one, how the p99 lines part "
             "from 64 connections on, and the slopes in `memory.png` (KiB and threads per "
             "connection).",
    measure=measure,
    summarise=summarise,
    minutes=(0.4, 5.0),
)
