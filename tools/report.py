"""Medians, ranges and ratios of repeated measurements, and the Markdown tables of a report.

What this module knows: the record shapes the runner writes (one dict per measured point, see
``experiment.py``) and Markdown. What it must not know: how the numbers were measured.

Invariants: a summary never invents a number -- a metric missing in every repetition is shown
as a dash; medians are over repetitions (rounds), and the min-max beside each median shows how
much the rounds disagreed, which is the honest error bar for a handful of runs.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

GIB = 1024**3

POINT_METRICS = ("rps", "p50_ms", "p99_ms", "transfer_mib_s", "errors", "cpu_seconds",
                 "server_cpu_pct", "loadgen_cpu_pct", "cpu_s_per_gib", "rss_mib", "threads",
                 "open_connections_max")
IDLE_METRICS = ("held", "rss_growth_kib_per_conn", "probe_ms_median", "probe_ms_max",
                "seconds_to_open", "threads_during")


def _values(records: Iterable[dict[str, Any]], metric: str) -> list[float]:
    return [float(r[metric]) for r in records if r.get(metric) is not None]


def summarise(records: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Group by (case, server) in first-seen order; for each metric: median, min, max."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["case"], record["server"]), []).append(record)
    rows = []
    for (case, server), members in groups.items():
        row: dict[str, Any] = {"case": case, "server": server, "n": len(members)}
        for label in ("group", "connections", "file"):  # what the plots need to place the row
            row[label] = members[0].get(label)
        for metric in metrics:
            values = _values(members, metric)
            if values:
                row[metric] = statistics.median(values)
                row[metric + "_min"], row[metric + "_max"] = min(values), max(values)
            else:
                row[metric] = None
        rows.append(row)
    return rows


def ratio(rows: Sequence[dict[str, Any]], case: str, server: str, baseline: str,
          metric: str) -> float | None:
    """``server``'s median over ``baseline``'s for one case, or None when either is missing."""
    values = {row["server"]: row.get(metric) for row in rows if row["case"] == case}
    top, bottom = values.get(server), values.get(baseline)
    if top is None or not bottom:
        return None
    return float(top) / float(bottom)


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0 and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_range(row: dict[str, Any], metric: str, digits: int = 0) -> str:
    if row.get(metric) is None:
        return "-"
    middle = fmt(row[metric], digits)
    if row["n"] < 2:
        return middle
    return f"{middle} ({fmt(row[metric + '_min'], digits)}-{fmt(row[metric + '_max'], digits)})"


POINTS_INTRO = (
    "Each cell: the median over {n} round(s), (min-max) when there were more. `x NAME`: "
    "requests/s over NAME's median in the same case. `CPU %` is of one core, for the server "
    "and for wrk (one thread); `limit` says which was busy (90% or more) -- where it says wrk, "
    "the row measures wrk, not the server. Latency from wrk, which is closed-loop: a stalled "
    "server is asked less often, and wrk's percentiles estimate the missing requests from each "
    "connection's average pace.\n")

IDLE_INTRO = (
    "The server holds N keep-alive connections that each made one request and went quiet; "
    "`RSS growth` is its resident memory with them open minus before, per connection held, on "
    "a freshly restarted server (memory kept from earlier load would hide the cost); "
    "`new client` is how long a fresh client waited for an answer meanwhile (`-`: never).\n")

LOCUST_INTRO = (
    "One Locust run per server, the same user mix and count for each. `never answered`: "
    "requests still waiting when the run stopped; `starved`: users that never got an answer. "
    "Neither appears in Locust's latency figures, which count answers only. `users (running)`: "
    "asked for (and running after scenarios that could not run on this folder stopped theirs). "
    "`limit`: which "
    "side was busy -- where it says Locust, the load generator, not the server, set the "
    "rate; `think time` means neither was: users wait between requests by design.\n")

QUICK_BANNER = (
    "> **Quick mode: a smoke test.** One round of 2-second points on a tiny tree shows that "
    "every server and tool runs and what the report looks like -- not how fast anything is. "
    "No targets are judged; run without `--quick` for numbers.\n")

BUSY = 90.0
"""Percent of a core from which a process counts as busy: it was the limit of the run."""

IDLE_BELOW = 80.0
"""Percent of a core below which a server counts as having had time to spare."""


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    return "\n".join([_row(header), "|" + "---|" * len(header), *(_row(r) for r in rows)])


markdown_table = _table
"""The public name of the table writer, for tools that write reports of their own (the lab)."""


def wrk_limit(server_pct: float | None, wrk_pct: float | None) -> str:
    """Which side of a wrk point was the bottleneck, judged by how busy each core was."""
    if server_pct is None or wrk_pct is None:
        return "-"
    if wrk_pct >= BUSY and server_pct < IDLE_BELOW:
        return "wrk"
    if server_pct >= BUSY:
        return "server"
    return "neither"


def points_table(rows: Sequence[dict[str, Any]], baselines: Sequence[str]) -> str:
    """Markdown: one line per (case, server) with medians (min-max) and ratios to baselines."""
    header = ["case", "server", "req/s", "p50 ms", "p99 ms", "MiB/s", "errors",
              "CPU % server", "CPU % wrk", "limit", "CPU s/GiB", "RSS MiB", "threads"]
    header += [f"x {name}" for name in baselines]
    lines = []
    for row in rows:
        cells = [row["case"], row["server"], fmt_range(row, "rps"), fmt_range(row, "p50_ms", 2),
                 fmt_range(row, "p99_ms", 2), fmt_range(row, "transfer_mib_s", 1),
                 fmt_range(row, "errors"), fmt_range(row, "server_cpu_pct"),
                 fmt_range(row, "loadgen_cpu_pct"),
                 wrk_limit(row.get("server_cpu_pct"), row.get("loadgen_cpu_pct")),
                 fmt_range(row, "cpu_s_per_gib", 2), fmt_range(row, "rss_mib", 1),
                 fmt_range(row, "threads")]
        for name in baselines:
            cells.append(fmt(ratio(rows, row["case"], row["server"], name, "rps"), 2))
        lines.append(cells)
    return _table(header, lines)


def point_notes(rows: Sequence[dict[str, Any]]) -> str:
    """Sentences under the wrk table: where wrk was the limit, and where a server kept fewer
    connections open than wrk made (the others waited unanswered, outside its figures)."""
    bound = [f"{row['case']} ({row['server']})" for row in rows
             if wrk_limit(row.get("server_cpu_pct"), row.get("loadgen_cpu_pct")) == "wrk"]
    if bound:
        notes = [f"**wrk was the limit** (its core busy, the server's not) in: "
                 f"{', '.join(bound)}. There the numbers measure wrk; compare CPU s/GiB "
                 f"instead, or give the load generator more cores."]
    else:
        notes = ["wrk was never the limit: in no point was its core busy while the server's "
                 "had time to spare."]
    for row in rows:
        if few_connections_open(row):
            notes.append(
                f"**{row['server']}, {row['case']}**: at most {fmt(row['open_connections_max'])}"
                f" of wrk's {row['connections']} connections were open in the server at the "
                f"moments sampled (once a second); the others waited (in its listen queue, or "
                f"to reconnect after it closed them), and the latency figures describe only "
                f"the requests it answered.")
    return "\n\n".join(notes)


def few_connections_open(row: dict[str, Any]) -> bool:
    """True when a keep-alive point kept under half of wrk's connections open: then most of
    wrk's clients were waiting, not being served (an iterative server, one that closes)."""
    most = row.get("open_connections_max")
    return (most is not None and row["connections"] > 1 and most < row["connections"] / 2
            and "keep-alive" in row.get("group", ""))


