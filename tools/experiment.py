"""The experiment runner: one command from a document root to a report with plots.

    python tools/experiment.py compare --quick     # a smoke test, about a minute
    python tools/experiment.py compare --server evented --server 'evented --selector select' \\
        --server 'evented --no-sendfile' --server threaded --peers nginx
    python tools/experiment.py bench               # the README's performance table
    python tools/experiment.py ab main HEAD        # a change against its parent (``ab``)

What this module knows: the order of an experiment -- lock, document root, servers, rounds of
measurements, raw files, plots, report -- and what to do when part of it cannot run. What it
must not know: how a server works inside (``servers``), how wrk, Locust or /proc are read
(``wrkrun``, the locustfile, ``procstat``), how numbers are summarised or drawn (``report``,
``plots``).

Method, and the pitfalls it handles for the user:
- Every server is pinned to one core and every load generator (and this runner) to the others
  (``cores``), so the client never steals the server's CPU. On a one-core machine pinning is
  skipped, with a warning. The load generator's CPU is measured beside the server's, and the
  report says when the load generator, not the server, was the limit.
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
- Every server gets the same workload; Locust's counts of requests never answered and users
  never served show what a server could not do, instead of a lighter workload for it.
- Missing tools (wrk, nginx, Locust) skip only what needs them, with one line saying what to
  install; a server that does not start is reported with the end of its log and the others go
  on; Ctrl-C stops every process the run started and still writes what was measured.
- Every loop is bounded: rounds, cases and servers are finite lists and every child process has
  a time limit.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import importlib.util
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script: make ``tools`` importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import ab, cores, docroot, plots, procstat, report, servers, wrkrun

LOCK_PATH = "/tmp/evserver-bench.lock"
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCUSTFILE = os.path.join(PROJECT_DIR, "loadtests", "locustfile.py")
LOCUST_CONF = os.path.join(PROJECT_DIR, "loadtests", "locust.conf")
HOLDCONNS = os.path.join(PROJECT_DIR, "tools", "holdconns.py")

INSTALL_WRK = "wrk is not installed (Debian: sudo apt-get install wrk)"
INSTALL_LOCUST = "Locust is not installed (.venv/bin/pip install -e '.[load]')"

PROBES = 20
"""New-client requests timed while the idle connections are held (median and max reported)."""

PROBE_TIMEOUT = 1.0
"""A new client not answered within this many seconds counts as unanswered."""

MAX_PROBE_FAILURES = 3
"""Stop probing a server after this many unanswered probes (an iterative server is busy)."""

LOCUST_GRACE = 60.0
"""Seconds beyond the Locust run time (start-up, walk, stop timeout) before it is stopped."""

HOLD_GRACE = 30.0
"""Seconds beyond the open timeout for the connection holder to report."""

WARM_UP_SECONDS = 3.0
WARM_UP_SECONDS_QUICK = 1.0
"""Seconds of unrecorded load per server before the first round (full run, quick run)."""

WARM_UP_CONNECTIONS = 16
"""Connections of the warm-up: enough to exercise the concurrent paths, few enough for all."""

INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C, as a shell reports a process ended by SIGINT (128 + 2)."""

NEW_CONNECTION_PER_REQUEST = {False: "keep-alive", True: "new conn"}

ServerT = TypeVar("ServerT")


class PlanError(ValueError):
    """A command line the runner cannot turn into a plan; the message is one line."""


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


@dataclass
class Plan:
    specs: list[servers.ServerSpec]
    cases: list[Case]
    rounds: int
    duration: float
    open_timeout: float
    locust_seconds: float
    locust_users: int
    locust_processes: int
    quick: bool
    seed: int
    rundir: str
    docroot: str
    baselines: list[str]
    command: str = "compare"
    skipped: list[str] = field(default_factory=list)
    """What will not be measured, and why (one line each: the report repeats them)."""
    tls: bool = False
    """``bench --tls``: the HTTPS cases, judged against nginx over TLS."""
    checkouts: list[dict[str, Any]] = field(default_factory=list)
    """``ab``: what A and B are (``ab.Checkout`` as a dict), for the report."""

    @property
    def profile(self) -> str:
        return "quick" if self.quick else "full"


@dataclass
class Progress:
    """What a run measured so far: enough to write a report at any moment (Ctrl-C)."""

    points: list[dict[str, Any]] = field(default_factory=list)
    idle: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    locust: list[dict[str, Any]] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    measurements_done: int = 0
    measurements_planned: int = 0
    interrupted: bool = False
    cores: str = ""
    tls_sessions: dict[str, str] = field(default_factory=dict)
    """Each HTTPS server's label and what a client with OpenSSL's defaults (as wrk's)
    negotiated with it: version, cipher, ALPN."""


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


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """While the run cleans up after Ctrl-C, a second Ctrl-C must not leave servers behind."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def prepare_process() -> tuple[int | None, set[int]]:
    """Raise the descriptor limit and pin this runner to the load cores; return the cores."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server_core, load_cores = cores.split()
    if server_core is None:
        log("warning: fewer than 2 cores: server and load generator are not pinned apart")
    else:
        os.sched_setaffinity(0, load_cores)
    return server_core, load_cores


def tool_missing(name: str) -> bool:
    """True when an external program is absent (one place, so tests can pretend)."""
    return shutil.which(name) is None


def locust_available() -> bool:
    # find_spec, not import: importing Locust would patch this process's sockets (gevent).
    return importlib.util.find_spec("locust") is not None


# --- one measurement -------------------------------------------------------------------------

