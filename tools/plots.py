"""PNG figures of a run, each meant to be read at a glance, with a one-line caption.

What this module knows: matplotlib (imported lazily with the non-interactive Agg backend, so a
machine without a display -- or without matplotlib -- still gets its CSV and report) and the
record shapes of the runner and ``report.summarise``. What it must not know: how anything was
measured.

Which figure for which data:
- a case measured at one concurrency is a bar per server (``cases-*.png``); a line is drawn
  only through a sweep of several concurrencies (``rps-*.png``, ``latency-*.png``), whose x axis
  has a tick at each measured value, written as a plain number;
- p50 is always solid and p99 dashed (lines, in two panels side by side) or hatched (bars),
  and the titles and legends say so; a point where the server kept under half of wrk's
  connections open is drawn hollow (its latency describes only the clients it served);
- legends stand beside the plot, never over a line;
- memory is RSS growth against connections held, one line per server through its measured
  points, its slope (KiB per connection) in the legend (``memory.png``);
- Locust runs show answered and never-answered requests side by side (``locust.png``);
- the course lab's figures are drawn from generic panels (``lines_figure``: series of points,
  ``bars_figure``: grouped bars) that keep the same rules.
Every axis carries a label with its unit; every server keeps one colour across all figures; a
quick run says on every figure that it is a smoke test.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.report import few_connections_open, wrk_limit

DPI = 120
"""Figures are sized in inches for 120 dpi: readable on a laptop and in a rendered report."""

BIG_FILE = ("1m", "16m")
"""Files whose cases are judged by MiB/s, not requests/s (a few requests move a lot of data)."""

SMOKE_NOTE = "quick run: a smoke test -- shows that it runs, not how fast"

Figure = tuple[str, str]
"""(path of the PNG, what it shows: one line for the report)."""


WRK_BOUND_NOTE = ("hollow bars: wrk was the limit (its core busy, the server's not); they "
                  "measure wrk, not the server: compare CPU s/GiB or requests per CPU-second "
                  "in the report instead")
"""Under a throughput figure where some bars measure the load generator rather than the server."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _colours(servers: Sequence[str]) -> dict[str, str]:
    return {name: f"C{i % 10}" for i, name in enumerate(servers)}


def _plain(value: float, _: object = None) -> str:
    """A tick label as a plain number: 1, 16, 1024, 0.5 -- never 10^0 or 2^4."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


MIN_TICK_GAP = 0.06
"""Two linear-axis ticks closer than this share of the largest value would print over each
other (960 and 1,000 connections read as "1,960"): the later one is left out."""


def _spread(values: Sequence[float]) -> list[float]:
    """Sorted distinct values, dropping any within ``MIN_TICK_GAP`` of a larger one kept (the
    larger is usually the round number asked for; the smaller, what a capped server reached)."""
    kept: list[float] = []
    top = max(values, default=0) or 1
    for value in sorted(set(values), reverse=True):
        if not kept or kept[-1] - value >= MIN_TICK_GAP * top:
            kept.append(value)
    return sorted(kept)


def _ticks_at(axis: Any, values: Sequence[float], linear: bool = False) -> None:
    """Ticks at the measured values (on a linear axis, not so close that labels collide)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    axis.set_major_locator(FixedLocator(_spread(values) if linear else sorted(set(values))))
    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_locator(NullLocator())