def idle_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["case", "server", "held", "RSS growth KiB/conn", "new client ms (median)",
              "new client ms (max)", "seconds to open"]
    return _table(header, ([
        row["case"], row["server"], fmt_range(row, "held"),
        fmt_range(row, "rss_growth_kib_per_conn", 2), fmt_range(row, "probe_ms_median", 2),
        fmt_range(row, "probe_ms_max", 2), fmt_range(row, "seconds_to_open", 1)]
        for row in rows))


def servers_table(commands: dict[str, str]) -> str:
    """Each server's label and the exact command line it ran with."""
    return _table(["server", "command line"],
                  ([label, f"`{command}`"] for label, command in commands.items()))


def measurement_line(record: dict[str, Any]) -> str:
    """The progress line of one measurement, as the runner prints it."""
    if record.get("group") == "idle":
        return (f"held {record['held']}, {fmt(record['rss_growth_kib_per_conn'], 2)} KiB/conn, "
                f"new client {fmt(record['probe_ms_median'], 2)} ms")
    return (f"{fmt(record['rps'])} req/s, p99 {fmt(record['p99_ms'], 2)} ms, "
            f"{record['errors']} errors, CPU server {fmt(record['server_cpu_pct'])}% "
            f"wrk {fmt(record['loadgen_cpu_pct'])}%")


