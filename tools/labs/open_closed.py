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

CLOSED = "closed loop, as counted"
WRK = "wrk (closed, corrected)"
OPEN_DUE = "open loop, from due time"
OPEN_SENT = "open loop, from the send"
CLIENTS = (CLOSED, WRK, OPEN_DUE, OPEN_SENT)
"""The four views of the stall: a closed loop (``tools/openloop.py --closed-loop``, as many
connections as wrk) timed from each send, as a closed-loop tool counts; wrk, whose percentiles
are corrected afterwards (wrk 4 back-fills its histogram as if each connection had kept its
average pace); the open loop timed from each request's due time; the same requests timed from
their send."""


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


SLOW_MS = 100.0
"""A request slower than this counts as one the stall hurt (normal ones take about 1 ms)."""


def with_wrk(run: LabRun, server: servers.RunningServer, duration: float,
             labels: dict[str, Any]) -> dict[str, Any]:
    """wrk through the stall; its percentiles as wrk prints them (corrected, see CLIENTS)."""
    moments: list[tuple[str, float]] = []
    with stalled(server.pid, time.monotonic() + STALL_AT * duration, STALL_SECONDS, moments):
        result = wrkrun.run(server.url(run.bench_path("1k")), WRK_CONNECTIONS, duration,
                            core=run.load_cores)
    return {**labels, "client": WRK, "requests": result.requests,
            "p50_ms": ms(result.percentiles.get("50")), "p90_ms": ms(result.percentiles.get("90")),
            "p99_ms": ms(result.percentiles.get("99")), "max_ms": ms(result.latency_max),
            "errors": result.errors, "stalled": len(moments) == 2, "raw": result.raw}


def with_own_client(run: LabRun, server: servers.RunningServer, duration: float,
                    labels: dict[str, Any], closed: bool) -> list[dict[str, Any]]:
    """``tools/openloop.py`` through the stall: open (on a schedule) or closed (as wrk asks,
    counted as a closed loop counts, with no correction). Open-loop requests are kept."""
    moments: list[tuple[str, float]] = []
    client = start_open_loop(run, server, run.bench_path("1k"), run.pick(RATE_QUICK, RATE_FULL),
                             duration, timeout=OPEN_LOOP_TIMEOUT, closed_loop=closed,
                             connections=WRK_CONNECTIONS if closed else OPEN_LOOP_CONNECTIONS)
    with stalled(server.pid, client.start_at + STALL_AT * duration, STALL_SECONDS, moments):
        records = finish_open_loop(run, client)
    times = dict(moments)
    answered = [r for r in records if r["latency_ms"] is not None]
    summary = {**labels, "requests": len(records), "failed": len(records) - len(answered),
               "stalled": len(times) == 2}
    if closed:
        return [{**summary, "client": CLOSED, **timed(answered, "latency_ms")}]
    for record in records:
        run.record("requests", {**labels, **record})
    if len(times) == 2:
        summary.update(stall_from_s=round(times["stop"] - client.start_at, 3),
                       stall_to_s=round(times["continue"] - client.start_at, 3))
    return [{**summary, "client": OPEN_DUE, **timed(answered, "latency_ms")},
            {**summary, "client": OPEN_SENT, **timed(answered, "service_ms")}]