def _plain_log_y(axes: Any, values: Sequence[float]) -> None:
    """A log y axis labelled 1, 2, 5, 10 ... (or only 1, 10, 100 ... over many decades)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    positive = [v for v in values if v and v > 0]
    decades = math.log10(max(positive) / min(positive)) if positive else 0
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 2.5
                                            else (1.0,)))
    axes.yaxis.set_major_formatter(FuncFormatter(_plain))
    axes.yaxis.set_minor_locator(NullLocator())


NOTE_CHARS_PER_INCH = 14
"""About how many characters of 8 pt text fit in an inch of figure (wider text is wrapped)."""


def _save(pyplot: Any, figure: Any, path: str, quick: bool, note: str = "") -> None:
    """Lay out and write a figure, with the smoke-test warning and a note along the bottom."""
    notes = [(text, colour) for text, colour in ((note, "dimgrey"), (SMOKE_NOTE, "firebrick"))
             if text and (text != SMOKE_NOTE or quick)]
    # A note longer than the figure is wide would be cut at both edges: wrap it.
    width = max(40, int(figure.get_figwidth() * NOTE_CHARS_PER_INCH))
    lines = [(line, colour) for text, colour in notes for line in textwrap.wrap(text, width)]
    line_height = 0.16 / figure.get_figheight()  # about 0.16 inch per line of 8 pt text
    for number, (text, colour) in enumerate(reversed(lines)):
        figure.text(0.5, 0.005 + number * line_height, text, ha="center", va="bottom",
                    fontsize=8, color=colour)
    figure.tight_layout(rect=(0, line_height * len(lines), 1, 1))
    figure.savefig(path, dpi=DPI)
    pyplot.close(figure)


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def _rounds(rows: Sequence[dict[str, Any]]) -> str:
    counts = {row.get("n", 1) for row in rows}
    return f"median of {max(counts)} rounds, whiskers min-max" if max(counts, default=1) > 1 \
        else "one round"


# --- sweeps: lines ---------------------------------------------------------------------------

def _series(rows: Sequence[dict[str, Any]], server: str,
            metric: str) -> tuple[list[int], list[float], list[float], list[float]]:
    chosen = sorted((r for r in rows if r["server"] == server and r.get(metric) is not None),
                    key=lambda r: r["connections"])
    xs = [r["connections"] for r in chosen]
    ys = [r[metric] for r in chosen]
    low = [r[metric] - r.get(metric + "_min", r[metric]) for r in chosen]
    high = [r.get(metric + "_max", r[metric]) - r[metric] for r in chosen]
    return xs, ys, low, high


SWEEP_SIZE = (9.5, 4.8)
"""A sweep's figure: the plot and, to its right, the legend (never over the lines)."""

LATENCY_SIZE = (12.5, 4.8)
"""Two panels side by side (p50, p99) and the legend to their right."""

HOLLOW = "hollow: under half of wrk's\nconnections open (see report)"


def sweep_figures(pyplot: Any, group: str, rows: Sequence[dict[str, Any]],
                  colours: dict[str, str], rundir: str, quick: bool) -> list[Figure]:
    """Requests/s and latency against concurrency for one file and connection mode."""
    servers = [s for s in colours if any(r["server"] == s for r in rows)]
    levels = sorted({r["connections"] for r in rows})
    figure, axes = pyplot.subplots(figsize=SWEEP_SIZE)
    for server in servers:
        xs, ys, low, high = _series(rows, server, "rps")
        axes.errorbar(xs, ys, yerr=[low, high], color=colours[server], marker="o", capsize=3)
    _hollow_where_waiting(axes, rows, "rps", colours)
    _concurrency_axis(axes, levels)
    axes.yaxis.set_major_formatter(_plain_formatter())
    axes.set(ylabel="requests per second",
             title=f"Throughput vs concurrency: {group} ({_rounds(rows)})")
    axes.set_ylim(bottom=0)
    _legend_right(axes, servers, colours, rows, "server (higher is better)")
    rps_path = os.path.join(rundir, f"rps-{_slug(group)}.png")
    _save(pyplot, figure, rps_path, quick)

    figure, panels = pyplot.subplots(1, 2, figsize=LATENCY_SIZE, sharey=True)
    values = [r[m] for r in rows for m in ("p50_ms", "p99_ms") if r.get(m)]
    for axes, metric, style, name in ((panels[0], "p50_ms", "-", "p50 (median), solid"),
                                      (panels[1], "p99_ms", "--", "p99, dashed")):
        for server in servers:
            xs, ys, _, _ = _series(rows, server, metric)
            axes.plot(xs, ys, linestyle=style, marker="o", color=colours[server])
        _hollow_where_waiting(axes, rows, metric, colours)
        _concurrency_axis(axes, levels)
        _plain_log_y(axes, values)
        axes.set_title(f"{name}: {group}")
    panels[0].set_ylabel("latency, ms (log scale)")
    _legend_right(panels[1], servers, colours, rows, "server (lower is better)")
    figure.suptitle(f"Latency vs concurrency ({_rounds(rows)}); wrk's closed loop: see the report",
                    fontsize=10)
    latency_path = os.path.join(rundir, f"latency-{_slug(group)}.png")
    _save(pyplot, figure, latency_path, quick)
    return [
        (rps_path, f"requests/s against concurrent connections, {group}: one line per server "
                   f"({_rounds(rows)}); higher is better"),
        (latency_path, f"p50 (left, solid) and p99 (right, dashed) latency against concurrent "
                       f"connections, {group}, log scale; lower is better"),
    ]


