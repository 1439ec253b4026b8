"""Lab ``head-of-line``: one slow client, and what every other client pays for it, per model.

What this lab knows: two kinds of slow client -- one that trickles its request head a byte a
second, one that makes a request and then idles on its keep-alive connection -- and a probe: the
constant-rate client (``tools/openloop.py``), one new connection per probe, whose latency counts
from the moment each probe was due. What it must not know: how the models serve connections.

The servers run with short timeouts (``--header-timeout`` and ``--idle-timeout``, the same
value), so that one slow client holds a connection for a known, bounded time.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from typing import Any

from tools import experiment, plots, report, servers
from tools.labs.base import (
    Lab,
    LabRun,
    finish_open_loop,
    latency_summary,
    log,
    start_open_loop,
)

MODELS = ("evented", "threaded", "iterative")
SLOW_KINDS = ("trickle", "idle")

TIMEOUT_QUICK = 2.0
TIMEOUT_FULL = 10.0
"""The servers' header and idle timeouts: how long one slow client can hold its connection."""

PROBE_RATE = 10.0
"""Probes per second: each a new connection, so the iterative server could serve them all."""

PROBE_CONNECTIONS = 200
"""Probes open at once, at most: more than wait behind the slow client in a full run."""

PROBE_START = 0.5
"""Seconds after the slow client connected that the probes begin (it is surely accepted)."""

PROBE_AFTER = 2.0
"""Seconds the probes go on after the slow client's connection should have ended."""

TRICKLE_INTERVAL = 1.0
"""Seconds between two bytes of the trickling client's request head."""


def slow_client(port: int, kind: str, path: str, limit: float, result: dict[str, Any],
                connected: threading.Event) -> None:
    """Hold one connection the slow way until the server ends it (or ``limit`` seconds)."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
            started = time.monotonic()
            result["started"] = started
            connected.set()
            if kind == "idle":
                sock.sendall(request)  # then never another: the connection idles
            else:
                for index in range(len(request)):
                    sock.sendall(request[index:index + 1])
                    if select.select([sock], [], [], TRICKLE_INTERVAL)[0]:
                        break  # the server answered (408) or closed
            while sock.recv(65536):  # the response(s), then the server's close
                if time.monotonic() - started > limit:
                    break
            result["held_s"] = round(time.monotonic() - started, 3)
    except OSError as error:
        result["error"] = str(error)
    finally:
        connected.set()


def point(run: LabRun, server: servers.RunningServer, kind: str, timeout: float,
          labels: dict[str, Any]) -> list[dict[str, Any]]:
    """One slow client of ``kind`` and the probes beside it; the probes' records."""
    result: dict[str, Any] = {}
    connected = threading.Event()
    limit = timeout + 10
    thread = threading.Thread(target=slow_client, daemon=True,
                              args=(server.port, kind, run.bench_path("1k"), limit, result,
                                    connected))
    thread.start()
    connected.wait(limit)
    client = start_open_loop(run, server, run.bench_path("1k"), PROBE_RATE,
                             timeout + PROBE_AFTER, start_in=PROBE_START,
                             connections=PROBE_CONNECTIONS,
                             close=True, timeout=timeout + 5, name="probes")
    probes = finish_open_loop(run, client)
    thread.join(limit)
    offset = client.start_at - result.get("started", client.start_at)
    held = result.get("held_s")
    run.record("slow_clients", {**labels, **result})
    return [{**labels, **probe, "since_slow_s": round(probe["intended"] + offset, 3),
             "slow_held_s": held} for probe in probes]


def measure(run: LabRun) -> None:
    timeout = run.pick(TIMEOUT_QUICK, TIMEOUT_FULL)
    options = ("--header-timeout", f"{timeout:g}", "--idle-timeout", f"{timeout:g}")
    running = run.start([servers.evserver_spec(m, *options, label=m) for m in MODELS])
    rounds = run.pick(1, 2)
    for round_number, kind, order in experiment.interleaved(rounds, running, SLOW_KINDS):
        for server in run.alive(order):
            labels = {"round": round_number, "server": server.spec.label, "slow": kind}
            probes = point(run, server, kind, timeout, labels)
            for probe in probes:
                run.record("probes", probe)
            answered = [p["latency_ms"] for p in probes if p["latency_ms"] is not None]
            log(f"round {round_number}/{rounds} {server.spec.label:9} {kind:7}: "
                f"{len(answered)}/{len(probes)} probes answered, slowest "
                f"{report.fmt(max(answered, default=None), 1)} ms")