def measure_wrk(server: servers.RunningServer, case: Case, manifest: dict[str, Any],
                duration: float, load_cores: set[int], labels: dict[str, Any],
                samples: list[dict[str, Any]]) -> dict[str, Any]:
    url = server.url(manifest["bench"][case.file])
    before = procstat.sample_tree(server.pid)
    # The iterative model answers one connection at a time: a stats request would wait in its
    # listen queue behind wrk's connections, so it is not asked during the run.
    stats_url = server.stats_url if server.spec.model != "iterative" else None
    with procstat.Sampler(server.pid, stats_url, labels) as sampler:
        result = wrkrun.run(url, case.connections, duration, case.close, load_cores)
    cpu_seconds = procstat.cpu_seconds_tree(server.pid) - (before.cpu_seconds if before else 0)
    most_sockets = max((s["sockets"] for s in sampler.records), default=None)
    samples.extend(sampler.records)
    gib = result.bytes_read / report.GIB
    seconds = result.duration or duration
    return {
        **labels, "group": case.group, "connections": case.connections, "file": case.file,
        "close": case.close, "rps": result.requests_per_second, "requests": result.requests,
        "p50_ms": _ms(result.percentiles.get("50")), "p90_ms": _ms(result.percentiles.get("90")),
        "p99_ms": _ms(result.percentiles.get("99")), "max_ms": _ms(result.latency_max),
        "transfer_mib_s": result.transfer_per_second / 2**20, "errors": result.errors,
        "socket_errors": result.socket_errors, "non_2xx_3xx": result.non_2xx_3xx,
        "cpu_seconds": round(cpu_seconds, 3),
        "server_cpu_pct": round(cpu_seconds / seconds * 100, 1),
        "loadgen_cpu_pct": round(result.cpu_seconds / seconds * 100, 1),
        "cpu_s_per_gib": round(cpu_seconds / gib, 3) if gib > 0.01 else None,
        "rss_mib": max((s["rss_kib"] for s in sampler.records), default=0) / 1024 or None,
        "threads": max((s["threads"] for s in sampler.records), default=None),
        "open_connections_max": (most_sockets - before.sockets
                                 if most_sockets is not None and before else None),
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


def tls_session(port: int) -> str:
    """What a client with OpenSSL's defaults (wrk's own) negotiates with an HTTPS server:
    ``"TLSv1.3 TLS_AES_256_GCM_SHA384 http/1.1"``, or why it could not."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the run's own self-signed certificate
    context.set_alpn_protocols(["http/1.1"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as raw, \
                context.wrap_socket(raw) as sock:
            cipher = sock.cipher()
            return " ".join([sock.version() or "?", cipher[0] if cipher else "?",
                             sock.selected_alpn_protocol() or "no ALPN"])
    except (OSError, ValueError) as error:
        return f"no handshake ({error})"


@contextlib.contextmanager
def held_connections(port: int, count: int, path: str, open_timeout: float,
                     load_cores: set[int]) -> Iterator[dict[str, Any]]:
    """Hold ``count`` idle keep-alive connections to ``port`` for the body of the ``with``.

    ``tools/holdconns.py`` runs pinned to the load cores; the context yields its report once
    the opening phase is over (``held``, ``failed``, ``closed_by_server``, ``seconds_to_open``,
    ``errors``; empty when it said nothing in time) and lets go of the connections on exit.
    """
    argv = [
        *cores.pin_prefix(load_cores), sys.executable, HOLDCONNS, "127.0.0.1", str(port),
        "-n", str(count), "--path", path, "--open-timeout", str(open_timeout),
        "--hold", str(open_timeout + 60), "--until-stdin-eof"]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = _read_line(holder, open_timeout + HOLD_GRACE)
        yield json.loads(line) if line else {}
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder lets go of its connections and reports "done"
        try:
            holder.wait(HOLD_GRACE)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


def measure_idle(server: servers.RunningServer, case: Case, manifest: dict[str, Any],
                 open_timeout: float, load_cores: set[int],
                 labels: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Hold ``case.connections`` idle keep-alive connections; RSS growth and new-client latency."""
    before = procstat.sample_tree(server.pid)
    path = manifest["bench"]["1k"]
    with held_connections(server.port, case.connections, path, open_timeout,
                          load_cores) as held:
        during = procstat.sample_tree(server.pid)
        if during:
            samples.append({**labels, **asdict(during), "stats": None})
        timings, failures = probe_new_client(server.port, path)
    count = held.get("held", 0)
    growth = None
    if before and during and count >= 2:  # one connection (iterative) says nothing per connection
        growth = round((during.rss_kib - before.rss_kib) / count, 3)
    return {
        **labels, "group": "idle", "connections": case.connections, "held": count,
        "closed_by_server": held.get("closed_by_server"), "failed": held.get("failed"),
        "seconds_to_open": held.get("seconds_to_open"), "hold_errors": held.get("errors"),
        "rss_before_kib": before.rss_kib if before else None,
        "rss_during_kib": during.rss_kib if during else None,
        "threads_before": before.threads if before else None,
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


LOCUST_CPU_WARNING = re.compile(r"CPU usage above|exceeded cpu threshold|CPU usage threshold")
"""Locust's own words when its process (or a worker) ran out of CPU."""


def locust_argv(server: servers.RunningServer, plan: Plan, prefix: str) -> list[str]:
    argv = [sys.executable, "-m", "locust", "--config", LOCUST_CONF, "-f", LOCUSTFILE,
            "-H", server.url("").rstrip("/"), "-u", str(plan.locust_users),
            "-r", str(plan.locust_users), "-t", f"{plan.locust_seconds:g}s",
            "--csv", prefix, "--summary-json", prefix + "-summary.json"]
    if plan.locust_processes > 1:
        # Locust's own master and workers; a free port, so two runs never meet on 5557.
        port = str(servers.free_port())
        argv += ["--processes", str(plan.locust_processes), "--master-bind-port", port,
                 "--master-port", port]
    return argv


def measure_locust(server: servers.RunningServer, plan: Plan, load_cores: set[int],
                   samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the Locust scenarios headless against one server; one record of what happened."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", server.spec.label)
    prefix = os.path.join(plan.rundir, f"locust-{safe}")
    argv = [*cores.pin_prefix(load_cores), *locust_argv(server, plan, prefix)]
    labels = {"round": 1, "case": "locust", "server": server.spec.label}
    record: dict[str, Any] = {"server": server.spec.label, "users": plan.locust_users,
                              "seconds": plan.locust_seconds,
                              "processes": plan.locust_processes, "log": prefix + ".log"}
    with open(prefix + ".log", "wb") as output:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, cwd=PROJECT_DIR,
                                   start_new_session=True)
    log(f"  Locust running (pid {process.pid}); its output: {prefix}.log")
    try:
        with procstat.Sampler(server.pid, None, labels) as server_cpu, \
                procstat.Sampler(process.pid, None, {**labels, "server": "locust"}) as own_cpu:
            try:
                record["exit_code"] = process.wait(plan.locust_seconds + LOCUST_GRACE)
            except subprocess.TimeoutExpired:
                record["error"] = "Locust did not finish in time; stopped"
    finally:
        servers.stop_process(process)  # a no-op when it ended by itself
    samples.extend(server_cpu.records)
    record["server_cpu_pct"] = procstat.busy_percent(server_cpu.records)
    record["loadgen_cpu_pct"] = procstat.busy_percent(own_cpu.records)
    record["loadgen_cores"] = min(plan.locust_processes, max(1, len(load_cores)))
    record.update(_locust_output(prefix))
    return record


def _locust_output(prefix: str) -> dict[str, Any]:
    """The aggregated CSV row, the scenario counts, the CPU warning and any one-line notes."""
    found: dict[str, Any] = {}
    try:
        with open(prefix + "_stats.csv", newline="") as stats:
            for row in csv.DictReader(stats):
                if row["Name"] == "Aggregated":
                    found.update({
                        "requests": int(row["Request Count"]),
                        "failures": int(row["Failure Count"]), "rps": float(row["Requests/s"]),
                        "p50_ms": _number(row.get("50%")), "p99_ms": _number(row.get("99%"))})
    except (OSError, KeyError, ValueError):
        pass
    try:
        with open(prefix + "-summary.json") as summary_file:
            found["scenarios"] = json.load(summary_file)
    except (OSError, ValueError):
        pass
    with open(prefix + ".log", errors="replace") as log_file:
        text = log_file.read()
    found["cpu_warning"] = bool(LOCUST_CPU_WARNING.search(text))
    found["notes"] = [line.split(":", 1)[1].strip() for line in text.splitlines()
                      if line.startswith("evserver scenarios:") and "cannot run" in line]
    if "Traceback" in text:
        found["error"] = f"Locust printed a traceback; see {prefix}.log"
    return found


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


# --- a whole run -----------------------------------------------------------------------------

def run_plan(plan: Plan) -> tuple[dict[str, Any], Progress]:
    """Run every case on every server, round by round; write raw data, plots and the report."""
    os.makedirs(plan.rundir, exist_ok=True)
    progress = Progress()
    server_core, load_cores = prepare_process()
    progress.cores = (f"server on core {server_core}, load generators on "
                      f"core{'s' if len(load_cores) > 1 else ''} {cores.describe(load_cores)}"
                      if server_core is not None else "not pinned (one core)")
    running: list[servers.RunningServer] = []
    try:
        log(f"document root {plan.docroot} ({plan.profile}, seed {plan.seed})")
        manifest = docroot.ensure(plan.docroot, plan.seed, plan.profile)
        if any(spec.tls for spec in plan.specs):
            servers.make_tls_files(plan.rundir)
        start_servers(plan, server_core, progress, running)
        progress.tls_sessions = {server.spec.label: tls_session(server.port)
                                 for server in running if server.spec.tls}
        measure_rounds(plan, running, manifest, server_core, load_cores, progress)
        if plan.locust_seconds > 0:
            for server in still_running(running, progress):
                if server.spec.only_when_named:
                    continue
                log(f"locust {plan.locust_seconds:g}s, {plan.locust_users} users, "
                    f"{plan.locust_processes} process(es) -> {server.spec.label}")
                record = measure_locust(server, plan, load_cores, progress.samples)
                progress.locust.append(record)
                log(f"  {report.locust_line(record)}")
    except KeyboardInterrupt:
        progress.interrupted = True
        log("Ctrl-C: stopping every process this run started, then writing what was measured")
    with sigint_ignored():
        for server in running:
            server.stop()
        return write_run(plan, progress), progress


def start_servers(plan: Plan, server_core: int | None, progress: Progress,
                  running: list[servers.RunningServer]) -> None:
    """Start every server into ``running`` (the caller's list: Ctrl-C must find them all)."""
    start_specs(plan.specs, plan.docroot, plan.rundir, server_core, progress, running)


def start_specs(specs: Sequence[servers.ServerSpec], root: str, rundir: str,
                server_core: Iterable[int] | int | None, progress: Progress,
                running: list[servers.RunningServer]) -> None:
    """Start each spec into ``running``; one that does not start is reported and left out."""
    for spec in specs:
        try:
            server = servers.start(spec, root, rundir, server_core)
        except servers.StartError as error:
            log(f"{error}\n  -> {spec.label} is left out; the others go on")
            progress.problems.append(
                f"{spec.label}: did not start ({error.reason}): `{error.last_line}` "
                f"(its log: {error.log_path})" if error.log_path else f"{spec.label}: {error}")
            continue
        running.append(server)
        progress.commands[spec.label] = " ".join(server.argv)
        log(f"started {spec.label} on port {server.port} (pid {server.pid})")


def still_running(running: Sequence[servers.RunningServer],
           progress: Progress) -> list[servers.RunningServer]:
    """The servers still running; one that died is reported once and measured no more."""
    alive = []
    for server in running:
        if server.process.poll() is None:
            alive.append(server)
        elif not server.info.get("reported"):
            server.info["reported"] = True
            problem = (f"{server.spec.label} exited (status {server.process.returncode}) during "
                       f"the run; its log: {server.log_path}")
            log(problem)
            progress.problems.append(problem)
    return alive


def warm_up(running: Sequence[servers.RunningServer], path: str, quick: bool,
            load_cores: set[int]) -> None:
    """A short unrecorded wrk run on every server before round 1: the first measured point
    must not pay for cold caches, lazy imports and a CPU still at a low clock."""
    seconds = WARM_UP_SECONDS_QUICK if quick else WARM_UP_SECONDS
    log(f"warm-up: {seconds:g} s of wrk on each server (not recorded)")
    for server in running:
        wrkrun.run(server.url(path), WARM_UP_CONNECTIONS, seconds, core=load_cores)


CaseT = TypeVar("CaseT")


def interleaved(rounds: int, running: Sequence[ServerT],
                cases: Sequence[CaseT]) -> Iterator[tuple[int, CaseT, list[ServerT]]]:
    """(round from 1, case, the servers in this round's order), round by round: every case on
    every server each round, the order rotated, so that a drift of the machine spreads over
    all servers instead of penalising the last one."""
    for round_index in range(rounds):
        shift = round_index % max(1, len(running))
        for case in cases:  # the order is taken per case: a restart may replace a server
            yield round_index + 1, case, [*running[shift:], *running[:shift]]


def measure_rounds(plan: Plan, running: list[servers.RunningServer], manifest: dict[str, Any],
                   server_core: int | None, load_cores: set[int], progress: Progress) -> None:
    """Every wrk case, round by round; then every idle case, round by round, each on a server
    restarted for it (see ``restart_fresh``). Within a round the server order rotates."""
    wrk_cases = [case for case in plan.cases if case.kind != "idle"]
    idle_cases = [case for case in plan.cases if case.kind == "idle"]
    if wrk_cases:
        warm_up(running, manifest["bench"][wrk_cases[0].file], plan.quick, load_cores)
    progress.measurements_planned = plan.rounds * sum(
        len(_servers_for(case, running)) for case in plan.cases)
    for round_number, case, order in interleaved(plan.rounds, running, wrk_cases):
        for server in _servers_for(case, still_running(order, progress)):
            record = measure_wrk(server, case, manifest, plan.duration, load_cores,
                                 _labels(round_number, case, server), progress.samples)
            progress.points.append(record)
            _done(plan, progress, round_number, case, server, record)
    for round_number, case, order in interleaved(plan.rounds, running, idle_cases):
        for server in _servers_for(case, still_running(order, progress)):
            fresh = restart_fresh(server, plan.docroot, plan.rundir, server_core, running,
                                  progress)
            if fresh is None:
                continue
            record = measure_idle(fresh, case, manifest, plan.open_timeout, load_cores,
                                  _labels(round_number, case, fresh), progress.samples)
            progress.idle.append(record)
            _done(plan, progress, round_number, case, fresh, record)


def restart_fresh(server: servers.RunningServer, docroot: str, rundir: str,
                  server_core: int | None, running: list[servers.RunningServer],
                  progress: Progress) -> servers.RunningServer | None:
    """Stop ``server`` and start its spec again, in its place in ``running``.

    Why: memory a server freed after earlier load stays in its allocator and is reused by the
    next connections, so on a process that has served wrk's 1,024 connections (or held the
    idle case before) the first thousand idle ones cost next to nothing. Each idle case is
    therefore held on a fresh process, whose growth is what a connection really costs. None if
    it does not start again.
    """
    server.stop()
    index = running.index(server)
    try:
        fresh = servers.start(server.spec, docroot, rundir, server_core, log_suffix="-fresh")
    except servers.StartError as error:
        running.pop(index)
        problem = f"{server.spec.label}: did not start again for the idle cases: {error}"
        log(problem)
        progress.problems.append(problem)
        return None
    running[index] = fresh
    progress.commands[server.spec.label] = " ".join(fresh.argv)
    return fresh


def _labels(round_number: int, case: Case, server: servers.RunningServer) -> dict[str, Any]:
    return {"round": round_number, "case": case.name, "server": server.spec.label}


def _done(plan: Plan, progress: Progress, round_number: int, case: Case,
          server: servers.RunningServer, record: dict[str, Any]) -> None:
    progress.measurements_done += 1
    log(f"[{progress.measurements_done}/{progress.measurements_planned}] round "
        f"{round_number}/{plan.rounds} {server.spec.label:14} {case.name:22} "
        f"{report.measurement_line(record)}")


def _measured_in(case: Case, spec: servers.ServerSpec) -> bool:
    return spec.label in case.only if case.only else not spec.only_when_named


def _servers_for(case: Case, order: Sequence[servers.RunningServer]) -> list[
        servers.RunningServer]:
    return [server for server in order if _measured_in(case, server.spec)]


def write_run(plan: Plan, progress: Progress) -> dict[str, Any]:
    report.write_records(plan.rundir, "points", progress.points)
    report.write_records(plan.rundir, "idle", progress.idle)
    report.write_records(plan.rundir, "samples", progress.samples)
    report.write_records(plan.rundir, "locust", progress.locust)
    point_rows = report.summarise(progress.points, report.POINT_METRICS)
    idle_rows = report.summarise(progress.idle, report.IDLE_METRICS)
    order = [spec.label for spec in plan.specs]
    figures = plots.all_figures(point_rows, progress.idle, progress.locust, order, plan.rundir,
                                plan.quick, sweeps=plan.command == "compare")
    summary: dict[str, Any] = {
        "points": point_rows, "idle": idle_rows, "locust": progress.locust,
        "figures": [{"file": os.path.basename(path), "shows": caption}
                    for path, caption in figures],
        "interrupted": progress.interrupted, "problems": progress.problems,
        "plan": {**asdict(plan), "specs": [asdict(s) for s in plan.specs]}}
    with open(os.path.join(plan.rundir, "summary.json"), "w") as out:
        json.dump(summary, out, indent=1, default=str)
    with open(os.path.join(plan.rundir, "report.md"), "w") as out:
        out.write(render_report(plan, progress, point_rows, idle_rows, summary["figures"]))
    return summary


def render_report(plan: Plan, progress: Progress, point_rows: list[dict[str, Any]],
                  idle_rows: list[dict[str, Any]], figures: list[dict[str, str]]) -> str:
    measured = {row["server"] for row in point_rows}
    baselines = [b for b in plan.baselines if b in measured]
    parts = ["# evserver experiment report\n"]
    if plan.quick:
        parts.append(report.QUICK_BANNER)
    if progress.interrupted:
        parts.append(f"> **Interrupted** (Ctrl-C) after {progress.measurements_done} of "
                     f"{progress.measurements_planned} measurements: the tables hold what was "
                     f"measured until then.\n")
    parts += [
        f"- run folder: `{plan.rundir}`; {time.strftime('%Y-%m-%d %H:%M:%S')}; "
        f"Python {sys.version.split()[0]}; {progress.cores}",
        f"- {plan.rounds} round(s), interleaved, after an unrecorded warm-up of each server; "
        f"{plan.duration:g} s per wrk point (wrk -t1 --latency); document root: "
        f"{plan.profile} tree, seed {plan.seed}",
        "",
        report.servers_table(progress.commands), ""]
    if plan.skipped or progress.problems:
        parts += ["## Not measured\n"] + [f"- {line}" for line in
                                          plan.skipped + progress.problems] + [""]
    if plan.command == "ab" and point_rows:
        table, verdicts = ab.ab_table(progress.points,
                                      [spec.label for spec in plan.specs if not spec.checkout])
        parts += ["## A/B: B against A\n", ab.checkouts_table(plan.checkouts), "",
                  ab.TABLE_INTRO, table, "", *verdicts, ""]
    if point_rows:
        parts += ["## Throughput and latency (wrk)\n", report.POINTS_INTRO.format(
            n=plan.rounds), report.points_table(point_rows, baselines), "",
            report.point_notes(point_rows), ""]
    if idle_rows:
        parts += ["## Idle keep-alive connections\n", report.IDLE_INTRO,
                  report.idle_table(idle_rows), ""]
    if any(row["server"] == BENCH_ACCESS_LOG_LABEL for row in point_rows):
        parts += ["## Targets (ratios of medians to nginx)\n",
                  report.targets_table(point_rows, idle_rows, verdicts=not plan.quick), ""]
    if plan.tls and point_rows:
        parts += ["## TLS: targets (evented over TLS / nginx over TLS)\n",
                  report.TLS_INTRO.format(sessions=report.tls_sessions_line(
                      progress.tls_sessions)),
                  report.tls_targets_table(point_rows, verdicts=not plan.quick), "",
                  "## TLS: what it costs (each server over HTTPS / the same over HTTP)\n",
                  report.tls_cost_table(point_rows), ""]
    if progress.locust:
        parts += ["## Locust scenarios (the same workload for every server)\n",
                  report.LOCUST_INTRO, report.locust_table(progress.locust), "",
                  report.scenario_table(progress.locust), ""]
    if figures:
        parts += ["## Plots\n"] + [f"- `{f['file']}`: {f['shows']}" for f in figures] + [""]
        parts += [f"![{f['file']}]({f['file']})" for f in figures] + [""]
    return "\n".join(parts) + "\n"


# --- plans from the command line -------------------------------------------------------------

def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _count_list(text: str) -> list[int]:
    """argparse type: a comma list of positive whole numbers."""
    try:
        values = [int(item) for item in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every number must be 1 or more")
    return values


def _file_list(text: str) -> list[str]:
    names = _csv_list(text)
    unknown = [name for name in names if name not in docroot.BENCH_SIZES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose from {', '.join(docroot.BENCH_SIZES)}")
    return names


def peer_specs(names: list[str], skipped: list[str]) -> list[servers.ServerSpec]:
    specs = []
    for name in names:
        if name not in servers.PEERS:
            raise PlanError(f"--peers {name!r}: choose from {', '.join(servers.PEERS)}")
        missing = servers.peer_missing(name)
        if missing:
            log(f"{missing}: it is left out, the rest goes on")
            skipped.append(f"{name}: {missing}")
            continue
        specs.append(servers.peer_spec(name))
    return specs


def compare_specs(args: argparse.Namespace, skipped: list[str]) -> list[servers.ServerSpec]:
    texts = list(args.server or [])
    if args.models or not texts:
        texts += _csv_list(args.models or "evented,threaded,iterative")
    parsed = [servers.parse_spec(text) for text in texts]
    wanted_peers = [spec.kind for spec in parsed if spec.kind in servers.PEERS]
    specs = [spec for spec in parsed if spec.kind == "evserver"]
    specs += peer_specs(wanted_peers + _csv_list(args.peers), skipped)
    return servers.label_specs(specs)


def compare_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    skipped: list[str] = []
    specs = compare_specs(args, skipped)
    files = args.files or (["1k"] if quick else ["1k", "64k"])
    profile = docroot.PROFILES["quick" if quick else "full"]
    absent = [name for name in files if name not in profile.bench_names]
    if absent:
        raise PlanError(f"--files {','.join(absent)}: not in the {'quick' if quick else 'full'} "
                        f"tree (it has {', '.join(profile.bench_names)})")
    connections = args.connections if args.connections is not None else (
        [1, 64] if quick else [1, 16, 64, 256, 1024])
    cases = [Case(f"{f} {NEW_CONNECTION_PER_REQUEST[close]} c{c}", "wrk", f, c, close)
             for close in ([False, True] if args.close else [False])
             for f in files for c in connections]
    holds = args.hold if args.hold is not None else ([200] if quick else [1000, 5000])
    cases += [Case(f"idle {n}", "idle", "1k", n) for n in holds]
    locust_seconds = args.locust_time if args.locust_time is not None else (5 if quick else 30)
    if locust_seconds and not locust_available():
        log(f"{INSTALL_LOCUST}: the Locust scenarios are left out, the rest goes on")
        skipped.append(f"Locust scenarios: {INSTALL_LOCUST}")
        locust_seconds = 0
    first = next((s.label for s in specs if s.kind == "evserver"), None)
    baselines = ([first] if first else []) + [s.label for s in specs if s.kind != "evserver"]
    return Plan(specs, cases, args.repeat or (1 if quick else 3),
                args.duration or (2 if quick else 10), args.open_timeout or (5 if quick else 20),
                locust_seconds, args.locust_users or (50 if quick else 100),
                args.locust_processes, quick, args.seed, _rundir(args),
                args.docroot or default_docroot("quick" if quick else "full"), baselines,
                "compare", skipped)


BENCH_ACCESS_LOG_LABEL = "evented+log"

IDLE_HEADROOM = 100
"""Connections allowed beyond the idle count, so the new-client probe is not refused by the cap."""


def bench_plan(args: argparse.Namespace) -> Plan:
    """The README's performance table: these cases against evserver's models and the peers."""
    quick = args.quick
    skipped: list[str] = []
    idle_count = args.idle_connections or (200 if quick else 10000)
    # The idle case asks for one client more than it holds: the cap must leave room for it.
    room = ("--max-connections", str(idle_count + IDLE_HEADROOM))
    specs = [servers.evserver_spec(m, *room) for m in servers.MODELS]
    specs.append(servers.ServerSpec(BENCH_ACCESS_LOG_LABEL, "evserver", "evented",
                                    ("--access-log", "{rundir}/access-evented.log", *room),
                                    only_when_named=True))
    specs += peer_specs(["http.server", "nginx"], skipped)
    big = "1m" if quick else "16m"  # the quick tree has no 16 MiB file
    cases = [
        Case("1k keep-alive c64", "wrk", "1k", 64),
        Case("1k access log c64", "wrk", "1k", 64, only=("evented", BENCH_ACCESS_LOG_LABEL)),
        Case("1k new conn c64", "wrk", "1k", 64, close=True),
        Case("64k keep-alive c64", "wrk", "64k", 64),
        Case("1k keep-alive c1", "wrk", "1k", 1),
        Case(f"{big} keep-alive c8", "wrk", big, 8),
        Case(f"idle {idle_count}", "idle", "1k", idle_count),
    ]
    return Plan(specs, cases, args.repeat or (1 if quick else 3),
                args.duration or (2 if quick else 10),
                args.open_timeout or (5 if quick else 20), 0, 0, 1, quick, args.seed,
                _rundir(args), args.docroot or default_docroot("quick" if quick else "full"),
                ["nginx", "evented"], "bench", skipped)


def tls_bench_plan(args: argparse.Namespace) -> Plan:
    """``bench --tls``: evserver's evented model and nginx, each over HTTP and over HTTPS with
    the same certificate, so the run gives both the targets (evented over TLS against nginx over
    TLS) and what TLS costs each server (its HTTPS figures against its own HTTP ones).

    The cases: small responses on kept connections (the cost of records), a large file (the
    cost of encrypting every byte: no sendfile), and a new connection per request (a full
    handshake each: wrk does not resume TLS sessions)."""
    quick = args.quick
    skipped: list[str] = []
    specs = [servers.evserver_spec("evented"),
             servers.evserver_spec("evented", *servers.EVSERVER_TLS_ARGS, label="evented+tls")]
    specs += peer_specs(["nginx", servers.NGINX_TLS], skipped)
    big = "1m" if quick else "16m"  # the quick tree has no 16 MiB file
    cases = [Case("1k keep-alive c64", "wrk", "1k", 64),
             Case(f"{big} keep-alive c8", "wrk", big, 8),
             Case("1k new conn c64", "wrk", "1k", 64, close=True)]
    return Plan(specs, cases, args.repeat or (1 if quick else 3),
                args.duration or (2 if quick else 10),
                args.open_timeout or (5 if quick else 20), 0, 0, 1, quick, args.seed,
                _rundir(args), args.docroot or default_docroot("quick" if quick else "full"),
                [servers.NGINX_TLS, "evented"], "bench", skipped, tls=True)


AB_CASES = {
    "1k": Case("1k keep-alive c64", "wrk", "1k", 64),
    "1k-close": Case("1k new conn c64", "wrk", "1k", 64, close=True),
    "64k": Case("64k keep-alive c64", "wrk", "64k", 64),
    "1k-c1": Case("1k keep-alive c1", "wrk", "1k", 1),
    "16m": Case("16m keep-alive c8", "wrk", "16m", 8),
}
"""The cases ``ab --cases`` can name: the benchmark's wrk cases and the one-connection one."""

AB_DEFAULT_CASES = ("1k", "1k-close", "64k", "1k-c1")


def _ab_case_list(text: str) -> list[str]:
    names = _csv_list(text)
    if not names or any(name not in AB_CASES for name in names):
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(AB_CASES)}")
    return names


def ab_plan(args: argparse.Namespace, checkouts: Sequence[ab.Checkout]) -> Plan:
    """Two evservers, each its checkout's code with the same options, and the peers asked for;
    A is the baseline of every ratio."""
    quick = args.quick
    skipped: list[str] = []
    try:
        words = shlex.split(args.server_args)
    except ValueError as error:
        raise PlanError(f"--server-args {args.server_args!r}: {error}") from None
    text = args.server_args if words[:1] and words[0] in servers.MODELS \
        else f"evented {args.server_args}"
    specs = [replace(servers.parse_spec(f"{checkout.label}={text}"), checkout=checkout.path)
             for checkout in checkouts]
    specs += peer_specs(_csv_list(args.peers), skipped)
    names = args.cases or (["1k"] if quick else list(AB_DEFAULT_CASES))
    profile = docroot.PROFILES["quick" if quick else "full"]
    absent = [name for name in names if AB_CASES[name].file not in profile.bench_names]
    if absent:
        raise PlanError(f"--cases {','.join(absent)}: not in the {'quick' if quick else 'full'} "
                        f"tree (it has {', '.join(profile.bench_names)})")
    # Absolute: each evserver runs in its checkout's folder, not in the current one.
    tree = os.path.abspath(args.docroot or default_docroot("quick" if quick else "full"))
    return Plan(specs, [AB_CASES[name] for name in names], args.repeat or (1 if quick else 3),
                args.duration or (2 if quick else 10), args.open_timeout or 5, 0, 0, 1, quick,
                args.seed, _rundir(args), tree,
                ["A"] + [spec.label for spec in specs if not spec.checkout], "ab", skipped)


def run_ab(args: argparse.Namespace) -> int:
    """``ab``: check out the revisions, make sure each server runs its own checkout's code,
    measure both interleaved, and remove the worktrees whatever happens."""
    rundir = _rundir(args)
    try:
        checkouts = [ab.resolve(label, given, PROJECT_DIR, rundir)
                     for label, given in zip(ab.LABELS, (args.rev_a, args.rev_b), strict=True)]
        plan = ab_plan(args, checkouts)
        if docroot.load_manifest(plan.docroot) is None:
            docroot.check_writable_tree(plan.docroot)
    except (PlanError, servers.SpecError, ab.AbError, docroot.NotATree) as error:
        log(f"experiment: {error}")
        return 2
    if tool_missing("wrk"):
        log(f"experiment: {INSTALL_WRK}")
        return 1
    log(f"A/B: {len(plan.cases)} case(s), {plan.rounds} round(s): about "
        f"{max(1, round(estimate_seconds(plan) / 60))} minute(s)"
        + (" (quick: a smoke test)" if plan.quick else ""))
    made: list[ab.Checkout] = []
    try:
        with bench_lock():
            try:
                ab.add_worktrees(checkouts, PROJECT_DIR, made)
                for checkout in checkouts:
                    ab.verify_import(checkout)
                    log(f"{checkout.label} = {checkout.given}: evserver from "
                        f"{checkout.imported_from}")
                servers.check_specs(plan.specs)
            except (ab.AbError, servers.SpecError) as error:
                log(f"experiment: {error}")
                return 2
            plan.checkouts = [asdict(checkout) for checkout in checkouts]
            summary, progress = run_plan(plan)
    except KeyboardInterrupt:  # waiting for the lock, or making the worktrees
        log("Ctrl-C: nothing was measured")
        return INTERRUPTED_EXIT
    finally:
        with sigint_ignored():
            for problem in ab.remove_worktrees(made, PROJECT_DIR):
                log(problem)
    return finish(plan, summary, progress)


def drop_wrk_cases(plan: Plan) -> None:
    """Without wrk, only the idle cases and Locust can run: say so once and go on."""
    log(f"{INSTALL_WRK}: throughput and latency are left out, the rest goes on")
    plan.skipped.append(f"throughput and latency (every wrk case): {INSTALL_WRK}")
    plan.cases = [case for case in plan.cases if case.kind != "wrk"]


def estimate_seconds(plan: Plan) -> float:
    """A rough duration of the plan, so the user knows whether to wait or come back."""
    rounds = plan.rounds * sum(
        (plan.duration + 1 if case.kind == "wrk" else plan.open_timeout / 2 + 3)
        * sum(1 for spec in plan.specs if _measured_in(case, spec)) for case in plan.cases)
    locust = (plan.locust_seconds + 8) * sum(1 for s in plan.specs if not s.only_when_named) \
        if plan.locust_seconds else 0
    return rounds + locust + (2 + WARM_UP_SECONDS) * len(plan.specs)


def default_docroot(profile: str) -> str:
    """Where the generated tree of a profile lives unless ``--docroot`` says otherwise."""
    return os.path.join(PROJECT_DIR, "results", f"docroot-{profile}")


def _rundir(args: argparse.Namespace) -> str:
    if args.out:
        return os.path.abspath(str(args.out))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(PROJECT_DIR, "results", f"{args.command}-{stamp}")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description="evserver load experiments: a report with tables and plots in a run folder.")
    commands = top.add_subparsers(dest="command", required=True)
    for name, help_text in (("compare", "sweep concurrency and file sizes across servers"),
                            ("bench", "the README's performance table vs http.server and nginx"),
                            ("ab", "two revisions (or checkouts) of evserver, interleaved: "
                                   "B's ratio to A per case, and a verdict")):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--quick", action="store_true",
                         help="a smoke test: tiny tree, 1 round, 2 s points, about a minute; "
                              "no verdicts")
        sub.add_argument("--repeat", type=int, help="rounds (default 3, quick 1)")
        sub.add_argument("--duration", type=float, help="seconds per wrk point (10, quick 2)")
        sub.add_argument("--out", help="run folder (default results/<command>-<timestamp>)")
        sub.add_argument("--docroot", help="a new or empty folder for the generated tree, or "
                                           "one made before (default results/docroot-<profile>)")
        sub.add_argument("--seed", type=int, default=1, help="document root seed")
        sub.add_argument("--open-timeout", type=float,
                         help="seconds to open the idle connections (20, quick 5)")
    compare = commands.choices["compare"]
    compare.add_argument("--server", action="append", metavar="SPEC",
                         help="a server to measure: a model and evserver options, e.g. "
                              "'evented --selector poll' or 'threaded'; LABEL=SPEC names it; "
                              "repeat for each server")
    compare.add_argument("--models", metavar="LIST",
                         help="comma list of models, each with evserver's defaults (the same "
                              "as one --server per model); default evented,threaded,iterative "
                              "when no --server is given")
    compare.add_argument("--peers", default="", metavar="LIST",
                         help="other servers to compare with: http.server,nginx")
    compare.add_argument("--connections", type=_count_list,
                         help="wrk -c levels, '' for none: only the idle cases and Locust "
                              "(1,16,64,256,1024; quick 1,64)")
    compare.add_argument("--files", type=_file_list,
                         help="bench files: 1k,4k,64k,1m,16m (1k,64k; quick 1k)")
    compare.add_argument("--close", action="store_true",
                         help="also measure a new connection per request")
    compare.add_argument("--hold", type=lambda text: _count_list(text) if text else [],
                         help="idle connection counts, '' for none (1000,5000; quick 200)")
    compare.add_argument("--locust-time", type=float,
                         help="seconds of Locust per server, 0 for none (30; quick 5)")
    compare.add_argument("--locust-users", type=int, help="Locust users (100; quick 50)")
    compare.add_argument("--locust-processes", type=int, default=1, metavar="N",
                         help="Locust processes: N > 1 runs Locust's own master and N worker "
                              "processes (default 1)")
    ab_command = commands.choices["ab"]
    for name in ("rev_a", "rev_b"):
        ab_command.add_argument(name, metavar=name.upper().replace("_", "-"),
                                help="a git revision (checked out for the run) or the folder "
                                     "of a checkout; A is the baseline")
    ab_command.add_argument("--server-args", default="", metavar="ARGS",
                            help="evserver options for both, e.g. '--selector poll' (a model "
                                 "first, else evented)")
    ab_command.add_argument("--cases", type=_ab_case_list,
                            help=f"comma list of {', '.join(AB_CASES)} "
                                 f"({','.join(AB_DEFAULT_CASES)}; quick 1k)")
    ab_command.add_argument("--peers", default="", metavar="LIST",
                            help="other servers to show beside them: http.server,nginx")
    commands.choices["bench"].add_argument("--idle-connections", type=int,
                                           help="idle connections to hold (10000; quick 200)")
    commands.choices["bench"].add_argument(
        "--tls", action="store_true",
        help="the HTTPS cases instead: evented and nginx, each over HTTP and over HTTPS with "
             "one certificate made for the run; targets against nginx over TLS")
    return top