def _concurrency_axis(axes: Any, levels: Sequence[int]) -> None:
    axes.set_xscale("log", base=2)
    _ticks_at(axes.xaxis, levels)
    axes.set_xlabel("concurrent connections (wrk -c)")
    axes.grid(True, alpha=0.3)


def _legend_right(axes: Any, servers: Sequence[str], colours: dict[str, str],
                  rows: Sequence[dict[str, Any]], title: str) -> None:
    """One legend entry per server, outside the plot on its right (it never hides a line)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[s], marker="o", label=s) for s in servers]
    if any(few_connections_open(row) for row in rows):
        handles.append(Line2D([], [], color="black", marker="o", markerfacecolor="white",
                              linestyle="", label=HOLLOW))
    axes.legend(handles=handles, fontsize=8, title=title, title_fontsize=8,
                loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _waiting_note(row: dict[str, Any]) -> str:
    return f"{row['open_connections_max']:g} of {row['connections']} open"


def _hollow_where_waiting(axes: Any, rows: Sequence[dict[str, Any]], metric: str,
                          colours: dict[str, str]) -> None:
    """Draw hollow the points where the server kept few of wrk's connections open."""
    for row in rows:
        if few_connections_open(row) and row.get(metric):
            axes.plot([row["connections"]], [row[metric]], marker="o", markersize=9,
                      markerfacecolor="white", markeredgewidth=1.5,
                      color=colours[row["server"]], zorder=4)


def _plain_formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(_plain)


# --- single-concurrency cases: bars -----------------------------------------------------------

PANEL_INCHES_PER_BAR = 0.75
"""Width a server's bar (or pair of bars) needs with its label under it."""


def _width(bars: int, least: float) -> float:
    return max(least, PANEL_INCHES_PER_BAR * bars + 1.2)


def _grid(pyplot: Any, count: int, bars: int) -> tuple[Any, list[Any]]:
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    figure, axes = pyplot.subplots(rows, columns, squeeze=False,
                                   figsize=(_width(bars, 4.2) * columns, 3.8 * rows))
    flat = [a for line in axes for a in line]
    for spare in flat[count:]:
        spare.set_visible(False)
    return figure, flat[:count]


def _label_bars(axes: Any, bars: Any, values: Sequence[float], digits: int = 0,
                tops: Sequence[float] | None = None) -> None:
    """The value on top of each bar (above its whisker when ``tops`` gives the whiskers' tops,
    so the two never cross): whole numbers from 100 up, two significant digits below."""
    for index, (bar, value) in enumerate(zip(bars, values, strict=True)):
        text = f"{value:,.0f}" if value >= 100 or digits == 0 else f"{value:.2g}"
        top = max(bar.get_height(), tops[index]) if tops is not None else bar.get_height()
        axes.annotate(text, (bar.get_x() + bar.get_width() / 2, top),
                      ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                      textcoords="offset points")


