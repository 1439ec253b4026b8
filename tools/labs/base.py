"""The course lab's frame: what a lab is, what one run of it owns, and the report it leaves.

What this module knows: the shape every lab shares -- a question, an expected result, what to
look for, the tools it needs, and a ``measure`` function -- and the run folder it fills: raw
records (``<name>.json`` and ``.csv``), PNG figures, ``summary.json`` and ``report.md``. What
it must not know: what any lab measures (each lab's module says that), how servers are started
or measured (``tools.servers``, ``tools.experiment``, ``tools.wrkrun``), how figures are drawn
(``tools.plots``).

Invariants:
- Every process a lab starts goes through its ``LabRun`` (``start`` for servers, ``spawn`` for
  clients), which stops all of them when the lab ends, fails, or is interrupted with Ctrl-C; a
  server stopped with SIGSTOP is continued before it is stopped.
- Every load is bounded: a lab gives each client a duration and a count, and each child process
  a time limit (``LabRun.wait`` stops one that overstays).
- A quick run is a smoke test and says so in its report, its headline and every figure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools import cores, experiment, report, servers

QUICK_BANNER = (
    "> **Quick mode: a smoke test.** Short points, one round: it shows that the lab runs and "
    "what its report and plots look like. Its numbers are not the lesson's; run the lab without "
    "`--quick` on a quiet machine for those.\n")

INSTALL = {"wrk": experiment.INSTALL_WRK,
           "nginx": f"nginx is not installed ({servers.INSTALL_HINTS['nginx']})"}
"""What to install for each external tool a lab may need (one line each)."""

CHILD_GRACE = 30.0
"""Seconds beyond its own duration that a client process may take before it is stopped."""


@dataclass(frozen=True)
class Lab:
    """One experiment of the course: everything ``list`` shows and ``run`` needs."""

    name: str
    title: str
    question: str
    expected: str
    look_for: str
    measure: Callable[[LabRun], None]
    """Starts what the lab needs and records what it measures (``LabRun.record``)."""
    summarise: Callable[[LabRun], None]
    """Turns the records into tables, figures and the headline: also after Ctrl-C, from
    whatever was recorded until then."""
    needs: tuple[str, ...] = ("wrk",)
    minutes: tuple[float, float] = (0.5, 5.0)
    """Rough duration of a quick and of a full run, in minutes (shown before it starts)."""


@dataclass
class LabRun:
    """One run of one lab: its folder, its processes, and what it measured so far."""

    lab: Lab
    quick: bool
    rundir: str
    docroot: str
    server_core: int | None = None
    load_cores: set[int] = field(default_factory=set)
    manifest: dict[str, Any] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)
    """Markdown of the results: tables and the sentences that go with them, in order."""
    figures: list[tuple[str, str]] = field(default_factory=list)
    """(file name in the run folder, what it shows)."""
    headline: str = ""
    problems: list[str] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    running: list[servers.RunningServer] = field(default_factory=list)
    """Every server this run started (stopped at the end)."""
    children: list[subprocess.Popen[Any]] = field(default_factory=list)
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)

    # -- choosing sizes ----------------------------------------------------------------------

    def pick(self, quick: Any, full: Any) -> Any:
        """The quick value in a quick run, else the full one."""
        return quick if self.quick else full

    def path(self, name: str) -> str:
        return os.path.join(self.rundir, name)

    def bench_path(self, name: str) -> str:
        """The URL path of a bench file (``1k``, ``64k`` ...) of the document root."""
        return str(self.manifest["bench"][name])

    # -- processes ---------------------------------------------------------------------------

    def start(self, specs: Sequence[servers.ServerSpec],
              cores: Iterable[int] | None = None) -> list[servers.RunningServer]:
        """Start servers pinned to the server core (or to ``cores``); those that start are
        returned (and stopped at the end); one that does not is reported in the run's
        problems."""
        progress = experiment.Progress()
        started: list[servers.RunningServer] = []
        try:
            experiment.start_specs(servers.label_specs(specs), self.docroot, self.rundir,
                                   self.server_core if cores is None else cores, progress,
                                   started)
        finally:
            self.running += started
            self.commands.update(progress.commands)
            self.problems += progress.problems
        return started

    def restart_fresh(self, server: servers.RunningServer,
                      holders: list[servers.RunningServer]) -> servers.RunningServer | None:
        """Stop ``server`` and start it again, in its place in ``holders`` and in the run's
        list (see ``experiment.restart_fresh`` for why memory is measured on a fresh process).
        None, and a problem reported, if it does not start again."""
        progress = experiment.Progress()
        index = self.running.index(server)
        fresh = experiment.restart_fresh(server, self.docroot, self.rundir, self.server_core,
                                         holders, progress)
        if fresh is None:
            self.running.pop(index)
        else:
            self.running[index] = fresh
        self.commands.update(progress.commands)
        self.problems += progress.problems
        return fresh

    def spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        """A client program pinned to the load cores, its output in ``<name>.log``; stopped at
        the end of the run if it has not ended by then."""
        with open(self.path(f"{name}.log"), "ab") as output:
            process = subprocess.Popen([*cores.pin_prefix(self.load_cores), *argv],
                                       stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(process)
        return process

    def wait(self, process: subprocess.Popen[bytes], seconds: float) -> int | None:
        """Wait for a client to end within its duration plus ``CHILD_GRACE``; stop it if not."""
        try:
            return process.wait(seconds + CHILD_GRACE)
        except subprocess.TimeoutExpired:
            self.problems.append(f"a client ({str(process.args)[:80]}) did not end in time "
                                 f"and was stopped")
            return servers.stop_process(process)

    def stop_all(self) -> None:
        for process in self.children:
            servers.stop_process(process)
        for server in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGCONT)  # a stalled server could not stop
            server.stop()

    def alive(self, running: Sequence[servers.RunningServer]) -> list[servers.RunningServer]:
        progress = experiment.Progress()
        still = experiment.still_running(running, progress)
        self.problems += progress.problems
        return still

    # -- results -----------------------------------------------------------------------------

    def record(self, name: str, record: dict[str, Any]) -> dict[str, Any]:
        self.records.setdefault(name, []).append(record)
        return record

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
              text: str = "") -> None:
        """A results section: a title, a Markdown table, and a sentence or two under it."""
        self.sections += [f"### {title}\n", report.markdown_table(header, rows), ""]
        if text:
            self.sections += [text, ""]

    def figure(self, name: str, shows: str, drawn: bool) -> None:
        """Name a written figure (``drawn`` is what the plot helper returned)."""
        if drawn:
            self.figures.append((name, shows))

    def say(self, headline: str) -> None:
        """The one sentence with the lab's number, as the student will quote it."""
        self.headline = headline
        log(f"headline: {headline}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def missing_tools(lab: Lab) -> list[str]:
    """What to install before ``lab`` can run (one line per missing tool)."""
    lines = []
    for tool in lab.needs:
        if tool == "nginx":
            absent = servers.nginx_binary() is None
        else:
            absent = experiment.tool_missing(tool)
        if absent:
            lines.append(INSTALL[tool])
    return lines


@contextlib.contextmanager
def lab_process(run: LabRun) -> Iterator[None]:
    """Pin this process, raise its descriptor limit; on the way out (also after Ctrl-C), stop
    every process the lab started, a second Ctrl-C ignored meanwhile, and unpin."""
    affinity = os.sched_getaffinity(0)
    run.server_core, run.load_cores = experiment.prepare_process()
    try:
        yield
    except KeyboardInterrupt:
        run.interrupted = True
        log("Ctrl-C: stopping every process this lab started, then writing what was measured")
    finally:
        with experiment.sigint_ignored():
            run.stop_all()
        os.sched_setaffinity(0, affinity)  # a caller that runs several labs pins each anew


def summarise(run: LabRun) -> None:
    """The lab's tables, figures and headline from what was recorded. A failure there is
    reported, and the raw records and the report are written all the same."""
    if not any(run.records.values()):
        return  # no table or figure to draw from nothing
    try:
        run.lab.summarise(run)
    except Exception as error:  # a bug in a summary must not cost the measurements
        log(f"the summary failed: {traceback.format_exc()}")
        run.problems.append(f"the summary failed ({type(error).__name__}: {error}); the raw "
                            f"records are complete")


def cores_line(run: LabRun) -> str:
    if run.server_core is None:
        return "not pinned (one core)"
    return (f"server on core {run.server_core}, clients on core"
            f"{'s' if len(run.load_cores) > 1 else ''} {cores.describe(run.load_cores)}")


def write(run: LabRun) -> str:
    """Write the raw records, ``summary.json`` and ``report.md``; return the report's text."""
    kept = {name: records for name, records in run.records.items() if records}
    for name, records in kept.items():
        report.write_records(run.rundir, name, records)
    lab = run.lab
    summary = {"lab": lab.name, "quick": run.quick, "headline": run.headline,
               "interrupted": run.interrupted, "problems": run.problems,
               "figures": [{"file": name, "shows": shows} for name, shows in run.figures],
               "records": sorted(kept), "commands": run.commands,
               "seconds": round(time.monotonic() - run.started, 1)}
    with open(run.path("summary.json"), "w") as out:
        json.dump(summary, out, indent=1)
    text = render(run)
    with open(run.path("report.md"), "w") as out:
        out.write(text)
    return text


def no_headline(run: LabRun) -> str:
    if run.interrupted and run.records:
        return "no headline: the run was interrupted before its last figure"
    return "nothing was measured"


def raw_files(run: LabRun) -> str:
    return ", ".join(f"`{name}.json`/`.csv`" for name, records in sorted(run.records.items())
                     if records)


def render(run: LabRun) -> str:
    lab = run.lab
    parts = [f"# Lab `{lab.name}`: {lab.title}\n"]
    if run.quick:
        parts.append(QUICK_BANNER)
    if run.interrupted:
        parts.append("> **Interrupted** (Ctrl-C): the tables hold what was measured until "
                     "then.\n")
    parts += [f"**The question.** {lab.question}\n",
              f"**This run.** {run.headline or no_headline(run)}"
              + (" (quick run: a smoke test, not the lesson's number)" if run.quick else "")
              + "\n",
              f"- run folder: `{run.rundir}`; {time.strftime('%Y-%m-%d %H:%M:%S')}; Python "
              f"{sys.version.split()[0]}; {cores_line(run)}",
              f"- raw data: {raw_files(run) or 'none'}",
              ""]
    if run.commands:
        parts += [report.servers_table(run.commands), ""]
    if run.problems:
        parts += ["## Problems\n"] + [f"- {line}" for line in run.problems] + [""]
    parts += ["## Results\n", *run.sections]
    parts += ["## What to look for\n", lab.look_for, "",
              "## What we expect, and why\n", lab.expected, "",
              "The guide (`tools/labs/README.rst`) has the background, questions and an "
              "exercise that changes the code.", ""]
    if run.figures:
        parts += ["## Plots\n"] + [f"- `{name}`: {shows}" for name, shows in run.figures]
        parts += [""] + [f"![{name}]({name})" for name, _ in run.figures] + [""]
    return "\n".join(parts) + "\n"


# --- small measuring helpers several labs share ----------------------------------------------

PointMeasure = Callable[[], dict[str, Any]]
"""Measures one wrk point and returns its record (``experiment.measure_wrk`` bound to it)."""


def wrk_rounds(run: LabRun, running: Sequence[servers.RunningServer],
               cases: Sequence[experiment.Case], rounds: int, duration: float,
               wrap: Callable[[servers.RunningServer, experiment.Case, PointMeasure],
                              dict[str, Any]] | None = None) -> None:
    """The experiment runner's wrk points, interleaved, into the run's ``points``: after a
    warm-up, every case on every server each round, the server order rotated. ``wrap`` may add
    to a point's record what the lab observes around it."""
    if not running:
        return
    experiment.warm_up(running, run.bench_path(cases[0].file), run.quick, run.load_cores)
    planned, done = rounds * len(cases) * len(running), 0
    samples = run.records.setdefault("samples", [])
    for round_number, case, order in experiment.interleaved(rounds, running, cases):
        for server in run.alive(order):
            labels = {"round": round_number, "case": case.name, "server": server.spec.label}
            measure = functools.partial(experiment.measure_wrk, server, case, run.manifest,
                                        duration, run.load_cores, labels, samples)
            record = run.record("points", wrap(server, case, measure) if wrap else measure())
            done += 1
            log(f"[{done}/{planned}] round {round_number}/{rounds} {server.spec.label:14} "
                f"{case.name:22} {report.measurement_line(record)}")


def point_rows(run: LabRun) -> list[dict[str, Any]]:
    """The wrk points summarised: medians and min-max per (case, server)."""
    return report.summarise(run.records.get("points", []), report.POINT_METRICS)


OPENLOOP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "openloop.py")


