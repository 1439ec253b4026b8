"""Lab ``backpressure``: clients that pipeline requests and never read the answers.

What this lab knows: a flood of such clients, run here on one ``selectors`` loop (each sends an
endless stream of pipelined GETs and reads nothing), and the server's resident memory from
/proc, sampled while they push. What it must not know: how the server bounds what it holds.

Safety: the flood is bounded in time (``--quick`` a few seconds), in bytes per client, and in
the server's memory: if the server grows by more than ``MEMORY_CAP_MIB`` the flood stops at
once and the report says so. That is what happens when the exercise removes the bounds.
"""

from __future__ import annotations

import selectors
import socket
import time
from typing import Any

from tools import experiment, plots, procstat, report, servers
from tools.labs.base import Lab, LabRun, log

MODELS = ("evented", "threaded")

CLIENTS_QUICK = 20
CLIENTS_FULL = 100

SECONDS_QUICK = 4.0
SECONDS_FULL = 15.0
"""How long the clients push; under the servers' send timeout, so nobody is dropped for it."""

SEND_TIMEOUT = 60
"""The servers' --send-timeout here: longer than the flood, so only backpressure bounds them."""

MEMORY_CAP_MIB = 512
"""Server memory growth at which the flood stops: the lab never lets a server eat the machine."""

MAX_BYTES_PER_CLIENT = 32 * 1024 * 1024
"""Request bytes one client sends at most (it stops earlier when the kernel stops taking them)."""

CLIENT_SNDBUF = 64 * 1024
"""Each client's socket send buffer: small, so the requests wait in the server, not here."""

SAMPLE_STEP = 0.1
"""Seconds between two samples of the server's memory (and checks of the cap)."""

BURST_REQUESTS = 64
"""Requests in the block a client writes again and again (an endless pipeline)."""


