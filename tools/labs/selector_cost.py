"""Lab ``selectors``: what select, poll and epoll cost as the watched set grows.

What this lab knows: three evented servers that differ only by ``--selector``, a holder of N
idle keep-alive connections (``experiment.held_connections``), one wrk connection as the
active client, the server's CPU time (/proc) and its loop counter (the stats endpoint). What it
must not know: how the reactor polls.

One point: N idle connections open, then one active client asks for a 1 KiB file as fast as it
can. Each of its requests costs the server a loop iteration or two, and each iteration's poll
must, for select and poll, hand the kernel all N + 1 descriptors and look at all of them; epoll
keeps the set in the kernel and returns only the ready ones. So the CPU time per iteration (and
with it the active client's latency) grows with N for select and poll and stays flat for epoll.
select cannot watch descriptor 1024 or above: evserver caps it at 960 connections, and one
point asks for more to show what a client then meets.
"""

from __future__ import annotations

import resource
from typing import Any

from tools import experiment, plots, procstat, report, servers, wrkrun
from tools.labs.base import Lab, LabRun, log, ms

SELECTORS = ("epoll", "poll", "select")

LEVELS_QUICK = (10, 300, 900)
LEVELS_FULL = (10, 100, 300, 900, 3000, 10000)
"""Idle connections held; select stops at 900 (its cap is 960)."""

SELECT_CAP = 960
"""evserver's connection cap with select: FD_SETSIZE (1024) less its 64 spare descriptors."""

OVER_SELECT_LIMIT = 1100
"""The point that asks select for more connections than it can watch."""

SPARE_DESCRIPTORS = 200
"""Descriptors beyond the held connections: listener, wrk, files, stdio, the probes."""


def selector_specs() -> list[servers.ServerSpec]:
    return [servers.parse_spec(f"{name}=evented --selector {name}") for name in SELECTORS]


def point(run: LabRun, server: servers.RunningServer, level: int, labels: dict[str, Any],
          duration: float, open_timeout: float) -> dict[str, Any]:
    """Hold ``level`` idle connections, then time one active client and the loop."""
    path = run.bench_path("1k")
    record: dict[str, Any] = {**labels, "idle": level}
    with experiment.held_connections(server.port, level, path, open_timeout,
                                     run.load_cores) as held:
        record["held"] = held.get("held", 0)
        if level > SELECT_CAP and server.spec.label == "select":
            timings, failures = experiment.probe_new_client(server.port, path)
            record.update(probe_answered=len(timings), probe_failures=failures)
            return record
        before = procstat.fetch_stats(server.stats_url, 2.0) if server.stats_url else None
        cpu_before = procstat.cpu_seconds_tree(server.pid)
        result = wrkrun.run(server.url(path), 1, duration, core=run.load_cores)
        cpu = procstat.cpu_seconds_tree(server.pid) - cpu_before
        after = procstat.fetch_stats(server.stats_url, 2.0) if server.stats_url else None
    iterations = (after["loop"]["iterations"] - before["loop"]["iterations"]
                  if before and after else 0)
    record.update({
        "rps": result.requests_per_second, "requests": result.requests,
        "p50_ms": ms(result.percentiles.get("50")),
        "p99_ms": ms(result.percentiles.get("99")), "errors": result.errors,
        "cpu_seconds": round(cpu, 4), "iterations": iterations,
        "cpu_us_per_iteration": round(cpu / iterations * 1e6, 2) if iterations else None,
        "cpu_us_per_request": round(cpu / result.requests * 1e6, 2) if result.requests else None,
    })
    return record


