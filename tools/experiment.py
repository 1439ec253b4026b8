"""The experiment runner: one command from a document root to a report with plots.

    python tools/experiment.py compare --models evented,threaded,iterative --peers nginx
    python tools/experiment.py compare --quick
    python tools/experiment.py bench            # issue 7's table vs http.server and nginx

What this module knows: the order of an experiment -- lock, document root, servers, rounds of
measurements, raw files, plots, report. What it must not know: how a server works inside
(``servers``), how wrk or /proc are read (``wrkrun``, ``procstat``), how numbers are summarised
or drawn (``report``, ``plots``).

Method, and the pitfalls it handles for the user:
- Every server is pinned to core 0 and every load generator (and this runner) to core 1, so the
  client never steals the server's CPU. On a one-core machine pinning is skipped, with a warning.
- Servers are measured interleaved: round 1 runs every case on every server, then round 2 ...
  (the server order rotates each round), so a slow drift of the machine (another job, thermal
  throttling) spreads over all servers instead of penalising the last one. Medians are kept,
  with min-max beside them.
- A lock (``/tmp/evserver-bench.lock``, ``fcntl.flock``) is held for the whole run, so two
  benchmarks on one machine never overlap and corrupt each other.
- The runner raises its soft ``RLIMIT_NOFILE`` to the hard limit (children inherit it), and
  every server we start gets a listen backlog of 4096 (the kernel's cap), so neither ``ulimit
  -n`` nor a backlog of 5 silently caps the load.
- wrk is closed-loop (coordinated omission: a stalled server is asked less often, so its p99 looks
  better than a user would feel); compare latencies only between servers measured alike.
- Every loop is bounded: rounds, cases and servers are finite lists and every child process has
  a time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``tools`` importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import docroot, plots, procstat, report, servers, wrkrun

LOCK_PATH = "/tmp/evserver-bench.lock"
SERVER_CORE, LOAD_CORE = 0, 1
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCUSTFILE = os.path.join(PROJECT_DIR, "loadtests", "locustfile.py")
LOCUST_CONF = os.path.join(PROJECT_DIR, "loadtests", "locust.conf")
HOLDCONNS = os.path.join(PROJECT_DIR, "tools", "holdconns.py")

PROBES = 20
"""New-client requests timed while the idle connections are held (median and max reported)."""

PROBE_TIMEOUT = 1.0
"""A new client not answered within this many seconds counts as unanswered."""

MAX_PROBE_FAILURES = 3
"""Stop probing a server after this many unanswered probes (an iterative server is busy)."""

LOCUST_GRACE = 60.0
"""Seconds beyond the Locust run time before the Locust process is killed."""

HOLD_GRACE = 30.0
"""Seconds beyond the open timeout for the connection holder to report."""

NEW_CONNECTION_PER_REQUEST = {False: "keep-alive", True: "new conn"}


@dataclass(frozen=True)
class Case:
    """One measured situation. ``only`` limits it to some servers (e.g. the access-log twin)."""

    name: str
    kind: str  # "wrk" or "idle"
    file: str = "1k"
    connections: int = 64
    close: bool = False
    only: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return f"{self.file} {NEW_CONNECTION_PER_REQUEST[self.close]}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def bench_lock(path: str = LOCK_PATH) -> Iterator[None]:
    """Hold the machine-wide benchmark lock for the whole run (waits for another run to end)."""
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for {path}: another benchmark is running")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_process() -> tuple[int | None, int | None]:
    """Raise the descriptor limit and pin this runner to the load core; return the cores used."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 cores: server and load generator are not pinned apart")
        return None, None
    os.sched_setaffinity(0, {LOAD_CORE})
    return SERVER_CORE, LOAD_CORE


# --- one measurement -------------------------------------------------------------------------