# --- Locust ------------------------------------------------------------------------------------

def _scenario_total(record: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = (record.get("scenarios") or {}).get("total") or {}
    return total


def locust_limit(record: dict[str, Any]) -> str:
    """Who set the request rate of a Locust run: Locust, the server, or the users' think time."""
    loadgen, server = record.get("loadgen_cpu_pct"), record.get("server_cpu_pct")
    capacity = 100.0 * (record.get("loadgen_cores") or 1)
    total = _scenario_total(record)
    if record.get("cpu_warning"):
        return "Locust (its CPU warning)"
    if loadgen is not None and loadgen >= capacity * BUSY / 100 and (server or 0) < IDLE_BELOW:
        return "Locust (its cores busy, the server's not)"
    if server is not None and server >= BUSY:
        return "server (its core busy)"
    if total.get("starved_users") or total.get("never_answered"):
        return "server (requests waited, its core idle)"
    if loadgen is None or server is None:
        return "-"
    return "think time"


def locust_table(records: Sequence[dict[str, Any]]) -> str:
    header = ["server", "users (running)", "starved", "sent", "answered", "never answered",
              "failures", "req/s", "p50 ms", "p99 ms", "CPU % server", "CPU % Locust", "limit"]
    lines = []
    for r in records:
        total = _scenario_total(r)
        lines.append([
            r["server"], f"{fmt(r.get('users'))} ({fmt(total.get('users'))})",
            fmt(total.get("starved_users")),
            fmt(total.get("sent")), fmt(total.get("answered")),
            fmt(total.get("never_answered")), fmt(r.get("failures")), fmt(r.get("rps"), 1),
            fmt(r.get("p50_ms"), 1), fmt(r.get("p99_ms"), 1), fmt(r.get("server_cpu_pct")),
            fmt(r.get("loadgen_cpu_pct")), locust_limit(r) if not r.get("error")
            else f"error: {r['error']}"])
    return _table(header, lines)


def scenario_table(records: Sequence[dict[str, Any]]) -> str:
    """Per scenario and server: starved users of users, never-answered requests of sent."""
    servers = [r["server"] for r in records]
    per_server = {r["server"]: (r.get("scenarios") or {}).get("scenarios", {}) for r in records}
    names = list(dict.fromkeys(name for rows in per_server.values() for name in rows))
    if not names:
        return ""
    lines = []
    for name in names:
        cells = [name]
        for server in servers:
            row = per_server[server].get(name)
            cells.append("-" if row is None else
                         f"{row['starved_users']}/{row['users']} · "
                         f"{row['never_answered']}/{row['sent']}")
        lines.append(cells)
    notes = sorted({note for r in records for note in r.get("notes", [])})
    text = ("Per scenario: starved users / users · requests never answered / sent.\n\n"
            + _table(["scenario", *servers], lines))
    return text + "".join(f"\n\n- {note}" for note in notes)


def locust_line(record: dict[str, Any]) -> str:
    total = _scenario_total(record)
    if record.get("error") and not total:
        return f"error: {record['error']}"
    return (f"{fmt(total.get('answered'))} answered, {fmt(total.get('never_answered'))} never "
            f"answered, {fmt(total.get('starved_users'))} of {fmt(total.get('users'))} users "
            f"starved, {fmt(record.get('rps'), 1)} req/s; CPU server "
            f"{fmt(record.get('server_cpu_pct'))}% Locust {fmt(record.get('loadgen_cpu_pct'))}%; "
            f"limit: {locust_limit(record)}")


def write_records(rundir: str, name: str, records: Sequence[dict[str, Any]]) -> None:
    """Raw data twice: JSON (nested values kept) and CSV (flat columns, for a spreadsheet)."""
    with open(os.path.join(rundir, name + ".json"), "w") as out:
        json.dump(list(records), out, indent=1, default=str)
    if not records:
        return
    columns: list[str] = []
    for record in records:
        columns += [key for key in record if key not in columns and key != "raw"]
    with open(os.path.join(rundir, name + ".csv"), "w", newline="") as out:
        writer = csv.DictWriter(out, columns, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v
                             for k, v in record.items()})


