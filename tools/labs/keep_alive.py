"""Lab ``keep-alive``: a persistent connection against a new connection per request.

What this lab knows: wrk with and without ``Connection: close``, the server's CPU time, and the
sockets in TIME_WAIT on either side of the server's port (``/proc/net/tcp``). What it must not
know: how the server closes (it sees only who is left in TIME_WAIT).
"""

from __future__ import annotations

import time
from typing import Any

from tools import experiment, plots, report, servers
from tools.labs.base import (
    Lab,
    LabRun,
    PointMeasure,
    count_tcp_states,
    point_rows,
    row_of,
    wrk_rounds,
)

MODELS = ("evented", "threaded")

CONNECTIONS = 64

CASES = (experiment.Case(f"1k keep-alive c{CONNECTIONS}", "wrk", "1k", CONNECTIONS),
         experiment.Case(f"1k new conn c{CONNECTIONS}", "wrk", "1k", CONNECTIONS, close=True))

TIME_WAIT_SECONDS = 60
"""How long Linux keeps a closed connection in TIME_WAIT (TCP_TIMEWAIT_LEN, not tunable)."""

TIME_WAIT_LIMIT_FILE = "/proc/sys/net/ipv4/tcp_max_tw_buckets"
"""Linux keeps at most this many sockets in TIME_WAIT; beyond it, it closes them at once."""

TIME_WAIT_CEILING_SHARE = 0.9
"""A count this close to the limit is a floor, not a measurement (the report says so)."""


PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
"""The client ports connect() picks from; Linux gives connect() the even ones first."""

TIME_WAIT_LEFTOVER = 100
"""So many sockets left from an earlier point are not waited out: the few a keep-alive point
leaves (wrk's connections closing at its end) change a count of thousands by little."""

TIME_WAIT_POLL_SECONDS = 0.5
"""How often to look whether the previous point's TIME_WAIT sockets are gone."""


def client_port_ceiling() -> int:
    """About how many TIME_WAIT sockets one server port can hold from one client machine.

    A SYN from a client port whose old connection is still in TIME_WAIT on the server's side
    takes that entry over (RFC 1122 4.2.2.13 lets the closer accept it), so the count stops near
    the number of client ports in use: half the local port range, since Linux hands connect()
    the even ports first."""
    try:
        with open(PORT_RANGE_FILE) as ports:
            low, high = (int(word) for word in ports.read().split())
        return (high - low + 1) // 2
    except (OSError, ValueError):
        return 1 << 62  # unknown: never at the ceiling


def wait_time_wait_gone(port: int) -> float:
    """Wait until at most TIME_WAIT_LEFTOVER sockets of ``port`` are in TIME_WAIT (at most
    TIME_WAIT_SECONDS and a little), so that the next point's count is its own; the seconds
    waited."""
    started = time.monotonic()
    deadline = started + TIME_WAIT_SECONDS + 2
    while sum(count_tcp_states(port)) > TIME_WAIT_LEFTOVER and time.monotonic() < deadline:
        time.sleep(TIME_WAIT_POLL_SECONDS)
    return round(time.monotonic() - started, 1)


def time_wait_limit() -> int:
    try:
        with open(TIME_WAIT_LIMIT_FILE) as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return 1 << 62  # unknown: never at the ceiling


EXTRA_METRICS = ("cpu_us_per_request", "time_wait_server", "time_wait_client")


def with_time_wait(server: servers.RunningServer, case: experiment.Case,
                   measure: PointMeasure) -> dict[str, Any]:
    """The point's record, plus the sockets it left in TIME_WAIT on the server's side and on
    the clients' side (after minus before), and the server's CPU microseconds per request.

    The sockets an earlier point left (they live 60 s) are waited out first: a new connection
    from their client port would take their entry over and the difference would undercount."""
    waited = wait_time_wait_gone(server.port)
    server_before, client_before = count_tcp_states(server.port)
    record = measure()
    server_after, client_after = count_tcp_states(server.port)
    if server_after + client_after >= TIME_WAIT_CEILING_SHARE * time_wait_limit():
        record["time_wait_at_ceiling"] = True
    if max(server_after, client_after) >= TIME_WAIT_CEILING_SHARE * client_port_ceiling():
        record["time_wait_at_port_ceiling"] = True
    requests = record.get("requests") or 0
    record.update({
        "time_wait_server": max(0, server_after - server_before),
        "time_wait_client": max(0, client_after - client_before),
        "time_wait_server_after": server_after,
        "time_wait_waited_seconds": waited,
        "cpu_us_per_request": round(record["cpu_seconds"] / requests * 1e6, 2)
        if requests else None})
    return record


def measure(run: LabRun) -> None:
    running = run.start([servers.evserver_spec(model) for model in MODELS])
    wrk_rounds(run, running, CASES, run.pick(1, 3), run.pick(2.0, 5.0), wrap=with_time_wait)