def measure_wrk(server: servers.RunningServer, case: Case, manifest: dict[str, Any],
                duration: float, load_core: int | None, labels: dict[str, Any],
                samples: list[dict[str, Any]]) -> dict[str, Any]:
    url = server.url(manifest["bench"][case.file])
    stats_url = server.stats_url if server.spec.model != "iterative" else None
    cpu_before = procstat.cpu_seconds_tree(server.pid)
    with procstat.Sampler(server.pid, stats_url, labels) as sampler:
        result = wrkrun.run(url, case.connections, duration, case.close, load_core)
    cpu_seconds = procstat.cpu_seconds_tree(server.pid) - cpu_before
    samples.extend(sampler.records)
    gib = result.bytes_read / report.GIB
    return {
        **labels, "group": case.group, "connections": case.connections, "file": case.file,
        "close": case.close, "rps": result.requests_per_second, "requests": result.requests,
        "p50_ms": _ms(result.percentiles.get("50")), "p90_ms": _ms(result.percentiles.get("90")),
        "p99_ms": _ms(result.percentiles.get("99")), "max_ms": _ms(result.latency_max),
        "transfer_mib_s": result.transfer_per_second / 2**20, "errors": result.errors,
        "socket_errors": result.socket_errors, "non_2xx_3xx": result.non_2xx_3xx,
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_s_per_gib": round(cpu_seconds / gib, 3) if gib > 0.01 else None,
        "rss_mib": max((s["rss_kib"] for s in sampler.records), default=0) / 1024 or None,
        "threads": max((s["threads"] for s in sampler.records), default=None),
        "stats_after": procstat.fetch_stats(server.stats_url, 2.0) if server.stats_url else None,
        "wrk_exit": result.exit_code, "raw": result.raw,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 4)