def _case_named(rows: Sequence[dict[str, Any]], prefix: str) -> str | None:
    return next((row["case"] for row in rows if row["case"].startswith(prefix)), None)


def _verdict(value: float | None, limit: float, at_least: bool, judge: bool = True) -> str:
    if value is None:
        return "-"
    if not judge:
        return f"{value:.2f}"
    met = value >= limit if at_least else value <= limit
    return f"{value:.2f} {'met' if met else 'MISSED'}"


def targets_table(rows: Sequence[dict[str, Any]], idle_rows: Sequence[dict[str, Any]],
                  models: Sequence[str] = ("evented", "threaded", "iterative"),
                  verdicts: bool = True) -> str:
    """The performance targets: each evserver model's ratio to nginx, with a verdict unless
    ``verdicts`` is false (a quick run is too short to judge anything)."""
    keep1k, close1k = _case_named(rows, "1k keep-alive c64"), _case_named(rows, "1k new conn")
    keep64k, logged = _case_named(rows, "64k keep-alive c64"), _case_named(rows, "1k access log")
    one = _case_named(rows, "1k keep-alive c1")
    big = _case_named(rows, "16m") or _case_named(rows, "1m keep-alive c8")

    def judged(case: str | None, model: str, baseline: str, metric: str, limit: float,
               at_least: bool) -> str:
        value = ratio(rows, case or "", model, baseline, metric)
        return _verdict(value, limit, at_least, verdicts)

    def only(model: str, wanted: str, verdict: Callable[[], str]) -> str:
        return verdict() if model == wanted else "-"

    targets: list[tuple[str, Any]] = [
        ("1k keep-alive c64: req/s >= 1.00x nginx (evented)",
         lambda m: only(m, "evented", lambda: judged(keep1k, m, "nginx", "rps", 1.0, True))),
        ("1k keep-alive c64: req/s >= 0.55x nginx (threaded)",
         lambda m: only(m, "threaded", lambda: judged(keep1k, m, "nginx", "rps", 0.55, True))),
        ("1k new conn c64: req/s >= 0.90x nginx",
         lambda m: judged(close1k, m, "nginx", "rps", 0.90, True)),
        ("64k keep-alive c64: req/s >= 1.00x nginx",
         lambda m: judged(keep64k, m, "nginx", "rps", 1.0, True)),
        ("1k keep-alive c1: req/s >= 1.00x nginx",
         lambda m: judged(one, m, "nginx", "rps", 1.0, True)),
        (f"{(big or '?').split()[0]} keep-alive c8: throughput >= 0.95x nginx",
         lambda m: judged(big, m, "nginx", "transfer_mib_s", 0.95, True)),
        (f"{(big or '?').split()[0]} keep-alive c8: CPU s/GiB <= 1.5x nginx",
         lambda m: judged(big, m, "nginx", "cpu_s_per_gib", 1.5, False)),
        ("1k keep-alive c64: p99 <= 2x nginx",
         lambda m: judged(keep1k, m, "nginx", "p99_ms", 2.0, False)),
        ("access log on vs -q: >= 0.95 (evented only)",
         lambda m: only(m, "evented",
                        lambda: judged(logged, "evented+log", "evented", "rps", 0.95, True))),
    ]
    idle = {row["server"]: row for row in idle_rows}
    wanted = next((row["connections"] for row in idle_rows), None)

    def all_held(model: str) -> str:
        if model not in idle:
            return "-"
        held = idle[model]["held"]
        return fmt(held) + ("" if not verdicts else " met" if held == wanted else " MISSED")

    targets += [
        (f"idle {wanted}: all held", all_held),
        ("idle: RSS growth <= 1 KiB per connection (evented)",
         lambda m: "-" if m != "evented" or m not in idle else
         _verdict(idle[m]["rss_growth_kib_per_conn"], 1.0, False, verdicts)),
        ("idle: new client answered within 10 ms (median; max in idle table)",
         lambda m: "-" if m not in idle else
         _verdict(idle[m]["probe_ms_median"], 10.0, False, verdicts)),
    ]
    return _table(["target", *models],
                  ([label, *(judge(model) for model in models)] for label, judge in targets))


