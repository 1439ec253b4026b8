"""Lab ``workers``: a master and N worker processes -- what they cost, and who accepts.

What this lab knows: evserver's ``--workers N`` and ``--port-sharing MODE``, the per-worker rows
of its stats endpoint (``"workers"``, each with its ``"accepted"`` connections), ``wrk``, and
the server tree's CPU time from ``/proc`` (the master and all its workers). What it must not
know: how the master supervises its workers or how each mode shares the port.

Per worker count (1, 2, 4 ...), one server per port-sharing mode -- one listening socket
inherited by every worker, the same socket with ``EPOLLEXCLUSIVE``, a socket per worker with
``SO_REUSEPORT`` -- plus, beside the one-worker servers, a plain single process (no master).
Each point runs ``wrk`` with 64 connections, keep-alive and then a new connection per request,
and records requests/s, requests per server CPU-second, and each worker's accepted connections
during the point (from the server's stats between points, read on one keep-alive connection
once every worker's row is fresh: ``StatsWatch``).

The server gets the lower half of the cores (at least one), ``wrk`` the rest with a thread per
core. On a 2-core machine that is one core for all the workers: requests/s cannot grow with N
there, and the lab says so; the CPU per request and the accept shares are still measured.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from tools import experiment, plots, procstat, report, servers, wrkrun
from tools.labs.base import Lab, LabRun, log, ms, row_of

MODES = ("inherited", "exclusive", "reuseport")
"""``--port-sharing`` values, in the order the guide explains them."""

SINGLE = "single"
"""The label of the plain single process (no ``--workers``): the one-worker baseline."""

CONNECTIONS = 64

CASES = (experiment.Case(f"1k keep-alive c{CONNECTIONS}", "wrk", "1k", CONNECTIONS),
         experiment.Case(f"1k new conn c{CONNECTIONS}", "wrk", "1k", CONNECTIONS, close=True))

WORKERS_QUICK = (1, 2)
MOST_WORKERS_FULL = 4
"""A full run goes up to this many workers, or to the server's cores if there are more."""

ONE_WORKER_TARGET = 0.95
"""One worker under a master: at least this share of a single process's requests per
CPU-second (the issue's 5%)."""

SPREAD_TARGET_PCT = 20.0
"""With SO_REUSEPORT at 64 connections, every worker's share of the accepted connections
within this many percent of an equal share."""

STATS_TIMEOUT = 5.0
"""Seconds a stats request may take (the server is idle between points)."""

ROW_SECONDS = 1.2
"""How old another worker's row of the stats page may be: each worker publishes its figures
about once a second (and its own when it answers), plus a margin."""


def label(mode: str, workers: int) -> str:
    return f"{mode} x{workers}"


def worker_counts(run: LabRun, server_cores: int) -> tuple[int, ...]:
    """1, 2, 4 ... up to MOST_WORKERS_FULL or the server's cores, whichever is more."""
    if run.quick:
        return WORKERS_QUICK
    top = max(MOST_WORKERS_FULL, server_cores)
    counts, count = [], 1
    while count <= top:
        counts.append(count)
        count *= 2
    return tuple(counts)


