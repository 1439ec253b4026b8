"""Lab ``nagle``: Nagle's algorithm meets delayed ACK, and a small response waits 40 ms.

What this lab knows: the two teaching switches (``--no-nodelay``, ``--split-writes``) and the
four servers they make; one wrk connection asking for a 1 KiB file on a keep-alive connection.
What it must not know: how the server writes (it sees only latency and requests/s).
"""

from __future__ import annotations

from tools import experiment, plots, report, servers
from tools.labs.base import Lab, LabRun, point_rows, row_of, wrk_rounds

VARIANTS = (
    ("defaults", "evented", "on", "one"),
    ("no-nodelay", "evented --no-nodelay", "off", "one"),
    ("split-writes", "evented --split-writes", "on", "two"),
    ("both", "evented --no-nodelay --split-writes", "off", "two"),
)
"""(label, server spec, TCP_NODELAY, writes per response): each switch alone, and together."""

CASE = experiment.Case("1k keep-alive c1", "wrk", "1k", 1)
"""One connection, so every request waits for the one before: latency is the whole story."""


def measure(run: LabRun) -> None:
    running = run.start([servers.parse_spec(f"{label}={spec}")
                         for label, spec, _, _ in VARIANTS])
    wrk_rounds(run, running, [CASE], run.pick(1, 3), run.pick(2.0, 10.0))


def summarise(run: LabRun) -> None:
    rows = point_rows(run)
    table_rows = []
    for label, _, nodelay, writes in VARIANTS:
        row = row_of(rows, CASE.name, label)
        table_rows.append([label, nodelay, writes, report.fmt_range(row, "rps"),
                           report.fmt_range(row, "p50_ms", 2), report.fmt_range(row, "p99_ms", 2),
                           report.fmt_range(row, "server_cpu_pct")])
    run.table("1 KiB keep-alive, one connection (wrk -c1)",
              ["server", "TCP_NODELAY", "writes per response", "req/s", "p50 ms", "p99 ms",
               "CPU % server"], table_rows,
              "Each cell: the median over the rounds (min-max when there were more).")
    p50 = {label: row_of(rows, CASE.name, label).get("p50_ms") for label, *_ in VARIANTS}
    drawn = plots.bars_figure(
        run.path("nagle.png"),
        [plots.BarPanel("latency per request, 1 KiB, keep-alive, one connection",
                        "ms (log scale)", [label for label, *_ in VARIANTS],
                        {"p50": list(p50.values()),
                         "p99": [row_of(rows, CASE.name, label).get("p99_ms")
                                 for label, *_ in VARIANTS]}, logy=True),
         plots.BarPanel("requests per second on that one connection", "requests/s",
                        [label for label, *_ in VARIANTS],
                        {"req/s": [row_of(rows, CASE.name, label).get("rps")
                                   for label, *_ in VARIANTS]})],
        "Nagle + delayed ACK: only the server with both switches waits for the client's ACK",
        run.quick, "lower latency is better; 40 ms is Linux's shortest delayed ACK")
    run.figure("nagle.png", "p50 and p99 latency (left, log scale) and requests/s (right) of "
                            "the four servers", drawn)
    both, defaults = p50["both"], p50["defaults"]
    if both is not None and defaults:
        run.say(f"p50 per 1 KiB request: {both:.1f} ms with both switches, {defaults:.2f} ms "
                f"with the defaults ({both / defaults:.0f}x)")


LAB = Lab(
    name="nagle",
    title="Nagle's algorithm and delayed ACK",
    question="What does a 1 KiB keep-alive request cost at concurrency 1 when TCP_NODELAY is "
             "off and the server writes the head and the body in two sends?",
    expected="About 40 ms per request with both switches (`--no-nodelay --split-writes`), well "
             "under a millisecond with the defaults and with either switch alone. The head "
             "leaves at once; Nagle's algorithm holds the small body until the head is "
             "acknowledged; the client acknowledges only when its delayed-ACK timer fires "
             "(40 ms minimum on Linux), because it has nothing to send until it has the whole "
             "response.",
    look_for="The `both` row against the other three: one switch alone costs nothing (with "
             "TCP_NODELAY the body leaves at once; with one write there is no second segment "
             "to hold). Requests/s at one connection is 1000 / latency in ms.",
    measure=measure,
    summarise=summarise,
    minutes=(0.3, 2.5),
)