@dataclass
class OpenLoopClient:
    """A running ``tools/openloop.py``: its process, where it writes, how long it may take."""

    process: subprocess.Popen[bytes]
    out: str
    seconds: float
    start_at: float


def start_open_loop(run: LabRun, server: servers.RunningServer, path: str, rate: float,
                    duration: float, *, start_in: float = 0.5, connections: int = 64,
                    close: bool = False, timeout: float = 5.0, closed_loop: bool = False,
                    name: str = "openloop") -> OpenLoopClient:
    """Start the constant-rate client on the load cores; its schedule begins ``start_in``
    seconds from now (time for the interpreter to start), at a moment the caller knows."""
    start_at = time.monotonic() + start_in
    out = run.path(f"{name}.json")
    argv = [sys.executable, OPENLOOP, "127.0.0.1", str(server.port), "--path", path,
            "--rate", f"{rate:g}", "--duration", f"{duration:g}", "--connections",
            str(connections), "--timeout", f"{timeout:g}", "--out", out,
            "--start-at", repr(start_at)]
    argv += ["--close"] if close else []
    argv += ["--closed-loop"] if closed_loop else []
    process = run.spawn(argv, name)
    return OpenLoopClient(process, out, start_in + duration + timeout + 2, start_at)


def finish_open_loop(run: LabRun, client: OpenLoopClient) -> list[dict[str, Any]]:
    """Wait for the client (bounded) and return its records; the file is then removed (the
    lab keeps the records with its own labels)."""
    run.wait(client.process, client.seconds)
    try:
        with open(client.out) as records_file:
            records: list[dict[str, Any]] = json.load(records_file)
        os.remove(client.out)
    except (OSError, ValueError):
        run.problems.append(f"the open-loop client wrote no records (its log: "
                            f"{client.out.removesuffix('.json')}.log)")
        return []
    return records


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of latencies in ms (None each when there are none)."""
    return {"p50_ms": percentile(latencies_ms, 0.50), "p90_ms": percentile(latencies_ms, 0.90),
            "p99_ms": percentile(latencies_ms, 0.99),
            "max_ms": max(latencies_ms) if latencies_ms else None}


def row_of(rows: Sequence[dict[str, Any]], case: str, server: str) -> dict[str, Any]:
    """The summarised row of (case, server), or an empty one (every figure then a dash)."""
    return next((r for r in rows if r["case"] == case and r["server"] == server),
                {"case": case, "server": server, "n": 0})


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` (0..1) percentile by the nearest-rank rule, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]


TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT"}
"""The hexadecimal state codes of /proc/net/tcp this lab reads (include/net/tcp_states.h)."""


def count_tcp_states(port: int, state: str = "06",
                     files: Sequence[str] = ("/proc/net/tcp", "/proc/net/tcp6")
                     ) -> tuple[int, int]:
    """Sockets in ``state`` (06: TIME_WAIT) of connections to ``port``, from /proc/net/tcp:
    (local port is ``port``: the server's side, remote port is ``port``: the clients' side).
    Both ends are on this machine, and TIME_WAIT stays with the side that closed first."""
    wanted = f":{port:04X}"
    server_side = client_side = 0
    for name in files:
        try:
            with open(name) as table:
                next(table, None)  # the header line
                for line in table:
                    fields = line.split()
                    if len(fields) <= 3 or fields[3] != state:
                        continue
                    if fields[1].endswith(wanted):
                        server_side += 1
                    elif fields[2].endswith(wanted):
                        client_side += 1
        except OSError:
            continue
    return server_side, client_side


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")