def core_split(run: LabRun) -> tuple[set[int] | None, set[int]]:
    """(the server's cores, the load generator's): the lower half of the cores the lab may use
    for the server (at least one), the rest for ``wrk``; no pinning on one core."""
    if run.server_core is None:
        return None, set()
    available = sorted({run.server_core, *run.load_cores})
    half = max(1, len(available) // 2)
    return set(available[:half]), set(available[half:])


def specs_for(workers: int) -> list[servers.ServerSpec]:
    specs = [servers.evserver_spec("evented", "--workers", str(workers), "--port-sharing", mode,
                                   label=label(mode, workers)) for mode in MODES]
    if workers == 1:
        specs.append(servers.evserver_spec("evented", label=SINGLE))
    return specs


class StatsWatch:
    """One server's stats, read on one keep-alive connection held for the whole group of
    points, and only once every worker's row is fresh.

    A worker publishes its row about once a second (``ROW_SECONDS``), so a reading taken right
    after a point would miss the other workers' last accepts. A reading is therefore taken
    just before the server's next point (or after its last), at least ``ROW_SECONDS`` after
    its last activity: it closes the previous point (its "after") and opens the next (its
    "before"). Nothing else reaches the server in between, and the held connection was
    accepted before the first reading, so the accepts between two readings are wrk's alone.
    """

    def __init__(self, server: servers.RunningServer) -> None:
        assert server.stats_url is not None
        parts = urllib.parse.urlsplit(server.stats_url)
        self.path = parts.path
        self.connection = http.client.HTTPConnection(parts.hostname or servers.HOST,
                                                     parts.port, timeout=STATS_TIMEOUT)
        self.active_until = time.monotonic()
        self.reading: dict[str, Any] | None = None
        self.open_point: dict[str, Any] | None = None
        """The point waiting for its "after" reading."""

    def read(self) -> None:
        """A fresh reading; it completes the open point, if any."""
        time.sleep(max(0.0, self.active_until + ROW_SECONDS - time.monotonic()))
        after = self._fetch()
        if self.open_point is not None:
            complete(self.open_point, self.reading, after)
            self.open_point = None
        self.reading = after

    def measured(self, record: dict[str, Any]) -> None:
        """``record`` was just measured: it waits for the next reading."""
        self.active_until = time.monotonic()
        self.open_point = record

    def _fetch(self) -> dict[str, Any] | None:
        try:
            self.connection.request("GET", self.path)
            response = self.connection.getresponse()
            stats: dict[str, Any] = json.loads(response.read())
        except (OSError, http.client.HTTPException, ValueError):
            return None
        return stats if response.status == 200 else None

    def close(self) -> None:
        self.connection.close()


def complete(record: dict[str, Any], before: dict[str, Any] | None,
             after: dict[str, Any] | None) -> None:
    """Add a point's accepts per worker, their spread and the workers' restarts."""
    accepted = accepted_during(before, after)
    record.update({"accepted": accepted, "accepted_total": sum(accepted) if accepted else None,
                   "accept_spread_pct": spread_pct(accepted),
                   "iterations_per_request": iterations_per_request(before, after),
                   "restarts": sum(row.get("restarts", 0)
                                   for row in (after or {}).get("workers", []))})


def iterations_per_request(before: dict[str, Any] | None,
                           after: dict[str, Any] | None) -> float | None:
    """Loop iterations of the whole server (the sum over its workers) per request answered
    between two readings: each wake-up of a worker is an iteration, so a worker woken for a
    connection another one accepts (the herd) shows here. None without a loop (threads)."""
    if not before or not after:
        return None
    try:
        iterations = after["loop"]["iterations"] - before["loop"]["iterations"]
        requests = after["requests"] - before["requests"]
    except (KeyError, TypeError):
        return None
    return round(iterations / requests, 2) if requests > 0 else None


def accepted_during(before: dict[str, Any] | None,
                    after: dict[str, Any] | None) -> list[int] | None:
    """Each worker's accepted connections between two stats readings, by worker index; a
    worker replaced meanwhile (another pid) counts from its start. None without worker rows."""
    if not before or not after or "workers" not in after:
        return None
    earlier = {row["index"]: row for row in before.get("workers", [])}
    counts = []
    for row in sorted(after["workers"], key=lambda r: r["index"]):
        old = earlier.get(row["index"])
        since = old["accepted"] if old is not None and old.get("pid") == row.get("pid") else 0
        counts.append(row["accepted"] - since)
    return counts


def spread_pct(counts: Sequence[int] | None) -> float | None:
    """The largest distance of a worker's count from an equal share, in percent of it."""
    if not counts or sum(counts) == 0:
        return None
    equal = sum(counts) / len(counts)
    return round(max(abs(count - equal) for count in counts) / equal * 100, 1)


def point(run: LabRun, server: servers.RunningServer, case: experiment.Case,
          load_cores: set[int], duration: float, labels: dict[str, Any]) -> dict[str, Any]:
    """One wrk point with the server tree's CPU time (the accepts come with the next reading)."""
    cpu_before = procstat.cpu_seconds_tree(server.pid)
    result = wrkrun.run(server.url(run.bench_path(case.file)), case.connections, duration,
                        case.close, load_cores, threads=max(1, len(load_cores)))
    cpu = procstat.cpu_seconds_tree(server.pid) - cpu_before
    seconds = result.duration or duration
    return {
        **labels, "connections": case.connections, "file": case.file, "close": case.close,
        "rps": result.requests_per_second, "requests": result.requests,
        "p50_ms": ms(result.percentiles.get("50")), "p99_ms": ms(result.percentiles.get("99")),
        "errors": result.errors, "cpu_seconds": round(cpu, 3),
        "server_cpu_pct": round(cpu / seconds * 100, 1),
        "loadgen_cpu_pct": round(result.cpu_seconds / seconds * 100, 1),
        "requests_per_cpu_second": round(result.requests / cpu) if cpu > 0 else None,
        "accepted": None, "accepted_total": None, "accept_spread_pct": None,
        "iterations_per_request": None, "restarts": None,
        "wrk_exit": result.exit_code, "raw": result.raw,
    }


def measure(run: LabRun) -> None:
    server_cores, load_cores = core_split(run)
    if load_cores:
        os.sched_setaffinity(0, load_cores)  # the lab's frame restores its pinning at the end
    log(f"server on core(s) {sorted(server_cores) if server_cores else 'any'}, wrk on "
        f"{sorted(load_cores) if load_cores else 'any'} with {max(1, len(load_cores))} "
        f"thread(s)")
    for workers in worker_counts(run, len(server_cores or ())):
        running = run.start(specs_for(workers), server_cores)
        if running:
            measure_group(run, running, workers, load_cores)
        for server in running:  # the next worker count starts on a quiet machine
            server.stop()


def measure_group(run: LabRun, running: list[servers.RunningServer], workers: int,
                  load_cores: set[int]) -> None:
    """Every case on every server of one worker count, round by round, interleaved."""
    rounds, duration = run.pick(1, 3), run.pick(1.0, 5.0)
    experiment.warm_up(running, run.bench_path("1k"), run.quick, load_cores)
    watches = {server.spec.label: StatsWatch(server) for server in running}
    try:
        for round_number, case, order in experiment.interleaved(rounds, running, CASES):
            for server in run.alive(order):
                watch = watches[server.spec.label]
                watch.read()
                mode = SINGLE if server.spec.label == SINGLE else server.spec.label.split()[0]
                labels = {"round": round_number, "case": case.name,
                          "server": server.spec.label, "mode": mode, "workers": workers}
                record = run.record("points", point(run, server, case, load_cores, duration,
                                                    labels))
                watch.measured(record)
                log(f"round {round_number}/{rounds} {server.spec.label:13} {case.name:20} "
                    f"{report.fmt(record['rps'])} req/s, "
                    f"{report.fmt(record['requests_per_cpu_second'])} req per CPU-s")
        for server in run.alive(running):
            watches[server.spec.label].read()  # the accepts of each server's last point
    finally:
        for watch in watches.values():
            watch.close()


METRICS = ("rps", "requests_per_cpu_second", "server_cpu_pct", "loadgen_cpu_pct", "p99_ms",
           "errors", "accept_spread_pct", "accepted_total", "iterations_per_request")


def summed_shares(points: Sequence[dict[str, Any]], case: str,
                  server: str) -> list[float] | None:
    """Each worker's share (%) of the accepts of (case, server), over all rounds together."""
    lists = [p["accepted"] for p in points
             if p["case"] == case and p["server"] == server and p.get("accepted")]
    if not lists or len({len(counts) for counts in lists}) != 1:
        return None
    totals = [sum(column) for column in zip(*lists, strict=True)]
    whole = sum(totals)
    return [round(count / whole * 100, 1) for count in totals] if whole else None


def summarise(run: LabRun) -> None:
    points = run.records.get("points", [])
    rows = report.summarise(points, METRICS)
    where = {p["server"]: (p["mode"], p["workers"]) for p in points}
    counts = sorted({n for _, n in where.values()})
    for case in CASES:
        single = row_of(rows, case.name, SINGLE).get("requests_per_cpu_second")
        table_rows = []
        for name in sorted(where, key=lambda s: (where[s][1], s != SINGLE, s)):
            row = row_of(rows, case.name, name)
            if row["n"] == 0:
                continue
            per_cpu = row.get("requests_per_cpu_second")
            shares = summed_shares(points, case.name, name)
            table_rows.append([
                name, report.fmt_range(row, "rps"),
                report.fmt_range(row, "requests_per_cpu_second"),
                f"{per_cpu / single:.2f}x" if per_cpu and single else "-",
                report.fmt_range(row, "server_cpu_pct"), report.fmt_range(row, "loadgen_cpu_pct"),
                report.fmt_range(row, "iterations_per_request", 2),
                " / ".join(f"{share:.0f}" for share in shares) if shares else "-",
                report.fmt_range(row, "accept_spread_pct", 1), report.fmt(row.get("errors"))])
        run.table(f"{case.name}: requests, CPU and accepts per worker",
                  ["server", "req/s", "req per server CPU-s", f"x {SINGLE}", "CPU % server",
                   "CPU % wrk", "loop iterations / req", "accept shares %", "spread %",
                   "errors"], table_rows, TABLE_NOTE)
    run.sections += [targets(run, rows), ""]
    draw(run, points, rows, counts)
    headline(run, rows, points, counts)


TABLE_NOTE = (
    "`req per server CPU-s`: wrk's requests over the CPU seconds of the server's whole process "
    "tree (master and workers); `x single`: that over the plain single process's. `CPU % "
    "server` is in percent of one core. `loop iterations / req`: the event loops' iterations "
    "(all workers) per request; a worker woken for a connection another accepts adds one. "
    "`accept shares %`: each worker's share of the connections accepted during the points "
    "(all rounds together; wrk opens one connection more than its 64), worker 0 first; "
    "`spread %`: how far the most distant worker was from an equal share (median over "
    "rounds). With one core for the server, N workers share it: requests/s cannot grow with "
    "N here.")


def targets(run: LabRun, rows: list[dict[str, Any]]) -> str:
    keep_alive = CASES[0].name
    single = row_of(rows, keep_alive, SINGLE).get("requests_per_cpu_second")
    lines = ["### Targets\n"]
    table = []
    for mode in MODES:
        per_cpu = row_of(rows, keep_alive, label(mode, 1)).get("requests_per_cpu_second")
        ratio = per_cpu / single if per_cpu and single else None
        table.append([f"one worker ({mode}) vs a single process, req per CPU-s, "
                      f">= {ONE_WORKER_TARGET:.2f}x", f"{ratio:.2f}x" if ratio else "-",
                      verdict(run, ratio, ratio is not None and ratio >= ONE_WORKER_TARGET)])
    most = max((n for n in (r.get("workers") for r in run.records.get("points", [])) if n),
               default=1)
    for mode in MODES:
        spread = row_of(rows, keep_alive, label(mode, most)).get("accept_spread_pct")
        judged = mode == "reuseport" and most > 1
        table.append([f"{mode}, {most} workers, {CONNECTIONS} keep-alive connections: spread "
                      f"from an equal share" + (f" <= {SPREAD_TARGET_PCT:g}%" if judged else
                                                " (reported beside it)"),
                      f"{spread:.1f}%" if spread is not None else "-",
                      verdict(run, spread, spread is not None and spread <= SPREAD_TARGET_PCT)
                      if judged else "-"])
    lines.append(report.markdown_table(["target", "measured", "status"], table))
    return "\n".join(lines)


def verdict(run: LabRun, value: float | None, met: bool) -> str:
    if value is None:
        return "not measured"
    if run.quick:
        return "(quick run: no verdict)"
    return "met" if met else "missed"


def by_mode(rows: list[dict[str, Any]], case: str, counts: list[int],
            metric: str) -> dict[str, list[tuple[float, float]]]:
    """A line per mode through (workers, median); the single process as one point at 1."""
    lines = {mode: [(float(n), value) for n in counts
                    if (value := row_of(rows, case, label(mode, n)).get(metric))]
             for mode in MODES}
    alone = row_of(rows, case, SINGLE).get(metric)
    lines[SINGLE] = [(1.0, alone)] if alone else []
    return lines


def draw(run: LabRun, points: list[dict[str, Any]], rows: list[dict[str, Any]],
         counts: list[int]) -> None:
    colours = {name: f"C{i}" for i, name in enumerate([*MODES, SINGLE])}
    for case in CASES:
        name = f"workers-{'new-conn' if case.close else 'keep-alive'}.png"
        drawn = plots.lines_figure(
            run.path(name),
            [plots.LinePanel("requests per second", "workers", "requests/s",
                             by_mode(rows, case.name, counts, "rps")),
             plots.LinePanel("requests per server CPU-second", "workers",
                             "requests / CPU-second",
                             by_mode(rows, case.name, counts, "requests_per_cpu_second"))],
            f"{case.name}: one line per port-sharing mode; the single process at x = 1",
            run.quick, "all workers share the server's cores: on one core, requests/s cannot "
                       "grow with the workers", colours)
        run.figure(name, f"{case.name}: requests/s (left) and requests per server CPU-second "
                         f"(right) against the worker count, a line per mode", drawn)
    shown = [n for n in counts if n > 1]
    if not shown:
        return
    most = max(shown)
    categories = [label(mode, n) for n in shown for mode in MODES]
    panels = []
    for case in CASES:
        shares = {c: summed_shares(points, case.name, c) or [] for c in categories}
        panels.append(plots.BarPanel(
            f"{case.name}: share of accepted connections", "% of the accepts", categories,
            {f"worker {i}": [s[i] if i < len(s) else None for s in shares.values()]
             for i in range(most)}))
    drawn = plots.bars_figure(run.path("accept-shares.png"), panels,
                              "Who accepts: each worker's share (an equal share is 100/N %)",
                              run.quick)
    run.figure("accept-shares.png", "each worker's share of the accepted connections, per mode "
                                    "and worker count, keep-alive (left) and a new connection "
                                    "per request (right)", drawn)


def headline(run: LabRun, rows: list[dict[str, Any]], points: list[dict[str, Any]],
             counts: list[int]) -> None:
    keep_alive = CASES[0].name
    single = row_of(rows, keep_alive, SINGLE).get("requests_per_cpu_second")
    one = row_of(rows, keep_alive, label("inherited", 1)).get("requests_per_cpu_second")
    if not single or not one:
        return
    text = (f"{keep_alive}: one worker under a master {one:,.0f} requests per server "
            f"CPU-second, a single process {single:,.0f} ({one / single:.2f}x)")
    most = max(counts)
    spreads = [f"{mode} {report.fmt(spread, 1)}%" for mode in ("reuseport", "exclusive",
                                                                "inherited")
               if (spread := row_of(rows, keep_alive, label(mode, most))
                   .get("accept_spread_pct")) is not None]
    if most > 1 and spreads:
        text += (f"; with {most} workers the farthest worker's accepts are this far from an "
                 f"equal share: " + ", ".join(spreads))
    run.say(text)


LAB = Lab(
    name="workers",
    title="Worker processes and port sharing",
    question="What does a master with N worker processes cost per request against a single "
             "process, and how evenly do the workers share the accepted connections when they "
             "inherit one listening socket, add EPOLLEXCLUSIVE, or each bind their own with "
             "SO_REUSEPORT?",
    expected="One worker under a master costs about what a single process costs (within 5% "
             "in requests per server CPU-second): the master only supervises. Each wake-up "
             "accepts up to 64 connections at once, so with one inherited socket or with "
             "EPOLLEXCLUSIVE a burst (wrk's 64 connections at its start) goes to whichever "
             "worker runs first, often all of it; SO_REUSEPORT gives each worker its own queue, "
             "filled by a hash of the connection's addresses, so even a burst is shared about "
             "equally (within 20% at 64 connections). With a new connection per request the "
             "accepts spread over time and every mode comes close to equal shares. The herd "
             "(an inherited socket wakes every idle worker) costs wake-ups only where idle "
             "workers have cores of their own; on one core the workers take turns, and the one "
             "that runs finds several connections waiting and takes them in one batch. On a "
             "2-core machine the server has one core and wrk the other: N workers share that "
             "core, so requests/s stays flat or drops with the switching whatever N; the "
             "speed-up needs a machine with cores to spare (the method is in the guide).",
    look_for="The `x single` column at one worker; `loop iterations / req` of the three modes "
             "with a new connection per request; the accept shares of each mode at the largest "
             "worker count, keep-alive (a burst of 64) against new connections (thousands); "
             "the `CPU % wrk` column (above 90% per wrk thread, wrk set the pace).",
    measure=measure,
    summarise=summarise,
    minutes=(0.6, 6.0),
)
