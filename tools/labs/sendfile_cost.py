"""Lab ``sendfile``: what ``os.sendfile`` saves against ``read`` + ``send``, by file size.

What this lab knows: the bench files of the document root, and two evented servers that differ
only by ``--no-sendfile``. What it must not know: how the server sends (it sees the server's CPU
time, from /proc, and the bytes wrk read).
"""

from __future__ import annotations

from tools import docroot, experiment, plots, report, servers
from tools.labs.base import Lab, LabRun, point_rows, row_of, wrk_rounds

VARIANTS = (("sendfile", "evented"), ("no-sendfile", "evented --no-sendfile"))

CONNECTIONS = 8
"""Few connections: the point is the cost per byte, not how many requests overlap."""

FILES_QUICK = ("4k", "1m")
FILES_FULL = ("4k", "64k", "1m", "16m")
"""4 KiB and 64 KiB come from the server's memory cache either way (files up to 64 KiB are
cached), so they are the control: the two servers should not differ there."""


def measure(run: LabRun) -> None:
    running = run.start([servers.parse_spec(f"{label}={spec}") for label, spec in VARIANTS])
    wrk_rounds(run, running, cases_for(run), run.pick(1, 3), run.pick(2.0, 10.0))


def cases_for(run: LabRun) -> list[experiment.Case]:
    return [experiment.Case(f"{name} keep-alive c{CONNECTIONS}", "wrk", name, CONNECTIONS)
            for name in run.pick(FILES_QUICK, FILES_FULL)]


def summarise(run: LabRun) -> None:
    rows, cases = point_rows(run), cases_for(run)
    files = [case.file for case in cases]
    table_rows = []
    for case in cases:
        for label, _ in VARIANTS:
            row = row_of(rows, case.name, label)
            table_rows.append([case.file, label, report.fmt_range(row, "transfer_mib_s", 1),
                               report.fmt_range(row, "cpu_s_per_gib", 3),
                               report.fmt_range(row, "server_cpu_pct"),
                               report.fmt_range(row, "loadgen_cpu_pct"),
                               report.wrk_limit(row.get("server_cpu_pct"),
                                                row.get("loadgen_cpu_pct"))])
    run.table(f"Files of each size, keep-alive, {CONNECTIONS} connections",
              ["file", "server", "MiB/s", "CPU s/GiB", "CPU % server", "CPU % wrk", "limit"],
              table_rows,
              "`CPU s/GiB`: the server's CPU seconds (user + system) per GiB of responses. "
              "`limit` says which side was busy: where it is wrk, the MiB/s column measures "
              "wrk, and only CPU s/GiB compares the servers.")
    sizes = {name: docroot.BENCH_SIZES[name] / 1024 for name in files}

    def series(metric: str) -> dict[str, list[tuple[float, float]]]:
        return {label: [(sizes[case.file], row_of(rows, case.name, label)[metric])
                        for case in cases if row_of(rows, case.name, label).get(metric)]
                for label, _ in VARIANTS}

    def wrk_bound(metric: str) -> dict[str, list[tuple[float, float]]]:
        """The points where wrk, not the server, was busy: they measure wrk."""
        bound: dict[str, list[tuple[float, float]]] = {}
        for label, _ in VARIANTS:
            for case in cases:
                row = row_of(rows, case.name, label)
                if row.get(metric) and report.wrk_limit(row.get("server_cpu_pct"),
                                                        row.get("loadgen_cpu_pct")) == "wrk":
                    bound.setdefault(label, []).append((sizes[case.file], row[metric]))
        return bound

    throughput_bound = wrk_bound("transfer_mib_s")
    note = "files up to 64 KiB are served from memory by both servers: the control"
    if throughput_bound:
        note += "; hollow: wrk was the limit, so that MiB/s measures wrk, not the server"
    drawn = plots.lines_figure(
        run.path("sendfile.png"),
        [plots.LinePanel("server CPU per GiB sent (lower is better)", "file size, KiB (log)",
                         "CPU seconds per GiB (log)", series("cpu_s_per_gib"), logx=True,
                         logy=True),
         plots.LinePanel("throughput (higher is better)", "file size, KiB (log)",
                         "MiB/s", series("transfer_mib_s"), logx=True,
                         hollow=throughput_bound)],
        f"sendfile vs read + send, keep-alive, {CONNECTIONS} connections", run.quick, note)
    run.figure("sendfile.png", "CPU seconds per GiB (left) and MiB/s (right) against file "
                               "size, with and without sendfile", drawn)
    big = cases[-1]
    with_sf = row_of(rows, big.name, "sendfile").get("cpu_s_per_gib")
    without = row_of(rows, big.name, "no-sendfile").get("cpu_s_per_gib")
    if with_sf and without:
        run.say(f"{big.file} files: {with_sf:.3f} CPU s/GiB with sendfile, {without:.3f} "
                f"without ({without / with_sf:.2f}x the CPU per byte)")


LAB = Lab(
    name="sendfile",
    title="What sendfile buys",
    question="How much CPU does the server spend per GiB it sends, and how fast does it send, "
             "with os.sendfile against read + send, as files grow?",
    expected="No difference for files up to 64 KiB (both serve them from memory). From 1 MiB "
             "on, read + send costs clearly more CPU per GiB (every byte is copied from the "
             "page cache into Python and back into the kernel; sendfile moves pages inside "
             "the kernel); how much more depends on the machine, so compare the two lines of "
             "one run. Throughput may not differ at all when wrk, not the server, is the limit "
             "(see `limit`).",
    look_for="CPU s/GiB at 1 MiB and 16 MiB, and the ratio of the two servers there. Check the "
             "`limit` column before reading MiB/s.",
    measure=measure,
    summarise=summarise,
    minutes=(0.3, 4.0),
)
