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
from collections.abc import Iterable, Sequence
from typing import Any

GIB = 1024**3

POINT_METRICS = ("rps", "p50_ms", "p99_ms", "transfer_mib_s", "errors", "cpu_seconds",
                 "cpu_s_per_gib", "rss_mib", "threads")
IDLE_METRICS = ("held", "rss_growth_kib_per_conn", "probe_ms_median", "probe_ms_max",
                "seconds_to_open")


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
        for label in ("group", "connections"):  # what the plots need to place the row
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


def points_table(rows: Sequence[dict[str, Any]], baselines: Sequence[str]) -> str:
    """Markdown: one line per (case, server) with medians (min-max) and ratios to baselines."""
    header = ["case", "server", "req/s median (min-max)", "p50 ms", "p99 ms (min-max)",
              "MiB/s", "errors", "CPU s/GiB", "RSS MiB", "threads"]
    header += [f"x {name}" for name in baselines]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["case"], row["server"], fmt_range(row, "rps"), fmt(row["p50_ms"], 2),
                 fmt_range(row, "p99_ms", 2), fmt(row["transfer_mib_s"], 1),
                 fmt(row["errors"]), fmt(row["cpu_s_per_gib"], 2), fmt(row["rss_mib"], 1),
                 fmt(row["threads"])]
        for name in baselines:
            cells.append(fmt(ratio(rows, row["case"], row["server"], name, "rps"), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def idle_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["case", "server", "held (min-max)", "RSS growth KiB/conn", "new client ms median",
              "new client ms max", "seconds to open"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([
            row["case"], row["server"], fmt_range(row, "held"),
            fmt_range(row, "rss_growth_kib_per_conn", 2), fmt(row["probe_ms_median"], 2),
            fmt(row["probe_ms_max"], 2), fmt(row["seconds_to_open"], 1)]) + " |")
    return "\n".join(lines)


def locust_table(records: Sequence[dict[str, Any]]) -> str:
    header = ["server", "users", "requests", "failures", "req/s", "median ms", "p99 ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in records:
        lines.append("| " + " | ".join([
            r["server"], fmt(r.get("users")), fmt(r.get("requests")), fmt(r.get("failures")),
            fmt(r.get("rps"), 1), fmt(r.get("median_ms"), 1), fmt(r.get("p99_ms"), 1)]) + " |")
    return "\n".join(lines)


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


def _verdict(value: float | None, limit: float, at_least: bool) -> str:
    if value is None:
        return "-"
    met = value >= limit if at_least else value <= limit
    return f"{value:.2f} {'met' if met else 'MISSED'}"


def targets_table(rows: Sequence[dict[str, Any]], idle_rows: Sequence[dict[str, Any]],
                  models: Sequence[str] = ("evented", "threaded", "iterative")) -> str:
    """Issue 7's table: each target, and each evserver model's ratio to nginx with a verdict."""
    keep1k, close1k = _case_named(rows, "1k keep-alive"), _case_named(rows, "1k new conn")
    keep64k, logged = _case_named(rows, "64k keep-alive c64"), _case_named(rows, "1k access log")
    big = _case_named(rows, "16m") or _case_named(rows, "64k keep-alive c8")
    targets: list[tuple[str, Any]] = [
        ("1k keep-alive c64: req/s >= 0.80x nginx",
         lambda m: _verdict(ratio(rows, keep1k or "", m, "nginx", "rps"), 0.80, True)),
        ("1k new conn c64: req/s >= 0.80x nginx",
         lambda m: _verdict(ratio(rows, close1k or "", m, "nginx", "rps"), 0.80, True)),
        ("64k keep-alive c64: req/s >= 0.90x nginx",
         lambda m: _verdict(ratio(rows, keep64k or "", m, "nginx", "rps"), 0.90, True)),
        (f"{(big or '?').split()[0]} keep-alive c8: throughput >= 0.95x nginx",
         lambda m: _verdict(ratio(rows, big or "", m, "nginx", "transfer_mib_s"), 0.95, True)),
        (f"{(big or '?').split()[0]} keep-alive c8: CPU s/GiB <= 1.5x nginx",
         lambda m: _verdict(ratio(rows, big or "", m, "nginx", "cpu_s_per_gib"), 1.5, False)),
        ("1k keep-alive c64: p99 <= 2x nginx",
         lambda m: _verdict(ratio(rows, keep1k or "", m, "nginx", "p99_ms"), 2.0, False)),
        ("access log on vs -q: >= 0.85 (evented only)",
         lambda m: _verdict(ratio(rows, logged or "", "evented+log", "evented", "rps"), 0.85,
                            True) if m == "evented" else "-"),
    ]
    idle = {row["server"]: row for row in idle_rows}
    wanted = next((row["connections"] for row in idle_rows), None)
    targets += [
        (f"idle {wanted}: all held",
         lambda m: "-" if m not in idle else
         f"{fmt(idle[m]['held'])} {'met' if idle[m]['held'] == wanted else 'MISSED'}"),
        ("idle: RSS growth <= 2 KiB per connection",
         lambda m: "-" if m not in idle else
         _verdict(idle[m]["rss_growth_kib_per_conn"], 2.0, False)),
        ("idle: new client answered within 10 ms (median; max in idle table)",
         lambda m: "-" if m not in idle else _verdict(idle[m]["probe_ms_median"], 10.0, False)),
    ]
    lines = ["| target | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for label, judge in targets:
        lines.append(f"| {label} | " + " | ".join(judge(model) for model in models) + " |")
    return "\n".join(lines)
