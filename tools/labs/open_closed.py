"""Lab ``open-loop``: a one-second stall, seen by a closed-loop and by an open-loop client.

What this lab knows: how to stall a server (SIGSTOP, then SIGCONT a second later), ``wrk``
(closed loop: each connection waits for its answer before it asks again) and the constant-rate
client ``tools/openloop.py`` (open loop: requests leave on a schedule, latency counts from when
each was due). What it must not know: how the server works.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from tools import plots, report, servers, wrkrun
from tools.labs.base import (
    Lab,
    LabRun,
    finish_open_loop,
    latency_summary,
    log,
    ms,
    start_open_loop,
)

STALL_SECONDS = 1.0
"""How long the server is stopped: long against its normal latency, short against the run."""

STALL_AT = 0.4
"""When the stall begins, as a share of the run's duration."""

WRK_CONNECTIONS = 16
OPEN_LOOP_CONNECTIONS = 64
"""Connections of the open-loop client: enough that it rarely queues outside a stall."""

RATE_QUICK = 500.0
RATE_FULL = 1000.0
"""Requests per second of the open loop: well under what the server can serve, so it is idle
most of the time and any queue comes from the stall."""

OPEN_LOOP_TIMEOUT = 5.0

DURATION_QUICK = 5.0
DURATION_FULL = 10.0
"""Seconds of each run, wrk's and the open loop's; the stall is one second of it."""

CLIENTS = ("wrk (closed loop)", "open loop, from the due time", "open loop, from the send")