def summarise(run: LabRun) -> None:
    rows = point_rows(run)
    extra = report.summarise(run.records.get("points", []), EXTRA_METRICS)
    table_rows = []
    for case in CASES:
        for model in MODELS:
            row, more = row_of(rows, case.name, model), row_of(extra, case.name, model)
            table_rows.append([case.name, model, report.fmt_range(row, "rps"),
                               report.fmt_range(more, "cpu_us_per_request", 1),
                               report.fmt_range(row, "p99_ms", 2),
                               report.fmt_range(more, "time_wait_server"),
                               report.fmt_range(more, "time_wait_client"),
                               report.fmt_range(row, "server_cpu_pct")])
    run.table(f"1 KiB file, {CONNECTIONS} connections",
              ["case", "server", "req/s", "CPU us/request", "p99 ms",
               "TIME_WAIT server side", "TIME_WAIT client side", "CPU % server"], table_rows,
              "`TIME_WAIT`: sockets the point left in TIME_WAIT (after minus before), on the "
              "server's port and on the clients' ports; the side that closes first keeps it, "
              f"for {TIME_WAIT_SECONDS} s (each point starts after the previous point's are "
              f"gone). This kernel keeps at most {time_wait_limit():,} "
              f"(`{TIME_WAIT_LIMIT_FILE}`) and closes any more at once.")
    at_ports = sorted({r["case"] for r in run.records.get("points", [])
                       if r.get("time_wait_at_port_ceiling")})
    if at_ports:
        run.sections += [
            f"In {', '.join(at_ports)} the count stopped near {client_port_ceiling():,}, the "
            f"client ports connect() uses here (half of `{PORT_RANGE_FILE}`): the point made "
            "more connections than that, and a new connection from a client port whose old "
            "connection is still in TIME_WAIT on the server's side takes that entry over. "
            "With clients on many machines (or many addresses) the count would keep growing, "
            "one per connection, for 60 s.", ""]
    ceiling = sorted({r["case"] for r in run.records.get("points", [])
                      if r.get("time_wait_at_ceiling")})
    if ceiling:
        run.problems.append(f"TIME_WAIT reached the kernel's limit in {', '.join(ceiling)}: "
                            f"the counts there are floors (shorter points would stay under it)")
    categories = [case.name.replace(f" c{CONNECTIONS}", "") for case in CASES]

    def values(source: list[dict[str, Any]], metric: str) -> dict[str, list[float | None]]:
        return {model: [row_of(source, case.name, model).get(metric) for case in CASES]
                for model in MODELS}

    drawn = plots.bars_figure(
        run.path("keep-alive.png"),
        [plots.BarPanel("requests per second (higher is better)", "requests/s", categories,
                        values(rows, "rps")),
         plots.BarPanel("server CPU per request (lower is better)", "microseconds",
                        categories, values(extra, "cpu_us_per_request")),
         plots.BarPanel("TIME_WAIT left on the server's side", "sockets",
                        categories, values(extra, "time_wait_server"))],
        f"Keep-alive vs a new connection per request (1 KiB, {CONNECTIONS} connections)",
        run.quick, f"TIME_WAIT here stops near {client_port_ceiling():,}, the client ports "
                   "connect() uses (see the report)" if at_ports else "")
    run.figure("keep-alive.png", "requests/s, server CPU per request and the TIME_WAIT sockets "
                                 "left on the server's side, keep-alive against a connection "
                                 "per request", drawn)
    keep = row_of(extra, CASES[0].name, "evented").get("cpu_us_per_request")
    close = row_of(extra, CASES[1].name, "evented").get("cpu_us_per_request")
    waits = row_of(extra, CASES[1].name, "evented").get("time_wait_server")
    if keep and close:
        run.say(f"evented: {close:.0f} us of server CPU per request with a new connection "
                f"each, {keep:.0f} us with keep-alive ({close / keep:.1f}x); "
                f"{report.fmt(waits)} sockets left in TIME_WAIT on the server's side")


LAB = Lab(
    name="keep-alive",
    title="Keep-alive vs a connection per request",
    question="What does opening a connection for every request cost the server, in "
             "requests/s and CPU per request, and what does it leave behind in TIME_WAIT?",
    expected="A new connection per request costs several times the CPU of a keep-alive "
             "request (accept, a new socket and its registration, the close, and the kernel's "
             "handshake work charged to the server), so requests/s drops by about as much. "
             "Every connection the server closes first stays in TIME_WAIT on its side for "
             "60 s: about one per request of the point, against none with keep-alive.",
    look_for="The ratio of CPU us/request between the two cases, per model, and the two "
             "TIME_WAIT columns: which side closed first? The threaded model pays a thread "
             "start per connection on top.",
    measure=measure,
    summarise=summarise,
    minutes=(0.3, 7.0),
)