def summarise(run: LabRun) -> None:
    timeout = run.pick(TIMEOUT_QUICK, TIMEOUT_FULL)
    probes = run.records.get("probes", [])
    slow = run.records.get("slow_clients", [])
    rows, worst = [], {}
    for kind in SLOW_KINDS:
        for model in MODELS:
            mine = [p for p in probes if p["server"] == model and p["slow"] == kind]
            if not mine:
                continue
            answered = [p["latency_ms"] for p in mine if p["latency_ms"] is not None]
            figures = latency_summary(answered)
            worst[(model, kind)] = figures["max_ms"]
            held = [s["held_s"] for s in slow if s["server"] == model and s["slow"] == kind
                    and s.get("held_s") is not None]
            rows.append([kind, model, str(len(mine)), str(len(mine) - len(answered)),
                         report.fmt(figures["p50_ms"], 1), report.fmt(figures["p99_ms"], 1),
                         report.fmt(figures["max_ms"], 1),
                         report.fmt(max(held) if held else None, 1)])
    run.table("Probe latency beside one slow client (new connection per probe)",
              ["slow client", "server", "probes", "not answered", "p50 ms", "p99 ms", "max ms",
               "slow client held s"], rows,
              f"Probes at {PROBE_RATE:g}/s from {PROBE_START:g} s after the slow client "
              f"connected, each timed from the moment it was due. The servers' header and idle "
              f"timeouts are {timeout:g} s: the most a slow client holds its connection.")
    panels = []
    for kind in SLOW_KINDS:
        series = {model: [(p["since_slow_s"], p["latency_ms"]) for p in probes
                          if p["server"] == model and p["slow"] == kind
                          and p["latency_ms"] is not None] for model in MODELS}
        panels.append(plots.LinePanel(
            f"slow client: {'a byte a second' if kind == 'trickle' else 'idle keep-alive'}",
            "seconds since the slow client connected (when the probe was due)",
            "probe latency, ms (log)", series, logy=True, points_only=True, ticks_at_x=False,
            spans=[(0.0, timeout, f"the slow client's connection (timeout {timeout:g} s)")]))
    drawn = plots.lines_figure(run.path("head-of-line.png"), panels,
                               "Head-of-line blocking: probes beside one slow client",
                               run.quick, "one point per probe; lower is better")
    run.figure("head-of-line.png", "each probe's latency against when it was due, beside a "
                                   "trickling (left) and an idle (right) slow client", drawn)
    parts = [f"{model} {report.fmt(worst.get((model, 'idle')), 1)} ms"
             for model in MODELS if (model, "idle") in worst]
    if parts:
        run.say(f"slowest probe beside one idle keep-alive client ({timeout:g} s timeout): "
                + ", ".join(parts))


LAB = Lab(
    name="head-of-line",
    title="Head-of-line blocking",
    question="While one slow client holds a connection -- trickling its request a byte a "
             "second, or idling on a keep-alive connection -- how long do other clients wait, "
             "for each model?",
    expected="The evented and threaded models answer the probes in about a millisecond "
             "throughout. The iterative model answers none while the slow client holds it: a "
             "probe waits until the server's timeout ends the slow connection (header timeout "
             "for the trickler, idle timeout for the idler), so the first probes wait almost "
             "the whole timeout and the line of points falls with slope -1 until the "
             "connection ends.",
    look_for="The iterative points in the shaded band (their latency is the time left until "
             "the timeout), and how the evented and threaded points stay flat. Compare `max ms` "
             "with the timeout.",
    measure=measure,
    summarise=summarise,
    needs=(),
    minutes=(0.5, 3.0),
)