@contextlib.contextmanager
def stalled(pid: int, start_at: float, seconds: float,
            moments: list[tuple[str, float]]) -> Iterator[None]:
    """Stop process ``pid`` at ``start_at`` (a time.monotonic() reading) for ``seconds``, in a
    thread, while the body runs; it is always continued, whatever happens in the body."""
    finished = threading.Event()

    def stall() -> None:
        if finished.wait(max(0.0, start_at - time.monotonic())):
            return
        os.kill(pid, signal.SIGSTOP)
        moments.append(("stop", time.monotonic()))
        finished.wait(seconds)
        os.kill(pid, signal.SIGCONT)
        moments.append(("continue", time.monotonic()))

    thread = threading.Thread(target=stall, name="stall", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join(seconds + 1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def closed_loop(run: LabRun, server: servers.RunningServer, duration: float,
                labels: dict[str, Any]) -> dict[str, Any]:
    moments: list[tuple[str, float]] = []
    with stalled(server.pid, time.monotonic() + STALL_AT * duration, STALL_SECONDS, moments):
        result = wrkrun.run(server.url(run.bench_path("1k")), WRK_CONNECTIONS, duration,
                            core=run.load_cores)
    return {**labels, "client": CLIENTS[0], "requests": result.requests,
            "p50_ms": ms(result.percentiles.get("50")), "p90_ms": ms(result.percentiles.get("90")),
            "p99_ms": ms(result.percentiles.get("99")), "max_ms": ms(result.latency_max),
            "errors": result.errors, "stalled": len(moments) == 2, "raw": result.raw}


def open_loop(run: LabRun, server: servers.RunningServer, duration: float,
              labels: dict[str, Any]) -> list[dict[str, Any]]:
    moments: list[tuple[str, float]] = []
    client = start_open_loop(run, server, run.bench_path("1k"), run.pick(RATE_QUICK, RATE_FULL),
                             duration, connections=OPEN_LOOP_CONNECTIONS,
                             timeout=OPEN_LOOP_TIMEOUT)
    with stalled(server.pid, client.start_at + STALL_AT * duration, STALL_SECONDS, moments):
        records = finish_open_loop(run, client)
    times = dict(moments)
    for record in records:
        run.record("requests", {**labels, **record})
    answered = [r for r in records if r["latency_ms"] is not None]
    stall = ((times["stop"] - client.start_at, times["continue"] - client.start_at)
             if len(times) == 2 else None)
    summary = {**labels, "requests": len(records), "failed": len(records) - len(answered),
               "stall_from_s": round(stall[0], 3) if stall else None,
               "stall_to_s": round(stall[1], 3) if stall else None}
    due = latency_summary([r["latency_ms"] for r in answered])
    sent = latency_summary([r["service_ms"] for r in answered])
    slow = sum(1 for r in answered if r["latency_ms"] > SLOW_MS)
    return [{**summary, "client": CLIENTS[1], **due, "slow": slow},
            {**summary, "client": CLIENTS[2], **sent,
             "slow": sum(1 for r in answered if r["service_ms"] > SLOW_MS)}]


SLOW_MS = 100.0
"""A request slower than this counts as one the stall hurt (normal ones take about 1 ms)."""


def measure(run: LabRun) -> None:
    running = run.start([servers.evserver_spec("evented")])
    if not running:
        return
    server = running[0]
    duration = run.pick(DURATION_QUICK, DURATION_FULL)
    rounds = run.pick(1, 3)
    for round_number in range(1, rounds + 1):
        labels = {"round": round_number, "server": server.spec.label}
        closed = run.record("points", closed_loop(run, server, duration, labels))
        log(f"round {round_number}/{rounds} wrk: p99 {report.fmt(closed['p99_ms'], 2)} ms, max "
            f"{report.fmt(closed['max_ms'], 1)} ms")
        for record in open_loop(run, server, duration, labels):
            run.record("points", record)
            log(f"round {round_number}/{rounds} {record['client']}: p99 "
                f"{report.fmt(record['p99_ms'], 2)} ms, max {report.fmt(record['max_ms'], 1)} ms")


def summarise(run: LabRun) -> None:
    duration = run.pick(DURATION_QUICK, DURATION_FULL)
    rows = report.summarise([{**r, "case": r["client"]} for r in run.records.get("points", [])],
                            ("requests", "p50_ms", "p90_ms", "p99_ms", "max_ms", "slow"))
    by_client = {row["case"]: row for row in rows}
    run.table(f"The same server, a {STALL_SECONDS:g} s stall {STALL_AT * duration:g} s into a "
              f"{duration:g} s run",
              ["client", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms",
               f"requests over {SLOW_MS:g} ms"],
              [[name, report.fmt_range(row, "requests"), report.fmt_range(row, "p50_ms", 2),
                report.fmt_range(row, "p90_ms", 2), report.fmt_range(row, "p99_ms", 2),
                report.fmt_range(row, "max_ms", 1), report.fmt_range(row, "slow")]
               for name in CLIENTS if (row := by_client.get(name))],
              f"wrk: {WRK_CONNECTIONS} connections, as fast as answers come (it does not tell "
              f"how many requests were slow: at most one per connection). Open loop: "
              f"{run.pick(RATE_QUICK, RATE_FULL):g} requests/s on a schedule; the same "
              f"requests timed two ways, from when each was due and from when it was sent.")
    categories = ["p50", "p90", "p99", "max"]
    drawn = plots.bars_figure(
        run.path("percentiles.png"),
        [plots.BarPanel("latency percentiles with a 1 s stall", "ms (log scale)", categories,
                        {name: [by_client[name].get(f"{c}_ms") for c in categories]
                         for name in CLIENTS if name in by_client}, logy=True)],
        "The same stall through a closed loop (wrk) and an open loop", run.quick,
        "medians over the rounds")
    run.figure("percentiles.png", "p50, p90, p99 and max latency as wrk and the open-loop client "
                                  "saw the same kind of stall", drawn)
    last = max((r["round"] for r in run.records.get("requests", [])), default=None)
    requests = [r for r in run.records.get("requests", []) if r["round"] == last]
    stall = next((r for r in run.records.get("points", []) if r.get("round") == last
                  and r.get("stall_from_s") is not None), None)
    spans = ([(stall["stall_from_s"], stall["stall_to_s"], "server stopped (SIGSTOP)")]
             if stall else [])
    drawn = plots.lines_figure(
        run.path("timeline.png"),
        [plots.LinePanel("every open-loop request: latency from its due time",
                         "seconds into the run (when the request was due)", "ms (log)",
                         {"from the due time": [(r["intended"], r["latency_ms"]) for r in requests
                                                if r["latency_ms"] is not None],
                          "from the send": [(r["intended"], r["service_ms"]) for r in requests
                                            if r["service_ms"] is not None]},
                         logy=True, points_only=True, ticks_at_x=False, spans=spans)],
        "Open loop: every request due during the stall waits for it", run.quick,
        f"round {last}; one point per request")
    run.figure("timeline.png", "each open-loop request's latency against when it was due, timed "
                               "from the due time and from the send; the stall shaded", drawn)
    closed, opened = by_client.get(CLIENTS[0]), by_client.get(CLIENTS[1])
    if closed and opened and closed.get("p99_ms") is not None:
        run.say(f"a {STALL_SECONDS:g} s stall: wrk's p99 {report.fmt(closed['p99_ms'], 1)} ms "
                f"(max {report.fmt(closed.get('max_ms'), 0)} ms), the open loop's p99 "
                f"{report.fmt(opened.get('p99_ms'), 1)} ms")


LAB = Lab(
    name="open-loop",
    title="Open vs closed loop (coordinated omission)",
    question="A server stalls for one second. What do a closed-loop load generator (wrk) and "
             "an open-loop one (a constant rate, latency from each request's due time) report?",
    expected="wrk's p99 hides the stall: each of its connections has one request in flight, "
             "so the stall delays 16 requests out of tens of thousands and only `max` shows it "
             "(about 1,000 ms). The open loop keeps sending on schedule: every request due "
             "during the stall waits for its end, so with a 1 s stall in a 10 s run about one "
             "request in ten is slow and its p99 is close to a second. Timing the same requests "
             "from their send instead of their due time hides most of it again.",
    look_for="The p99 bars of wrk against the open loop, and in `timeline.png` the triangle "
             "of requests due during the stall (a slope of -1: the later one was due, the less "
             "it waited).",
    measure=measure,
    summarise=summarise,
    minutes=(0.4, 1.5),
)