def flood(port: int, path: str, clients: int, seconds: float, pid: int,
          labels: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Push pipelined requests on ``clients`` connections, reading nothing; sample the server.

    Returns the samples (time, server RSS, request bytes the clients got into the kernel) and a
    summary (peak growth, bytes, whether the memory cap stopped it)."""
    burst = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() * BURST_REQUESTS
    selector = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    offsets: dict[int, int] = {}
    sent: dict[int, int] = {}
    samples: list[dict[str, Any]] = []
    first = procstat.sample_tree(pid)
    base_kib = first.rss_kib if first else 0
    capped = False
    started = time.monotonic()
    try:
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF)
            sock.setblocking(False)
            socks.append(sock)
            offsets[sock.fileno()] = sent[sock.fileno()] = 0
            selector.register(sock, selectors.EVENT_WRITE)
        next_sample = started
        while (now := time.monotonic()) < started + seconds:
            if now >= next_sample:
                sample = procstat.sample_tree(pid)
                if sample is None:
                    break  # the server died: the report says so
                growth_mib = (sample.rss_kib - base_kib) / 1024
                samples.append({**labels, "t": round(now - started, 3),
                                "rss_growth_mib": round(growth_mib, 3),
                                "sent_mib": round(sum(sent.values()) / 2**20, 3)})
                if growth_mib > MEMORY_CAP_MIB:
                    capped = True
                    break
                next_sample = now + SAMPLE_STEP
            for key, _ in selector.select(SAMPLE_STEP / 4):
                push(key, burst, offsets, sent, selector)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    peak = max((s["rss_growth_mib"] for s in samples), default=None)
    return samples, {**labels, "clients": clients, "seconds": round(time.monotonic() - started, 2),
                     "peak_growth_mib": peak, "sent_mib": samples[-1]["sent_mib"] if samples
                     else 0, "capped": capped,
                     "kib_per_client": round(peak * 1024 / clients, 1) if peak else None}


def push(key: selectors.SelectorKey, burst: bytes, offsets: dict[int, int],
         sent: dict[int, int], selector: selectors.BaseSelector) -> None:
    """Write as much of the endless pipeline as the socket takes, from where it stopped (a
    partial write must resume mid-request, or the stream would no longer be HTTP)."""
    sock, fd = key.fileobj, key.fd
    assert isinstance(sock, socket.socket)
    try:
        count = sock.send(burst[offsets[fd]:])
    except BlockingIOError:
        return
    except OSError:
        selector.unregister(sock)  # the server closed it: its loss, counted as sent so far
        return
    offsets[fd] = (offsets[fd] + count) % len(burst)
    sent[fd] += count
    if sent[fd] >= MAX_BYTES_PER_CLIENT:
        selector.unregister(sock)


def measure(run: LabRun) -> None:
    options = ("--send-timeout", str(SEND_TIMEOUT))
    running = run.start([servers.evserver_spec(m, *options, label=m) for m in MODELS])
    clients, seconds = run.pick(CLIENTS_QUICK, CLIENTS_FULL), run.pick(SECONDS_QUICK, SECONDS_FULL)
    rounds = run.pick(1, 2)
    for round_number, _, order in experiment.interleaved(rounds, running, ["flood"]):
        for server in run.alive(order):
            labels = {"round": round_number, "server": server.spec.label}
            before = responses_so_far(server)
            samples, summary = flood(server.port, run.bench_path("4k"), clients, seconds,
                                     server.pid, labels)
            after = responses_so_far(server)
            # Less one: the stats answer fetched before the flood is counted in ``after``.
            summary["responses_during"] = after - before - 1 \
                if after is not None and before is not None else None
            for sample in samples:
                run.record("samples", sample)
            run.record("floods", summary)
            if summary["capped"]:
                run.problems.append(f"{server.spec.label}: grew by more than {MEMORY_CAP_MIB} "
                                    f"MiB, the flood was stopped (round {round_number})")
            log(f"round {round_number}/{rounds} {server.spec.label:9}: {clients} clients sent "
                f"{summary['sent_mib']:.1f} MiB of requests; server grew "
                f"{report.fmt(summary['peak_growth_mib'], 1)} MiB at most")


def responses_so_far(server: servers.RunningServer) -> int | None:
    """The server's response count from its stats endpoint (None without one)."""
    stats = procstat.fetch_stats(server.stats_url, 2.0) if server.stats_url else None
    return int(stats["requests"]) if stats else None


def summarise(run: LabRun) -> None:
    clients = run.pick(CLIENTS_QUICK, CLIENTS_FULL)
    floods = run.records.get("floods", [])
    rows = report.summarise([{**f, "case": "flood"} for f in floods],
                            ("sent_mib", "peak_growth_mib", "kib_per_client", "responses_during"))
    run.table(f"{clients} clients pipelining GETs of a 4 KiB file, reading nothing",
              ["server", "requests sent, MiB", "peak RSS growth, MiB", "KiB per client",
               "responses sent during the flood"],
              [[r["server"], report.fmt_range(r, "sent_mib", 1),
                report.fmt_range(r, "peak_growth_mib", 1),
                report.fmt_range(r, "kib_per_client", 1), report.fmt_range(r, "responses_during")]
               for r in rows],
              "`requests sent`: what the clients got into their kernel (the server reads it "
              "only as fast as it can send answers); `peak RSS growth`: the server's resident "
              f"memory at its highest minus before the flood (the lab stops any flood at "
              f"{MEMORY_CAP_MIB} MiB).")
    samples = run.records.get("samples", [])
    last = max((s["round"] for s in samples), default=None)
    shown = [s for s in samples if s["round"] == last]

    def series(metric: str) -> dict[str, list[tuple[float, float]]]:
        return {model: [(s["t"], s[metric]) for s in shown if s["server"] == model]
                for model in MODELS}

    drawn = plots.lines_figure(
        run.path("backpressure.png"),
        [plots.LinePanel("server memory while the clients push", "seconds", "RSS growth, MiB",
                         series("rss_growth_mib"), ticks_at_x=False, markers=False),
         plots.LinePanel("requests the clients got into the kernel", "seconds", "MiB",
                         series("sent_mib"), ticks_at_x=False, markers=False)],
        f"Backpressure: {clients} clients pipeline and never read", run.quick,
        f"round {last}; both flat soon after the start = bounded")
    run.figure("backpressure.png", "the server's RSS growth (left) and the request bytes the "
                                   "clients managed to send (right) over the flood", drawn)
    by_server = {r["server"]: r for r in rows}
    parts = [f"{model} {report.fmt(by_server[model].get('peak_growth_mib'), 1)} MiB "
             f"({report.fmt(by_server[model].get('kib_per_client'), 0)} KiB per client)"
             for model in MODELS if model in by_server]
    if parts:
        run.say(f"{clients} clients that never read: the server grew by at most "
                + ", ".join(parts))


LAB = Lab(
    name="backpressure",
    title="Backpressure",
    question="Clients pipeline requests as fast as they can and never read the answers. Does "
             "the server's memory stay bounded?",
    expected="Yes: both models stop reading a connection while its answers are not taken. The "
             "evented one stops when more than 64 KiB (`HIGH_WATER`) waits to be sent or after "
             "a batch of 32 answers; the threaded one blocks in `send`. The server's memory "
             "rises for a moment, by a few hundred KiB per client at most, and stays flat; the "
             "clients' requests pile up in the kernel's socket buffers until those are full "
             "too, and then the clients cannot send any more.",
    look_for="Both panels flattening within the first second. The KiB per client column: "
             "about what one connection may hold (a recv of requests, a batch of answers).",
    measure=measure,
    summarise=summarise,
    needs=(),
    minutes=(0.3, 1.5),
)