def case_figures(pyplot: Any, cases: dict[str, list[dict[str, Any]]],
                 colours: dict[str, str], rundir: str, quick: bool) -> list[Figure]:
    """One panel per case measured at a single concurrency: a bar per server."""
    most = max(len(rows) for rows in cases.values())
    figure, panels = _grid(pyplot, len(cases), most)
    any_wrk_bound = False
    for axes, (case, rows) in zip(panels, cases.items(), strict=True):
        metric, unit = (("transfer_mib_s", "MiB/s") if rows[0].get("file") in BIG_FILE
                        else ("rps", "requests/s"))
        rows = [r for r in rows if r.get(metric) is not None]
        values = [r[metric] for r in rows]
        low = [r[metric] - r.get(metric + "_min", r[metric]) for r in rows]
        high = [r.get(metric + "_max", r[metric]) - r[metric] for r in rows]
        bars = axes.bar(range(len(rows)), values, yerr=[low, high], capsize=3,
                        color=[colours[r["server"]] for r in rows])
        for bar, row in zip(bars, rows, strict=True):
            if wrk_limit(row.get("server_cpu_pct"), row.get("loadgen_cpu_pct")) == "wrk":
                any_wrk_bound = True  # the bar measures wrk: drawn hollow, as the note says
                bar.set_facecolor("white")
                bar.set_edgecolor(colours[row["server"]])
                bar.set_linewidth(1.5)
        _label_bars(axes, bars, values, tops=[v + h for v, h in zip(values, high, strict=True)])
        _server_ticks(axes, rows)
        axes.yaxis.set_major_formatter(_plain_formatter())
        axes.set_title(case, fontsize=9)
        axes.set_ylabel(unit)
        axes.margins(y=0.15)
    figure.suptitle(f"Throughput per case, higher is better ({_rounds(_flat(cases))})",
                    fontsize=10)
    throughput = os.path.join(rundir, "cases-throughput.png")
    _save(pyplot, figure, throughput, quick, note=WRK_BOUND_NOTE if any_wrk_bound else "")

    figure, panels = _grid(pyplot, len(cases), most)
    for axes, (case, rows) in zip(panels, cases.items(), strict=True):
        rows = [r for r in rows if r.get("p50_ms") is not None]
        _latency_bars(axes, rows, colours)
        axes.set_title(case, fontsize=9)
    figure.suptitle("Latency per case: p50 solid, p99 hatched; ms, log scale, lower is better",
                    fontsize=10)
    latency = os.path.join(rundir, "cases-latency.png")
    _save(pyplot, figure, latency, quick)
    return [
        (throughput, "requests/s (MiB/s for large files) per case, a bar per server, "
                     "whiskers min-max over rounds; higher is better"),
        (latency, "p50 (solid) and p99 (hatched) latency per case, a pair of bars per server, "
                  "log scale; lower is better"),
    ]


def _flat(cases: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [row for rows in cases.values() for row in rows]


def _server_ticks(axes: Any, rows: Sequence[dict[str, Any]]) -> None:
    axes.set_xticks(range(len(rows)))
    labels = [r["server"] + (f"\n({_waiting_note(r)})" if few_connections_open(r) else "")
              for r in rows]
    axes.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)


def _latency_bars(axes: Any, rows: Sequence[dict[str, Any]], colours: dict[str, str]) -> None:
    from matplotlib.patches import Patch

    width = 0.4
    for offset, metric, hatch, alpha in ((-width / 2, "p50_ms", "", 1.0),
                                         (width / 2, "p99_ms", "///", 0.45)):
        shown = [(i, r) for i, r in enumerate(rows) if r.get(metric)]
        bars = axes.bar([i + offset for i, _ in shown], [r[metric] for _, r in shown],
                        width=width, hatch=hatch, alpha=alpha, edgecolor="black",
                        linewidth=0.5, color=[colours[r["server"]] for _, r in shown])
        _label_bars(axes, bars, [r[metric] for _, r in shown], 2)
    _plain_log_y(axes, [r[m] for r in rows for m in ("p50_ms", "p99_ms") if r.get(m)])
    _server_ticks(axes, rows)
    axes.set_ylabel("ms (log scale)")
    axes.margins(y=0.2)
    axes.legend(handles=[Patch(facecolor="grey", label="p50"),
                         Patch(facecolor="grey", alpha=0.45, hatch="///", label="p99")],
                fontsize=7)