def probe_new_client(port: int, path: str) -> tuple[list[float], int]:
    """Time PROBES fresh connections (connect, GET, whole response); return ms list, failures."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    timings, failures = [], 0
    for _ in range(PROBES):
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
                sock.sendall(request)
                while sock.recv(65536):  # Connection: close -> read to EOF
                    pass
            timings.append((time.perf_counter() - started) * 1000)
        except OSError:
            failures += 1
            if failures >= MAX_PROBE_FAILURES:
                break
    return timings, failures


def measure_idle(server: servers.RunningServer, case: Case, manifest: dict[str, Any],
                 open_timeout: float, load_core: int | None,
                 labels: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Hold ``case.connections`` idle keep-alive connections; RSS growth and new-client latency."""
    before = procstat.sample_tree(server.pid)
    path = manifest["bench"]["1k"]
    argv = [
        *servers.pin_prefix(load_core), sys.executable, HOLDCONNS, "127.0.0.1",
        str(server.port), "-n", str(case.connections),
        "--path", path, "--open-timeout", str(open_timeout), "--hold", str(open_timeout + 60),
        "--until-stdin-eof"]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    held: dict[str, Any] = {}
    try:
        line = _read_line(holder, open_timeout + HOLD_GRACE)
        held = json.loads(line) if line else {}
        during = procstat.sample_tree(server.pid)
        if during:  # one point far right on the memory-vs-connections plot
            samples.append({**labels, **asdict(during), "stats": None})
        timings, failures = probe_new_client(server.port, path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder lets go of its connections and reports "done"
        try:
            holder.wait(HOLD_GRACE)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    count = held.get("held", 0)
    growth = None
    if before and during and count:
        growth = round((during.rss_kib - before.rss_kib) / count, 3)
    return {
        **labels, "group": "idle", "connections": case.connections, "held": count,
        "closed_by_server": held.get("closed_by_server"), "failed": held.get("failed"),
        "seconds_to_open": held.get("seconds_to_open"), "hold_errors": held.get("errors"),
        "rss_before_kib": before.rss_kib if before else None,
        "rss_during_kib": during.rss_kib if during else None,
        "threads_during": during.threads if during else None,
        "rss_growth_kib_per_conn": growth,
        "probe_ms_median": round(statistics.median(timings), 3) if timings else None,
        "probe_ms_max": round(max(timings), 3) if timings else None, "probe_failures": failures,
    }


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, or "" after ``timeout`` seconds (select, no busy wait)."""
    import select

    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return str(process.stdout.readline()) if ready else ""


def measure_locust(server: servers.RunningServer, seconds: float, users: int, rundir: str,
                   load_core: int | None) -> dict[str, Any]:
    """Run the Locust scenarios headless for ``seconds``; the aggregated row of its CSV."""
    prefix = os.path.join(rundir, f"locust-{server.spec.label}")
    argv = [
        *servers.pin_prefix(load_core), sys.executable, "-m", "locust",
        "--config", LOCUST_CONF, "-f", LOCUSTFILE,
        "-H", server.url(""), "-u", str(users), "-r", str(users), "-t", f"{seconds:g}s",
        "--csv", prefix]
    if server.spec.model == "iterative":
        # One connection at a time: keep-alive users would starve everyone else, by design.
        argv += ["NewConnectionUser"]
    record: dict[str, Any] = {"server": server.spec.label, "users": users, "seconds": seconds}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=PROJECT_DIR,
                              timeout=seconds + LOCUST_GRACE, check=False)
        record["exit_code"] = done.returncode
        if done.returncode not in (0, 1):  # 1 = ran, but with failures
            record["error"] = done.stderr[-2000:]
    except subprocess.TimeoutExpired:
        record["error"] = "locust timed out"
    record.update(_locust_aggregate(prefix + "_stats.csv"))
    return record


def _locust_aggregate(path: str) -> dict[str, Any]:
    try:
        with open(path, newline="") as stats:
            for row in csv.DictReader(stats):
                if row["Name"] == "Aggregated":
                    return {"requests": int(row["Request Count"]),
                            "failures": int(row["Failure Count"]),
                            "rps": float(row["Requests/s"]),
                            "median_ms": float(row["Median Response Time"] or 0),
                            "p99_ms": float(row["99%"]) if row["99%"] != "N/A" else None}
    except (OSError, KeyError, ValueError):
        pass
    return {}


def locust_available() -> bool:
    try:
        import locust  # noqa: F401
    except ImportError:
        return False
    return True


# --- a whole run -----------------------------------------------------------------------------

@dataclass
class Plan:
    specs: list[servers.ServerSpec]
    cases: list[Case]
    rounds: int
    duration: float
    open_timeout: float
    locust_seconds: float
    locust_users: int
    profile: str
    seed: int
    rundir: str
    docroot: str
    baselines: list[str]


def run_plan(plan: Plan) -> dict[str, Any]:
    """Run every case on every server, round by round; write raw data, plots and the report."""
    os.makedirs(plan.rundir, exist_ok=True)
    server_core, load_core = prepare_process()
    log(f"document root {plan.docroot} ({plan.profile}, seed {plan.seed})")
    manifest = docroot.ensure(plan.docroot, plan.seed, plan.profile)
    missing = [case.file for case in plan.cases if case.file not in manifest["bench"]]
    if missing:
        raise SystemExit(f"files {missing} are not in the {plan.profile} document root")
    running: list[servers.RunningServer] = []
    points: list[dict[str, Any]] = []
    idle: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    locust_records: list[dict[str, Any]] = []
    try:
        for spec in plan.specs:
            running.append(servers.start(spec, plan.docroot, plan.rundir, server_core))
            log(f"started {spec.label} on port {running[-1].port} (pid {running[-1].pid})")
        total = sum(len(_servers_for(case, running)) for case in plan.cases) * plan.rounds
        done = 0
        for round_number in range(plan.rounds):
            order = running[round_number % len(running):] + running[:round_number % len(running)]
            for case in plan.cases:
                for server in _servers_for(case, order):
                    done += 1
                    labels = {"round": round_number + 1, "case": case.name,
                              "server": server.spec.label}
                    if case.kind == "idle":
                        record = measure_idle(server, case, manifest, plan.open_timeout,
                                              load_core, labels, samples)
                        idle.append(record)
                        note = (f"held {record['held']}, "
                                f"{report.fmt(record['rss_growth_kib_per_conn'], 2)} KiB/conn, "
                                f"new client {report.fmt(record['probe_ms_median'], 2)} ms")
                    else:
                        record = measure_wrk(server, case, manifest, plan.duration, load_core,
                                             labels, samples)
                        points.append(record)
                        note = (f"{report.fmt(record['rps'])} req/s, "
                                f"p99 {report.fmt(record['p99_ms'], 2)} ms, "
                                f"{record['errors']} errors")
                    log(f"[{done}/{total}] round {round_number + 1}/{plan.rounds} "
                        f"{server.spec.label:12} {case.name:24} {note}")
        if plan.locust_seconds > 0:
            for server in running:
                if server.spec.only_when_named:
                    continue
                log(f"locust {plan.locust_seconds:g}s, {plan.locust_users} users "
                    f"-> {server.spec.label}")
                locust_records.append(measure_locust(server, plan.locust_seconds,
                                                     plan.locust_users, plan.rundir, load_core))
    finally:
        for server in running:
            server.stop()
    return write_run(plan, points, idle, samples, locust_records)


def _servers_for(case: Case, order: Sequence[servers.RunningServer]) -> list[
        servers.RunningServer]:
    if case.only:
        return [s for s in order if s.spec.label in case.only]
    return [s for s in order if not s.spec.only_when_named]


def write_run(plan: Plan, points: list[dict[str, Any]], idle: list[dict[str, Any]],
              samples: list[dict[str, Any]], locust_records: list[dict[str, Any]]
              ) -> dict[str, Any]:
    report.write_records(plan.rundir, "points", points)
    report.write_records(plan.rundir, "idle", idle)
    report.write_records(plan.rundir, "samples", samples)
    report.write_records(plan.rundir, "locust", locust_records)
    point_rows = report.summarise(points, report.POINT_METRICS)
    idle_rows = report.summarise(idle, report.IDLE_METRICS)
    figures = plots.sweep_figures(point_rows, plan.rundir)
    figures += plots.memory_figure(samples, plan.rundir)
    figure_names = [os.path.basename(f) for f in figures]
    summary: dict[str, Any] = {"points": point_rows, "idle": idle_rows, "locust": locust_records,
               "figures": figure_names,
               "plan": {**asdict(plan), "specs": [asdict(s) for s in plan.specs]}}
    with open(os.path.join(plan.rundir, "summary.json"), "w") as out:
        json.dump(summary, out, indent=1, default=str)
    with open(os.path.join(plan.rundir, "report.md"), "w") as out:
        out.write(render_report(plan, point_rows, idle_rows, locust_records, figure_names))
    return summary


def render_report(plan: Plan, point_rows: list[dict[str, Any]], idle_rows: list[dict[str, Any]],
                  locust_records: list[dict[str, Any]], figures: list[str]) -> str:
    baselines = [b for b in plan.baselines if any(r["server"] == b for r in point_rows)]
    parts = [
        "# evserver experiment report\n",
        f"- run folder: `{plan.rundir}`; {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"- servers: {', '.join(s.label for s in plan.specs)}; rounds: {plan.rounds} "
        f"(interleaved), {plan.duration:g} s per wrk point, wrk -t1 --latency",
        f"- document root: {plan.profile} profile, seed {plan.seed}; server pinned to core "
        f"{SERVER_CORE}, load generator to core {LOAD_CORE}; Python {sys.version.split()[0]}",
        "\nMedians over rounds, (min-max) when there was more than one round. "
        "`x name`: ratio of requests/s to that server's median in the same case. "
        "Latency from wrk (closed loop: coordinated omission hides stalls).\n",
    ]
    if point_rows:
        parts += ["## Throughput and latency\n", report.points_table(point_rows, baselines), ""]
    if idle_rows:
        parts += ["## Idle keep-alive connections\n", report.idle_table(idle_rows), ""]
    if any(row["server"] == BENCH_ACCESS_LOG_LABEL for row in point_rows):
        parts += ["## Issue 7 targets (ratios of medians)\n",
                  report.targets_table(point_rows, idle_rows), ""]
    if locust_records:
        parts += ["## Locust scenarios\n", report.locust_table(locust_records), ""]
    if figures:
        parts += ["## Plots\n"] + [f"![{name}]({name})" for name in figures] + [""]
    return "\n".join(parts) + "\n"


# --- command line ----------------------------------------------------------------------------

def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def build_specs(models: list[str], peers: list[str]) -> list[servers.ServerSpec]:
    specs = [servers.evserver_spec(model) for model in models]
    available = servers.available_peers()
    for peer in peers:
        if not available.get(peer):
            log(f"warning: peer {peer} is not installed; skipped")
            continue
        specs.append(servers.ServerSpec(peer, peer))
    return specs


def compare_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    connections = [int(c) for c in _csv_list(args.connections or ("1,64" if quick else
                                                                   "1,16,64,256,1024"))]
    files = _csv_list(args.files or ("1k" if quick else "1k,64k"))
    cases = [Case(f"{f} {NEW_CONNECTION_PER_REQUEST[close]} c{c}", "wrk", f, c, close)
             for close in ([False, True] if args.close else [False])
             for f in files for c in connections]
    holds = [int(n) for n in _csv_list(args.hold if args.hold is not None else
                                       ("" if quick else "1000,5000"))]
    cases += [Case(f"idle {n}", "idle", "1k", n) for n in holds]
    models = _csv_list(args.models)
    locust_seconds = args.locust_time if args.locust_time is not None else (0 if quick else 30)
    if locust_seconds and not locust_available():
        log("warning: Locust is not installed (pip install locust): Locust scenarios skipped")
        locust_seconds = 0
    return Plan(build_specs(models, _csv_list(args.peers)), cases,
                args.repeat or (1 if quick else 3), args.duration or (2 if quick else 10),
                args.open_timeout or (5 if quick else 20), locust_seconds, args.locust_users,
                "quick" if quick else "full", args.seed, _rundir(args),
                args.docroot or _default_docroot("quick" if quick else "full"),
                [models[0], *_csv_list(args.peers)] if models else _csv_list(args.peers))


BENCH_ACCESS_LOG_LABEL = "evented+log"

IDLE_HEADROOM = 100
"""Connections allowed beyond the idle count, so the new-client probe is not refused by the cap."""


def bench_plan(args: argparse.Namespace) -> Plan:
    """Issue 7's table: exactly these cases against evserver's models, http.server and nginx."""
    quick = args.quick
    idle_count = args.idle_connections or (200 if quick else 10000)
    # The idle case asks for one client more than it holds: the cap must leave room for it.
    room = ("--max-connections", str(idle_count + IDLE_HEADROOM))
    specs = [servers.evserver_spec(m, *room) for m in ("evented", "threaded", "iterative")]
    specs.append(servers.ServerSpec(BENCH_ACCESS_LOG_LABEL, "evserver", "evented",
                                    ("--access-log", "{rundir}/access-evented.log", *room),
                                    only_when_named=True))
    specs += build_specs([], ["http.server", "nginx"])
    big = "64k" if quick else "16m"  # the quick tree has no 16 MiB file
    cases = [
        Case("1k keep-alive c64", "wrk", "1k", 64),
        Case("1k access log c64", "wrk", "1k", 64, only=("evented", BENCH_ACCESS_LOG_LABEL)),
        Case("1k new conn c64", "wrk", "1k", 64, close=True),
        Case("64k keep-alive c64", "wrk", "64k", 64),
        Case(f"{big} keep-alive c8", "wrk", big, 8),
        Case(f"idle {idle_count}", "idle", "1k", idle_count),
    ]
    return Plan(specs, cases, args.repeat or (1 if quick else 3),
                args.duration or (2 if quick else 10),
                args.open_timeout or (5 if quick else 20), 0, 0,
                "quick" if quick else "full", args.seed, _rundir(args),
                args.docroot or _default_docroot("quick" if quick else "full"),
                ["nginx", "evented"])


def _default_docroot(profile: str) -> str:
    return os.path.join(PROJECT_DIR, "results", f"docroot-{profile}")


def _rundir(args: argparse.Namespace) -> str:
    if args.out:
        return os.path.abspath(str(args.out))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(PROJECT_DIR, "results", f"{args.command}-{stamp}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description="evserver load experiments (issues 6 and 7).")
    commands = top.add_subparsers(dest="command", required=True)
    for name, help_text in (("compare", "sweep concurrency and file sizes across models"),
                            ("bench", "issue 7's table vs http.server and nginx")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--quick", action="store_true",
                         help="tiny tree, 1 round, 2 s points: under a minute")
        sub.add_argument("--repeat", type=int, help="rounds (default 3, quick 1)")
        sub.add_argument("--duration", type=float, help="seconds per wrk point (10, quick 2)")
        sub.add_argument("--out", help="run folder (default results/<command>-<timestamp>)")
        sub.add_argument("--docroot", help="document root to create or reuse")
        sub.add_argument("--seed", type=int, default=1, help="document root seed")
        sub.add_argument("--open-timeout", type=float,
                         help="seconds to open the idle connections (20, quick 5)")
    compare = commands.choices["compare"]
    compare.add_argument("--models", default="evented,threaded,iterative")
    compare.add_argument("--peers", default="", help="comma list: http.server,nginx")
    compare.add_argument("--connections", help="wrk -c levels (1,16,64,256,1024; quick 1,64)")
    compare.add_argument("--files", help="bench files: 1k,4k,64k,1m,16m (1k,64k; quick 1k)")
    compare.add_argument("--close", action="store_true",
                         help="also measure a new connection per request")
    compare.add_argument("--hold", help="idle connection counts (1000,5000; quick none)")
    compare.add_argument("--locust-time", type=float, help="seconds of Locust per server "
                         "(30; quick 0)")
    compare.add_argument("--locust-users", type=int, default=100)
    commands.choices["bench"].add_argument("--idle-connections", type=int,
                                           help="idle connections to hold (10000; quick 200)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if shutil.which("wrk") is None:
        log("wrk is not installed (Debian: apt-get install wrk)")
        return 2
    plan = compare_plan(args) if args.command == "compare" else bench_plan(args)
    with bench_lock():
        summary = run_plan(plan)
    with open(os.path.join(plan.rundir, "report.md")) as report_file:
        print(report_file.read())
    log(f"report: {os.path.join(plan.rundir, 'report.md')} "
        f"({len(summary['figures'])} plots)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
