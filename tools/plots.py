"""PNG figures of a run: throughput and latency against concurrency, memory against connections.

What this module knows: matplotlib (imported lazily with the non-interactive Agg backend, so a
machine without a display -- or without matplotlib -- still gets its CSV and report) and the
summary rows of ``report.summarise``. What it must not know: how anything was measured.

Every axis carries a label with its unit; every server keeps one colour and marker across all
figures so a reader can follow a model from one plot to the next.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

MARKERS = "osD^vP*Xh"
FIGURE_SIZE = (7.5, 4.8)
"""Inches at 120 dpi: readable on a laptop screen and in a rendered Markdown report."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def _style(servers: Sequence[str]) -> dict[str, dict[str, Any]]:
    colours = [f"C{i}" for i in range(10)]
    return {name: {"color": colours[i % 10], "marker": MARKERS[i % len(MARKERS)]}
            for i, name in enumerate(servers)}


def _series(rows: Sequence[dict[str, Any]], group: str, server: str,
            metric: str) -> tuple[list[int], list[float], list[float], list[float]]:
    chosen = sorted((r for r in rows if r.get("group") == group and r["server"] == server
                     and r.get(metric) is not None), key=lambda r: r["connections"])
    xs = [r["connections"] for r in chosen]
    ys = [r[metric] for r in chosen]
    low = [r[metric] - r[metric + "_min"] for r in chosen]
    high = [r[metric + "_max"] - r[metric] for r in chosen]
    return xs, ys, low, high


def sweep_figures(rows: Sequence[dict[str, Any]], rundir: str) -> list[str]:
    """req/s and p50/p99 latency against concurrency, one figure per file size and mode."""
    pyplot = _pyplot()
    if pyplot is None:
        return []
    servers = list(dict.fromkeys(r["server"] for r in rows))
    style = _style(servers)
    written: list[str] = []
    for group in dict.fromkeys(r["group"] for r in rows if r.get("group")):
        figure, axes = pyplot.subplots(figsize=FIGURE_SIZE)
        for server in servers:
            xs, ys, low, high = _series(rows, group, server, "rps")
            if xs:
                axes.errorbar(xs, ys, yerr=[low, high], label=server, capsize=3, **style[server])
        axes.set(xscale="log", xlabel="concurrent connections (wrk -c, log scale)",
                 ylabel="requests per second (median of rounds)",
                 title=f"Throughput vs concurrency: {group}")
        axes.set_ylim(bottom=0)
        _finish(axes, figure, pyplot, os.path.join(rundir, f"rps-{_slug(group)}.png"), written)

        figure, axes = pyplot.subplots(figsize=FIGURE_SIZE)
        for server in servers:
            for metric, line in (("p50_ms", "-"), ("p99_ms", "--")):
                xs, ys, _, _ = _series(rows, group, server, metric)
                if xs:
                    axes.plot(xs, ys, linestyle=line, label=f"{server} {metric[:3]}",
                              **style[server])
        axes.set(xscale="log", yscale="log", xlabel="concurrent connections (wrk -c, log scale)",
                 ylabel="latency in ms (log scale)",
                 title=f"p50 (solid) and p99 (dashed) latency: {group}")
        _finish(axes, figure, pyplot, os.path.join(rundir, f"latency-{_slug(group)}.png"),
                written)
    return written


def memory_figure(samples: Sequence[dict[str, Any]], rundir: str) -> list[str]:
    """RSS and threads against open sockets, from every once-a-second sample of every server."""
    pyplot = _pyplot()
    if pyplot is None or not samples:
        return []
    servers = list(dict.fromkeys(s["server"] for s in samples))
    style = _style(servers)
    figure, (memory_axes, thread_axes) = pyplot.subplots(1, 2, figsize=(11, 4.8))
    for server in servers:
        mine = [s for s in samples if s["server"] == server]
        sockets = [s["sockets"] for s in mine]
        memory_axes.scatter(sockets, [s["rss_kib"] / 1024 for s in mine], s=14, label=server,
                            alpha=0.7, color=style[server]["color"],
                            marker=style[server]["marker"])
        thread_axes.scatter(sockets, [s["threads"] for s in mine], s=14, label=server,
                            alpha=0.7, color=style[server]["color"],
                            marker=style[server]["marker"])
    memory_axes.set(xlabel="open sockets in the server (from /proc/<pid>/fd)",
                    ylabel="resident memory, MiB (RSS, whole process tree)",
                    title="Memory vs open connections")
    thread_axes.set(xlabel="open sockets in the server (from /proc/<pid>/fd)",
                    ylabel="threads (whole process tree)", title="Threads vs open connections")
    for axes in (memory_axes, thread_axes):
        axes.set_xscale("symlog", linthresh=10)
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    path = os.path.join(rundir, "memory-threads.png")
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return [path]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def _finish(axes: Any, figure: Any, pyplot: Any, path: str, written: list[str]) -> None:
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    written.append(path)
