"""The Prometheus exposition of the stats snapshot, read back with ``prometheus_client``'s parser.

Snapshots of each model's shape, and of a master with workers (built by hand, in the shape the
stats JSON gives them), must parse into the families and samples the snapshot holds.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from evserver.metrics import CONTENT_TYPE, metrics_response, metrics_text
from evserver.stats import Stats


def parsed(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Family name -> family, as Prometheus's own parser reads the text."""
    return {family.name: family for family in text_string_to_metric_families(
        metrics_text(snapshot))}


def sample_values(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(sample.labels.items())): sample.value for sample in family.samples}


def evented_snapshot() -> dict[str, Any]:
    stats = Stats("evented", "epoll")
    for status in (200, 200, 304, 404, 503, 101):
        stats.count_response(status, 100)
    stats.connections_open, stats.connections_total, stats.connections_refused = 3, 17, 1
    stats.sendfile_bytes, stats.accept_pauses = 4096, 2
    stats.timeouts["idle"] = 5
    stats.loop_iterations, stats.poll_seconds, stats.work_seconds = 1000, 2.5, 0.125
    return stats.snapshot()


def test_every_counter_of_the_evented_model() -> None:
    families = parsed(evented_snapshot())
    kinds = {name: family.type for name, family in families.items()}
    assert kinds == {
        "evserver_info": "gauge", "evserver_uptime_seconds": "gauge",
        "evserver_connections_open": "gauge",
        "evserver_connections_accepted": "counter", "evserver_connections_refused": "counter",
        "evserver_accept_pauses": "counter", "evserver_requests": "counter",
        "evserver_responses": "counter", "evserver_body_bytes": "counter",
        "evserver_sendfile_bytes": "counter", "evserver_timeouts": "counter",
        "evserver_loop_iterations": "counter", "evserver_loop_poll_seconds": "counter",
        "evserver_loop_work_seconds": "counter",
    }  # the parser names a counter's family without its _total
    assert sample_values(families["evserver_info"]) == {
        (("model", "evented"), ("selector", "epoll")): 1.0}
    assert sample_values(families["evserver_responses"]) == {
        (("class", "1xx"),): 1, (("class", "2xx"),): 2, (("class", "3xx"),): 1,
        (("class", "4xx"),): 1, (("class", "5xx"),): 1}
    assert [s.name for s in families["evserver_requests"].samples] == ["evserver_requests_total"]
    assert sample_values(families["evserver_requests"]) == {(): 6}
    assert sample_values(families["evserver_connections_open"]) == {(): 3}
    assert sample_values(families["evserver_connections_accepted"]) == {(): 17}
    assert sample_values(families["evserver_body_bytes"]) == {(): 600}
    assert sample_values(families["evserver_timeouts"])[(("kind", "idle"),)] == 5
    assert sample_values(families["evserver_loop_work_seconds"]) == {(): 0.125}
    for family in families.values():
        assert family.documentation, f"{family.name} has no HELP line"


def test_the_threaded_model_shows_threads_and_no_loop() -> None:
    snapshot = Stats("threaded").snapshot(threads={"connections": 4, "max": 16384,
                                                   "stack_bytes": 262144, "process": 6})
    families = parsed(snapshot)
    assert not any(name.startswith("evserver_loop") for name in families)
    assert sample_values(families["evserver_connection_threads"]) == {(): 4}
    assert sample_values(families["evserver_connection_threads_max"]) == {(): 16384}
    assert sample_values(families["evserver_process_threads"]) == {(): 6}
    assert families["evserver_thread_stack_bytes"].type == "gauge"
    assert sample_values(families["evserver_info"]) == {
        (("model", "threaded"), ("selector", "")): 1.0}


def with_workers(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A master's snapshot: the top-level numbers the sum over two live workers."""
    data = copy.deepcopy(snapshot)
    data["workers"] = [
        {"index": 0, "pid": 1234, "uptime_seconds": 12.5, "restarts": 0,
         "connections_open": 1, "connections_total": 10, "requests": 4, "body_bytes": 400,
         "accepted": 10, "loop": {"iterations": 600, "poll_seconds": 1.5, "work_seconds": 0.1}},
        {"index": 1, "pid": 1240, "uptime_seconds": 3.25, "restarts": 2,
         "connections_open": 2, "connections_total": 7, "requests": 2, "body_bytes": 200,
         "accepted": 7, "loop": {"iterations": 400, "poll_seconds": 1.0, "work_seconds": 0.025}},
    ]
    return data


def test_per_worker_series_replace_the_sums() -> None:
    families = parsed(with_workers(evented_snapshot()))
    assert sample_values(families["evserver_requests"]) == {(("worker", "0"),): 4,
                                                            (("worker", "1"),): 2}
    assert sample_values(families["evserver_connections_open"]) == {(("worker", "0"),): 1,
                                                                    (("worker", "1"),): 2}
    assert sample_values(families["evserver_loop_work_seconds"]) == {
        (("worker", "0"),): 0.1, (("worker", "1"),): 0.025}
    assert sample_values(families["evserver_accepts"]) == {(("worker", "0"),): 10,
                                                           (("worker", "1"),): 7}
    assert sample_values(families["evserver_worker_restarts"]) == {(("worker", "0"),): 0,
                                                                   (("worker", "1"),): 2}
    assert sample_values(families["evserver_worker_info"]) == {
        (("pid", "1234"), ("worker", "0")): 1, (("pid", "1240"), ("worker", "1")): 1}
    # what only the master sums keeps one unlabelled series
    assert sample_values(families["evserver_sendfile_bytes"]) == {(): 4096}
    assert len(families["evserver_responses"].samples) == 5


def test_without_workers_there_is_no_worker_family() -> None:
    assert not any("worker" in name for name in parsed(evented_snapshot()))


@pytest.mark.parametrize("value", ['quo"te', "back\\slash", "new\nline", "ünï"])
def test_label_values_are_escaped(value: str) -> None:
    families = parsed(Stats(value, value).snapshot())
    assert sample_values(families["evserver_info"]) == {(("model", value), ("selector", value)): 1}


def test_the_response() -> None:
    response = metrics_response(evented_snapshot())
    assert response.status == 200
    fields = response.fields.decode()
    assert f"Content-Type: {CONTENT_TYPE}\r\n" in fields
    assert "Cache-Control: no-store\r\n" in fields
    body = b"".join(bytes(piece) for piece in response.body)  # type: ignore[arg-type]
    assert len(body) == response.body_length and body.endswith(b"\n")
    assert f"Content-Length: {len(body)}\r\n" in fields