def make_plan(args: argparse.Namespace) -> Plan:
    if args.command == "compare":
        plan = compare_plan(args)
    else:
        plan = tls_bench_plan(args) if args.tls else bench_plan(args)
    if not plan.specs:
        raise PlanError("no server to measure")
    servers.check_specs(plan.specs)
    if docroot.load_manifest(plan.docroot) is None:
        docroot.check_writable_tree(plan.docroot)
    if tool_missing("wrk"):
        drop_wrk_cases(plan)
    if not plan.cases and not plan.locust_seconds:
        raise PlanError("nothing left to measure")
    return plan


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "ab":
        return run_ab(args)
    try:
        plan = make_plan(args)
    except (PlanError, servers.SpecError, docroot.NotATree) as error:
        log(f"experiment: {error}")
        return 2
    minutes = estimate_seconds(plan) / 60
    log(f"{len(plan.specs)} servers, {len(plan.cases)} cases, {plan.rounds} round(s): about "
        f"{max(1, round(minutes))} minute(s)" + (" (quick: a smoke test)" if plan.quick else ""))
    try:
        with bench_lock():
            summary, progress = run_plan(plan)
    except KeyboardInterrupt:  # while waiting for another run's lock: nothing was started
        log("Ctrl-C: nothing was measured")
        return INTERRUPTED_EXIT
    return finish(plan, summary, progress)


def finish(plan: Plan, summary: dict[str, Any], progress: Progress) -> int:
    """Print the report and return the exit status of a run that measured."""
    with open(os.path.join(plan.rundir, "report.md")) as report_file:
        print(report_file.read())
    log(f"report: {os.path.join(plan.rundir, 'report.md')} "
        f"({len(summary['figures'])} plots)")
    if progress.interrupted:
        return INTERRUPTED_EXIT
    return 0 if progress.points or progress.idle or progress.locust else 1


if __name__ == "__main__":
    raise SystemExit(main())