LARGE_FILES = ("1m", "16m")
"""Bench files whose figure is throughput (MiB/s) rather than requests/s."""

TLS_INTRO = (
    "`evented+tls` and `nginx+tls` serve the same files with the same certificate (made for the "
    "run), TLS 1.2 and 1.3, the server's cipher order and no session resumption, so a new "
    "connection is a full handshake in both; what a client with OpenSSL's defaults (wrk's) "
    "negotiated: {sessions}. Neither uses kernel TLS here unless evserver's banner (in its log) "
    "says `kTLS sendfile`: both encrypt in user space, in 16 KiB records.\n")


def tls_sessions_line(sessions: dict[str, str]) -> str:
    """``label: version cipher ALPN`` for each HTTPS server, for the TLS sections' intro."""
    return "; ".join(f"{label}: {text}" for label, text in sessions.items()) or "not probed"


def tls_targets_table(rows: Sequence[dict[str, Any]], verdicts: bool = True,
                      server: str = "evented+tls", baseline: str = "nginx+tls") -> str:
    """The TLS targets: ``server``'s ratio to ``baseline`` per case, with a verdict unless
    ``verdicts`` is false (a quick run judges nothing), and the CPU time per GiB of both."""
    keep, close = _case_named(rows, "1k keep-alive"), _case_named(rows, "1k new conn")
    big = _case_named(rows, "16m") or _case_named(rows, "1m keep-alive c8")
    big_name = (big or "?").split()[0]

    def judged(case: str | None, metric: str, limit: float, at_least: bool) -> str:
        return _verdict(ratio(rows, case or "", server, baseline, metric), limit, at_least,
                        verdicts)

    def per_gib(label: str) -> str:
        found = [row for row in rows if row["case"] == big and row["server"] == label]
        return fmt_range(found[0], "cpu_s_per_gib", 2) if found else "-"

    lines = [
        ("1k keep-alive c64: req/s >= 0.70x nginx", judged(keep, "rps", 0.70, True)),
        (f"{big_name} keep-alive c8: throughput >= 0.80x nginx",
         judged(big, "transfer_mib_s", 0.80, True)),
        ("1k new conn c64 (a full handshake each): req/s >= 0.80x nginx",
         judged(close, "rps", 0.80, True)),
        (f"{big_name} keep-alive c8: CPU s/GiB, {server} / {baseline}",
         f"{per_gib(server)} / {per_gib(baseline)}"),
    ]
    return _table(["target", f"{server} vs {baseline}"], lines)


def tls_cost_table(rows: Sequence[dict[str, Any]],
                   pairs: Sequence[tuple[str, str]] = (("evented", "evented+tls"),
                                                       ("nginx", "nginx+tls"))) -> str:
    """What TLS costs each server: per case, its figures over HTTP and over HTTPS, and their
    ratio (requests/s; MiB/s and CPU seconds per GiB for the large file)."""
    by_key = {(row["case"], row["server"]): row for row in rows}
    cases = list(dict.fromkeys(row["case"] for row in rows))
    lines = []
    for case in cases:
        for plain, tls in pairs:
            if (case, plain) not in by_key or (case, tls) not in by_key:
                continue
            big = by_key[(case, plain)].get("file") in LARGE_FILES
            metric = "transfer_mib_s" if big else "rps"
            digits = 1 if big else 0
            lines.append([
                case, plain, fmt_range(by_key[(case, plain)], metric, digits),
                fmt_range(by_key[(case, tls)], metric, digits),
                fmt(ratio(rows, case, tls, plain, metric), 2),
                fmt_range(by_key[(case, plain)], "cpu_s_per_gib", 2),
                fmt_range(by_key[(case, tls)], "cpu_s_per_gib", 2)])
    return _table(["case", "server", "HTTP (req/s or MiB/s)", "HTTPS", "HTTPS / HTTP",
                   "CPU s/GiB HTTP", "CPU s/GiB HTTPS"], lines)