# --- memory: RSS growth against connections held -----------------------------------------------

def slope_through_origin(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y = k x (no intercept: no connection, no growth)."""
    denominator = sum(x * x for x, _ in points)
    if not denominator:
        return None
    return sum(x * y for x, y in points) / denominator


def memory_points(idle: Sequence[dict[str, Any]], server: str,
                  keys: tuple[str, str]) -> list[tuple[float, float]]:
    """(connections held, during - before) per idle record of ``server``, for the two record
    keys given (RSS in KiB, or threads). Records where fewer than two connections held are
    left out: there is nothing per connection to see in them."""
    points = []
    for record in idle:
        if record["server"] != server or (record.get("held") or 0) < 2:
            continue
        before, during = record.get(keys[0]), record.get(keys[1])
        if before is not None and during is not None:
            points.append((float(record["held"]), float(during - before)))
    return points


def memory_figure(pyplot: Any, idle: Sequence[dict[str, Any]], colours: dict[str, str],
                  rundir: str, quick: bool) -> list[Figure]:
    figure, (memory_axes, thread_axes) = pyplot.subplots(1, 2, figsize=(11, 4.8))
    left_out = []
    held_values: set[float] = {0.0}
    for server in colours:
        if not any(r["server"] == server for r in idle):
            continue
        memory = memory_points(idle, server, ("rss_before_kib", "rss_during_kib"))
        if not memory:
            most = max((r.get("held") or 0 for r in idle if r["server"] == server), default=0)
            left_out.append(f"{server} (held {most})")
            continue
        held_values.update(x for x, _ in memory)
        slope = slope_through_origin(memory) or 0.0
        _line_with_points(memory_axes, memory, slope / 1024, colours[server],
                          f"{server}: {slope:.2f} KiB per connection", scale=1 / 1024)
        threads = memory_points(idle, server, ("threads_before", "threads_during"))
        per = slope_through_origin(threads) or 0.0
        _line_with_points(thread_axes, threads, per, colours[server],
                          f"{server}: {per:.2f} threads per connection")
    for axes, ylabel, title in (
            (memory_axes, "RSS growth, MiB (with connections open minus before)",
             "Memory vs idle connections held"),
            (thread_axes, "threads added", "Threads vs idle connections held")):
        _ticks_at(axes.xaxis, sorted(held_values), linear=True)
        axes.yaxis.set_major_formatter(_plain_formatter())
        axes.set(xlabel="idle keep-alive connections held", ylabel=ylabel, title=title)
        axes.set_xlim(left=0)
        axes.set_ylim(bottom=-0.02 * axes.get_ylim()[1])  # a line along 0 stays visible
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, title="line: least squares through 0", title_fontsize=7)
    note = ("not drawn, fewer than 2 connections held: " + ", ".join(left_out)
            if left_out else "")
    path = os.path.join(rundir, "memory.png")
    _save(pyplot, figure, path, quick, note)
    return [(path, "memory (left) and threads (right) the server adds per idle keep-alive "
                   "connection held: a line per server through its measured points, the slope "
                   "in the legend; lower is better")]


def _line_with_points(axes: Any, points: Sequence[tuple[float, float]], slope: float,
                      colour: str, label: str, scale: float = 1.0) -> None:
    xs = [x for x, _ in points]
    axes.scatter(xs, [y * scale for _, y in points], color=colour, s=18, zorder=3)
    end = max(xs)
    axes.plot([0, end], [0, slope * end], color=colour, label=label)


# --- Locust: answered and never answered -------------------------------------------------------

def locust_figure(pyplot: Any, records: Sequence[dict[str, Any]], colours: dict[str, str],
                  rundir: str, quick: bool) -> list[Figure]:
    shown = [r for r in records if (r.get("scenarios") or {}).get("total")]
    if not shown:
        return []
    figure, (count_axes, latency_axes) = pyplot.subplots(
        1, 2, figsize=(2 * _width(len(shown), 5.5), 5.2))
    totals = [r["scenarios"]["total"] for r in shown]
    positions = range(len(shown))
    answered = count_axes.bar([i - 0.2 for i in positions], [t["answered"] for t in totals],
                              width=0.4, color=[colours.get(r["server"], "grey") for r in shown])
    never = count_axes.bar([i + 0.2 for i in positions], [t["never_answered"] for t in totals],
                           width=0.4, color="white", edgecolor="firebrick", hatch="xx")
    _label_bars(count_axes, answered, [t["answered"] for t in totals])
    _label_bars(count_axes, never, [t["never_answered"] for t in totals])
    _server_ticks(count_axes, shown)
    count_axes.yaxis.set_major_formatter(_plain_formatter())
    count_axes.set(ylabel="requests", title="Locust: requests answered vs never answered")
    count_axes.legend([answered[0], never[0]], ["answered", "never answered (still waiting)"],
                      fontsize=8)
    count_axes.margins(y=0.3)  # room for the legend above the tallest bar
    # Each pair of bars is labelled with how many answers it summarises (4 of 50 is not 200).
    answered_rows, tick_colours = [], dict(colours)
    for record in shown:
        if record.get("p50_ms"):
            label = f"{record['server']}\n({record['scenarios']['total']['answered']:,} answered)"
            answered_rows.append({**record, "server": label})
            tick_colours[label] = colours.get(record["server"], "grey")
    _latency_bars(latency_axes, answered_rows, tick_colours)
    latency_axes.set_title("Locust: latency of the answered requests")
    path = os.path.join(rundir, "locust.png")
    _save(pyplot, figure, path, quick)
    return [(path, "Locust, the same user mix against each server: requests answered and never "
                   "answered (left), p50 and p99 of the answered ones (right)")]


# --- all figures of a run ----------------------------------------------------------------------

def all_figures(point_rows: Sequence[dict[str, Any]], idle: Sequence[dict[str, Any]],
                locust: Sequence[dict[str, Any]], servers: Sequence[str], rundir: str,
                quick: bool = False, sweeps: bool = True) -> list[Figure]:
    """Every figure the run's data supports; none at all without matplotlib.

    With ``sweeps``, a file and connection mode measured at several concurrencies is drawn as
    lines; without (the bench's separate cases), every case is a panel of bars.
    """
    pyplot = _pyplot()
    if pyplot is None:
        return []
    colours = _colours(servers)
    figures: list[Figure] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in point_rows:
        groups.setdefault(row["group"], []).append(row)
    single: dict[str, list[dict[str, Any]]] = {}
    for group, rows in groups.items():
        if sweeps and len({row["connections"] for row in rows}) > 1:
            figures += sweep_figures(pyplot, group, rows, colours, rundir, quick)
        else:
            for row in rows:
                single.setdefault(row["case"], []).append(row)
    if single:
        figures += case_figures(pyplot, single, colours, rundir, quick)
    if idle:
        figures += memory_figure(pyplot, idle, colours, rundir, quick)
    if locust:
        figures += locust_figure(pyplot, locust, colours, rundir, quick)
    return figures


# --- generic panels (the course lab) ---------------------------------------------------------

@dataclass
class LinePanel:
    """One plot: named series of (x, y) points, drawn as lines through markers.

    ``points_only`` draws markers alone (single requests over time); ``spans`` shades ranges of
    x with a label (a stall, a slow client's connection); ``ticks_at_x`` puts a plain-number
    tick at each measured x instead of matplotlib's own.
    """

    title: str
    xlabel: str
    ylabel: str
    series: dict[str, list[tuple[float, float]]]
    logx: bool = False
    logy: bool = False
    points_only: bool = False
    markers: bool = True
    """False: lines alone (a dense time series, where markers would hide the line)."""
    ticks_at_x: bool = True
    spans: list[tuple[float, float, str]] = field(default_factory=list)
    hollow: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Points to draw hollow on top of their series (the legend explains them: ``note``)."""


@dataclass
class BarPanel:
    """One plot of grouped bars: a group per category, a bar per series, the value on top."""

    title: str
    ylabel: str
    categories: list[str]
    series: dict[str, list[float | None]]
    logy: bool = False


def _panel_grid(pyplot: Any, count: int, width: float, height: float) -> tuple[Any, list[Any]]:
    figure, axes = pyplot.subplots(1, count, squeeze=False, figsize=(width * count, height))
    return figure, list(axes[0])


def lines_figure(path: str, panels: Sequence[LinePanel], title: str, quick: bool,
                 note: str = "", colours: dict[str, str] | None = None) -> bool:
    """Write a figure of line panels side by side; False when matplotlib is absent."""
    pyplot = _pyplot()
    if pyplot is None:
        return False
    labels = list(dict.fromkeys(label for panel in panels for label in panel.series))
    colours = colours or _colours(labels)
    figure, axes_list = _panel_grid(pyplot, len(panels), 6.2, 4.6)
    for axes, panel in zip(axes_list, panels, strict=True):
        xs_all: list[float] = []
        ys_all: list[float] = []
        for label, points in panel.series.items():
            if not points:
                continue
            points = sorted(points)
            xs, ys = [x for x, _ in points], [y for _, y in points]
            xs_all += xs
            ys_all += ys
            if panel.points_only:
                axes.scatter(xs, ys, s=6, color=colours[label], label=label, alpha=0.7)
            else:
                axes.plot(xs, ys, marker="o" if panel.markers else None, color=colours[label],
                          label=label)
        for label, points in panel.hollow.items():
            axes.scatter([x for x, _ in points], [y for _, y in points], s=70,
                         facecolors="white", edgecolors=colours.get(label, "black"),
                         linewidths=1.5, zorder=4)
        for start, end, text in panel.spans:
            axes.axvspan(start, end, color="orange", alpha=0.2, label=text)
        if panel.logx:
            axes.set_xscale("log")
        if panel.ticks_at_x and xs_all:
            _ticks_at(axes.xaxis, xs_all)
        if panel.logy and any(y > 0 for y in ys_all):
            _plain_log_y(axes, ys_all)
        else:
            axes.yaxis.set_major_formatter(_plain_formatter())
            axes.set_ylim(bottom=0)
        axes.set(xlabel=panel.xlabel, ylabel=panel.ylabel, title=panel.title)
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    _save(pyplot, figure, path, quick, note)
    return True


def bars_figure(path: str, panels: Sequence[BarPanel], title: str, quick: bool,
                note: str = "", colours: dict[str, str] | None = None) -> bool:
    """Write a figure of grouped-bar panels side by side; False when matplotlib is absent."""
    pyplot = _pyplot()
    if pyplot is None:
        return False
    most = max(len(panel.categories) * max(1, len(panel.series)) for panel in panels)
    figure, axes_list = _panel_grid(pyplot, len(panels), _width(most // 2 + 1, 4.6), 4.6)
    for axes, panel in zip(axes_list, panels, strict=True):
        names = list(panel.series)
        colours_here = colours or _colours(names)
        width = 0.8 / max(1, len(names))
        values_all: list[float] = []
        for number, name in enumerate(names):
            shown = [(i, v) for i, v in enumerate(panel.series[name]) if v is not None]
            offset = (number - (len(names) - 1) / 2) * width
            bars = axes.bar([i + offset for i, _ in shown], [v for _, v in shown], width=width,
                            color=colours_here.get(name, f"C{number}"), label=name)
            _label_bars(axes, bars, [v for _, v in shown], 2)
            values_all += [v for _, v in shown]
        axes.set_xticks(range(len(panel.categories)))
        axes.set_xticklabels(panel.categories, rotation=20, ha="right", fontsize=8)
        if panel.logy and any(v > 0 for v in values_all):
            _plain_log_y(axes, values_all)
        else:
            axes.yaxis.set_major_formatter(_plain_formatter())
        axes.set(ylabel=panel.ylabel, title=panel.title)
        axes.margins(y=0.2)
        if len(names) > 1:
            axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    _save(pyplot, figure, path, quick, note)
    return True
