"""The opt-in metrics endpoint (``--metrics-path``): the stats snapshot in Prometheus's text format.

What this module knows: the Prometheus text exposition format (version 0.0.4: ``# HELP`` and
``# TYPE`` lines, samples with escaped label values, counters named ``..._total``) and which key of
the stats snapshot becomes which metric family. What it must not know: where the snapshot comes
from, or how requests reach it. It reads the same dict the JSON stats page shows
(``Stats.snapshot`` plus what the server adds), so the two can never disagree.

Invariants:

- Every number of the snapshot that is a count since the start is a counter (``_total``), every
  level (open connections, threads, uptime) a gauge; each family gets exactly one ``HELP`` and one
  ``TYPE`` line, before its samples, and is left out when the snapshot lacks its key (``loop``
  exists only in the evented model, ``threads`` only in the threaded one).
- With worker processes (a ``workers`` list in the snapshot), a figure that every worker reports
  is exposed once per worker with a ``worker`` label and no unlabelled sum (``sum()`` in a query
  gives the total, and a restarted worker shows as a counter reset of its own series instead of a
  fall of the total); figures only the master sums (responses by class, timeouts) stay unlabelled.
"""

from __future__ import annotations

from typing import Any, Final

from evserver.bodies import Response

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The exposition format's media type, as Prometheus's scraper expects it."""

PREFIX: Final = "evserver_"

COUNTER: Final = "counter"
GAUGE: Final = "gauge"

# (path into the snapshot, metric name without the prefix, type, help, label for a dict's keys)
# A path that ends at a dict gives one sample per key, labelled with the last element.
_FAMILIES: Final[tuple[tuple[tuple[str, ...], str, str, str, str], ...]] = (
    (("uptime_seconds",), "uptime_seconds", GAUGE, "Seconds since the server started.", ""),
    (("connections_open",), "connections_open", GAUGE,
     "Client connections open now.", ""),
    (("connections_total",), "connections_accepted_total", COUNTER,
     "Client connections accepted since the start.", ""),
    (("accepted",), "accepts_total", COUNTER,
     "Connections this worker took from the shared listener.", ""),
    (("connections_refused",), "connections_refused_total", COUNTER,
     "Connections closed at once because the server could not take them.", ""),
    (("accept_pauses",), "accept_pauses_total", COUNTER,
     "Times accepting paused for lack of descriptors or memory.", ""),
    (("requests",), "requests_total", COUNTER, "Responses sent.", ""),
    (("responses",), "responses_total", COUNTER, "Responses sent, by status class.", "class"),
    (("body_bytes",), "body_bytes_total", COUNTER, "Response body bytes sent.", ""),
    (("sendfile_bytes",), "sendfile_bytes_total", COUNTER,
     "Response body bytes sent with sendfile.", ""),
    (("timeouts",), "timeouts_total", COUNTER, "Connections closed by a timeout, by kind.",
     "kind"),
    (("loop", "iterations"), "loop_iterations_total", COUNTER,
     "Event loop iterations.", ""),
    (("loop", "poll_seconds"), "loop_poll_seconds_total", COUNTER,
     "Seconds the event loop waited in its selector.", ""),
    (("loop", "work_seconds"), "loop_work_seconds_total", COUNTER,
     "Seconds the event loop spent working between two waits.", ""),
    (("threads", "connections"), "connection_threads", GAUGE,
     "Threads serving a connection now.", ""),
    (("threads", "max"), "connection_threads_max", GAUGE,
     "Connection threads allowed at once.", ""),
    (("threads", "process"), "process_threads", GAUGE, "Threads in the server process.", ""),
    (("threads", "stack_bytes"), "thread_stack_bytes", GAUGE,
     "Stack size reserved for each connection thread.", ""),
    (("restarts",), "worker_restarts_total", COUNTER,
     "Times a worker was started again in this slot.", ""),
)


def metrics_text(snapshot: dict[str, Any]) -> str:
    """The exposition of ``snapshot`` (a stats snapshot, see ``evserver.stats``)."""
    workers: list[dict[str, Any]] = snapshot.get("workers") or []
    lines = [
        f"# HELP {PREFIX}info The server's concurrency model and readiness API.",
        f"# TYPE {PREFIX}info {GAUGE}",
        f'{PREFIX}info{{model="{_escape(str(snapshot.get("model", "")))}",'
        f'selector="{_escape(str(snapshot.get("selector", "")))}"}} 1',
    ]
    if workers:
        lines += [f"# HELP {PREFIX}worker_info A live worker process and its process id.",
                  f"# TYPE {PREFIX}worker_info {GAUGE}"]
        lines += [f'{PREFIX}worker_info{{worker="{worker.get("index", n)}",'
                  f'pid="{worker.get("pid", "")}"}} 1' for n, worker in enumerate(workers)]
    for path, name, kind, help_text, key_label in _FAMILIES:
        samples: list[str] = []
        per_worker = [(worker.get("index", n), _at(worker, path))
                      for n, worker in enumerate(workers)]
        if any(value is not None for _, value in per_worker):
            for index, value in per_worker:
                samples += _samples(PREFIX + name, value, key_label, f'worker="{index}"')
        else:
            samples = _samples(PREFIX + name, _at(snapshot, path), key_label, "")
        if samples:
            lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}"]
            lines += samples
    return "\n".join(lines) + "\n"


def metrics_response(snapshot: dict[str, Any]) -> Response:
    body = metrics_text(snapshot).encode("utf-8")
    fields = (b"Content-Type: " + CONTENT_TYPE.encode() + b"\r\nCache-Control: no-store\r\n"
              b"Content-Length: %d\r\n" % len(body))
    return Response(200, fields, (body,), len(body))


def _at(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    """``data[path[0]][path[1]]...``, or None where a key is missing."""
    value: Any = data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _samples(name: str, value: Any, key_label: str, labels: str) -> list[str]:
    """Sample lines for one value: a number, or a dict of numbers labelled by ``key_label``."""
    if isinstance(value, dict):
        return [
            f'{name}{{{labels + "," if labels else ""}{key_label}="{_escape(str(key))}"}} '
            f"{_number(item)}"
            for key, item in value.items()
            if _is_number(item)
        ]
    if not _is_number(value):
        return []
    return [f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _escape(value: str) -> str:
    """A label value as the format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