def timed(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The percentiles of one way of timing the requests, and how many were slow by it."""
    values = [r[key] for r in records]
    return {**latency_summary(values), "slow": sum(1 for v in values if v > SLOW_MS)}


def measure(run: LabRun) -> None:
    running = run.start([servers.evserver_spec("evented")])
    if not running:
        return
    server = running[0]
    duration = run.pick(DURATION_QUICK, DURATION_FULL)
    rounds = run.pick(1, 3)
    for round_number in range(1, rounds + 1):
        labels = {"round": round_number, "server": server.spec.label}
        records = [*with_own_client(run, server, duration, labels, closed=True),
                   with_wrk(run, server, duration, labels),
                   *with_own_client(run, server, duration, labels, closed=False)]
        for record in records:
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
              f"Closed loop and wrk: {WRK_CONNECTIONS} connections, each asking again as "
              f"soon as it is answered; the closed loop counted from each send (no correction), "
              f"wrk's percentiles as it prints them, corrected afterwards (it back-fills the "
              f"requests each connection would have sent at its average pace; it does not say "
              f"how many were slow). Open loop: {run.pick(RATE_QUICK, RATE_FULL):g} requests/s "
              f"on a schedule, the same requests timed from when each was due and from when it "
              f"was sent.")
    categories = ["p50", "p90", "p99", "max"]
    drawn = plots.bars_figure(
        run.path("percentiles.png"),
        [plots.BarPanel("latency percentiles with a 1 s stall", "ms (log scale)", categories,
                        {name: [by_client[name].get(f"{c}_ms") for c in categories]
                         for name in CLIENTS if name in by_client}, logy=True)],
        "The same stall through closed loops and an open loop", run.quick,
        "medians over the rounds; wrk corrects its figures afterwards, the closed loop does not")
    run.figure("percentiles.png", "p50, p90, p99 and max latency of the same kind of stall, as "
                                  "a closed loop counts it, as wrk corrects it, and as the open "
                                  "loop sees it (from the due time and from the send)", drawn)
    last = max((r["round"] for r in run.records.get("requests", [])), default=None)
    requests = [r for r in run.records.get("requests", []) if r["round"] == last]
    stall = next((r for r in run.records.get("points", []) if r.get("round") == last
                  and r.get("stall_from_s") is not None), None)
    spans = ([(stall["stall_from_s"], stall["stall_to_s"], "server stopped (SIGSTOP)")]
             if stall else [])
    drawn = plots.lines_figure(
        run.path("timeline.png"),
        [plots.LinePanel("every open-loop request, timed two ways",
                         "seconds into the run (when the request was due)", "ms (log)",
                         {"from the due time": [(r["intended"], r["latency_ms"]) for r in requests
                                                if r["latency_ms"] is not None],
                          "from the send": [(r["intended"], r["service_ms"]) for r in requests
                                            if r["service_ms"] is not None]},
                         logy=True, points_only=True, ticks_at_x=False, spans=spans)],
        "Open loop: every request due during the stall waits for it", run.quick,
        f"round {last}; one point per request; about 1 ms of every due-time figure is the "
        f"client's own timer (epoll waits in whole milliseconds)")
    run.figure("timeline.png", "each open-loop request's latency against when it was due, timed "
                               "from the due time and from the send; the stall shaded", drawn)
    closed, wrk, due = (by_client.get(name, {}) for name in (CLOSED, WRK, OPEN_DUE))
    if closed.get("p99_ms") is not None and due.get("p99_ms") is not None:
        run.say(f"a {STALL_SECONDS:g} s stall: p99 {report.fmt(closed['p99_ms'], 1)} ms as a "
                f"closed loop counts it (max {report.fmt(closed.get('max_ms'), 0)} ms), "
                f"{report.fmt(wrk.get('p99_ms'), 1)} ms by wrk's correction, "
                f"{report.fmt(due['p99_ms'], 1)} ms from the open loop's due times")


LAB = Lab(
    name="open-loop",
    title="Open vs closed loop (coordinated omission)",
    question="A server stalls for one second. What do closed-loop load generators (a plain "
             "one, and wrk) and an open-loop one (a constant rate, latency from each "
             "request's due time) report?",
    expected="A closed loop counted as it runs hides the stall: each of its 16 connections has "
             "one request in flight, so the stall delays 16 requests out of tens of thousands; "
             "p99 stays near a millisecond and only `max` shows the second. The open loop keeps "
             "sending on schedule: every request due during the stall waits for its end, so "
             "with a 1 s stall in a 10 s run about one request in ten is slow and p99 is close "
             "to a second. Timed from their send instead, the same requests hide most of it "
             "again. wrk 4 corrects its percentiles afterwards (it back-fills the requests each "
             "connection would have sent at its average pace), so its p99 shows the stall too: "
             "an estimate, where the open loop measures.",
    look_for="The p99 bars: the closed loop's against the open loop's, and where wrk's "
             "corrected figure falls; the `requests over 100 ms` column; in `timeline.png` the "
             "triangle of requests due during the stall (the later one was due, the less it "
             "waited).",
    measure=measure,
    summarise=summarise,
    minutes=(0.4, 2.0),
)