def usable_levels(run: LabRun, levels: tuple[int, ...]) -> list[int]:
    """The levels this process's descriptor limit allows; the others are reported."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    usable = [n for n in levels if n + SPARE_DESCRIPTORS <= limit]
    if len(usable) < len(levels):
        left_out = ", ".join(str(n) for n in levels if n not in usable)
        run.problems.append(
            f"descriptor limit {limit}: left out {left_out}"
            f" idle connections (raise the hard limit: ulimit -Hn, or limits.conf)")
    return usable


def asked(selector: str, level: int) -> bool:
    """Which points a selector gets: select up to its cap plus the one point over it, the
    others every level but that one."""
    if level == OVER_SELECT_LIMIT:
        return selector == "select"
    return selector != "select" or level <= SELECT_CAP


def measure(run: LabRun) -> None:
    levels = usable_levels(run, run.pick(LEVELS_QUICK, LEVELS_FULL))
    running = run.start(selector_specs())
    experiment.warm_up(running, run.bench_path("1k"), run.quick, run.load_cores)
    rounds, duration = run.pick(1, 3), run.pick(1.0, 5.0)
    open_timeout = run.pick(3.0, 30.0)  # the most it waits: 10,000 connects take seconds
    cases = [*levels, OVER_SELECT_LIMIT]
    for round_number, level, order in experiment.interleaved(rounds, running, cases):
        for server in run.alive(order):
            name = server.spec.label
            if not asked(name, level):
                continue
            labels = {"round": round_number, "case": f"idle {level}", "server": name}
            record = run.record("points", point(run, server, level, labels, duration,
                                                open_timeout))
            log(f"round {round_number}/{rounds} {name:7} idle {level:6}: held "
                f"{record['held']}, {report.fmt(record.get('cpu_us_per_iteration'), 1)} us CPU "
                f"per iteration, p50 {report.fmt(record.get('p50_ms'), 3)} ms")


METRICS = ("held", "rps", "p50_ms", "p99_ms", "cpu_us_per_iteration", "cpu_us_per_request",
           "probe_answered", "probe_failures")


def summarise(run: LabRun) -> None:
    rows = report.summarise(run.records.get("points", []), METRICS)
    measured = [r for r in rows if r.get("rps") is not None]
    run.table("One active client (wrk -c1, 1 KiB) beside N idle keep-alive connections",
              ["server", "idle asked", "held", "CPU us / iteration", "CPU us / request",
               "p50 ms", "p99 ms", "req/s"],
              [[r["server"], r["case"].split()[1], report.fmt_range(r, "held"),
                report.fmt_range(r, "cpu_us_per_iteration", 1),
                report.fmt_range(r, "cpu_us_per_request", 1),
                report.fmt_range(r, "p50_ms", 3), report.fmt_range(r, "p99_ms", 3),
                report.fmt_range(r, "rps")] for r in measured],
              "`CPU us / iteration`: the server's CPU time during the point over its loop "
              "iterations (from its stats endpoint), so the cost of one poll plus the work "
              "around it.")
    over = [r for r in rows if r.get("probe_answered") is not None]
    for row in over:
        run.table(f"select asked for {OVER_SELECT_LIMIT} connections",
                  ["server", "held", "new clients answered", "new clients not answered (1 s)"],
                  [[row["server"], report.fmt(row.get("held")),
                    report.fmt(row.get("probe_answered")), report.fmt(row.get("probe_failures"))]],
                  f"With select, evserver accepts at most {SELECT_CAP} connections (descriptors "
                  f"stay below 1024); the rest, and every new client, wait in the listen queue.")
    draw(run, measured)
    epoll = {r["case"]: r for r in measured if r["server"] == "epoll"}
    top = {r["server"]: r for r in measured if r["case"] == f"idle {max(LEVELS_QUICK)}"}
    if "select" in top and "epoll" in top and top["epoll"].get("cpu_us_per_iteration"):
        text = (f"CPU per loop iteration with {max(LEVELS_QUICK)} idle connections: "
                + ", ".join(f"{name} {report.fmt(top[name].get('cpu_us_per_iteration'), 1)} us"
                            for name in SELECTORS if name in top))
        biggest = max((r for r in measured if r["server"] == "poll"),
                      key=lambda r: int(r["case"].split()[1]), default=None)
        if biggest and biggest["case"] in epoll and biggest["case"] != f"idle {max(LEVELS_QUICK)}":
            text += (f"; at {biggest['case'].split()[1]}: poll "
                     f"{report.fmt(biggest.get('cpu_us_per_iteration'), 1)} us, epoll "
                     f"{report.fmt(epoll[biggest['case']].get('cpu_us_per_iteration'), 1)} us")
        if over:
            text += (f"; select asked for {OVER_SELECT_LIMIT}: held {report.fmt(over[0]['held'])}, "
                     f"{report.fmt(over[0].get('probe_answered'))} new clients answered")
        run.say(text)


def draw(run: LabRun, rows: list[dict[str, Any]]) -> None:
    def series(metric: str) -> dict[str, list[tuple[float, float]]]:
        return {name: [(float(r["case"].split()[1]), r[metric]) for r in rows
                       if r["server"] == name and r.get(metric) is not None]
                for name in SELECTORS}

    cap = [(float(SELECT_CAP), SELECT_CAP * 1.15, f"select's cap: {SELECT_CAP} connections")]
    drawn = plots.lines_figure(
        run.path("selectors.png"),
        [plots.LinePanel("server CPU per loop iteration", "idle connections (log)",
                         "microseconds (log)", series("cpu_us_per_iteration"), logx=True,
                         logy=True, spans=cap),
         plots.LinePanel("active client's latency (wrk -c1, p50)",
                         "idle connections (log)", "ms (log)", series("p50_ms"),
                         logx=True, logy=True, spans=cap)],
        "select and poll hand the kernel every descriptor on every iteration; epoll does not",
        run.quick, "x: idle connections asked for; the report's table says how many were held")
    run.figure("selectors.png", "CPU per loop iteration (left) and the active client's p50 "
                                "(right) against idle connections, one line per selector, "
                                "log-log; lower is better", drawn)


LAB = Lab(
    name="selectors",
    title="select vs poll vs epoll",
    question="What does one loop iteration cost, and how long does an active client wait, as "
             "the number of idle connections the loop watches grows -- and what happens at "
             "descriptor 1024 with select?",
    expected="select and poll grow linearly with the watched set (each poll passes and scans "
             "every descriptor: in the kernel, and for select in Python too), epoll stays flat "
             "(the set lives in the kernel; a poll returns only ready descriptors). With select "
             f"the server holds at most {SELECT_CAP} connections: asked for "
             f"{OVER_SELECT_LIMIT}, it holds {SELECT_CAP} and new clients are not answered.",
    look_for="The slope of each line on the log-log plot (a slope of 1 is linear growth), the "
             "ratio select/epoll at 900 and poll/epoll at the largest N, and the table of the "
             f"{OVER_SELECT_LIMIT}-connection point.",
    measure=measure,
    summarise=summarise,
    minutes=(0.4, 7.0),
)
