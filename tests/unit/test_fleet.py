"""The fleet's board: slots claimed and freed, counters published and summed, rows shown.

The board is shared memory, so a slot written here reads back the same in a forked child; the
last test checks that across a real ``fork``.
"""

from __future__ import annotations

import os

import pytest

from evserver.servers.fleet import COUNTERS, Board, fleet_snapshot
from evserver.stats import Stats


def evented_stats(requests: int, accepted: int, body_bytes: int = 0) -> Stats:
    stats = Stats("evented", "epoll")
    stats.requests = requests
    stats.status_classes[2] = requests
    stats.connections_total = accepted
    stats.accepted = accepted
    stats.body_bytes = body_bytes
    stats.poll_seconds = 0.25
    return stats


def publish(board: Board, index: int, pid: int, stats: Stats, restarts: int = 0) -> int:
    slot = board.claim(index, restarts)
    assert slot is not None
    board.set_pid(slot, pid)
    board.publish(slot, 1, stats.snapshot(), stats.accepted)
    return slot


def test_the_fleet_page_sums_every_counter_and_shows_a_row_per_worker() -> None:
    board = Board(4)
    publish(board, 0, 1000, evented_stats(3, 2, body_bytes=30))
    publish(board, 1, 1001, evented_stats(5, 4, body_bytes=50), restarts=2)
    own = evented_stats(5, 4, body_bytes=50).snapshot()
    page = fleet_snapshot(own, board.rows(), uptime=12.5)
    assert page["requests"] == 8 and page["responses"]["2xx"] == 8
    assert page["body_bytes"] == 80 and page["connections_total"] == 6
    assert page["loop"]["poll_seconds"] == 0.5 and page["uptime_seconds"] == 12.5
    assert page["model"] == "evented" and "accepted" not in page  # a worker's figure only
    assert [(row["index"], row["pid"], row["restarts"], row["requests"], row["accepted"])
            for row in page["workers"]] == [(0, 1000, 0, 3, 2), (1, 1001, 2, 5, 4)]
    assert page["workers"][0]["loop"]["poll_seconds"] == 0.25


def test_figures_a_model_lacks_stay_absent_and_the_threads_are_summed() -> None:
    board = Board(2)
    stats = Stats("threaded", "")
    extra = {"threads": {"connections": 3, "max": 10, "stack_bytes": 262144, "process": 5}}
    for index in (0, 1):
        slot = board.claim(index, 0)
        assert slot is not None
        board.set_pid(slot, 2000 + index)
        board.publish(slot, 1, stats.snapshot(**extra), 0)
    page = fleet_snapshot(stats.snapshot(**extra), board.rows(), uptime=1.0)
    assert "loop" not in page and all("loop" not in row for row in page["workers"])
    assert page["threads"] == {"connections": 6, "max": 20, "stack_bytes": 262144,
                               "process": 10}


def test_a_slot_is_shown_once_its_pid_is_set_and_forgotten_once_released() -> None:
    board = Board(2)
    slot = board.claim(0, 0)
    assert slot is not None and board.rows() == []  # being filled: no process yet
    board.set_pid(slot, 3000)
    assert [row.pid for row in board.rows()] == [3000]
    other = board.claim(1, 0)
    assert other is not None and other != slot and board.claim(2, 0) is None  # board full
    board.release(slot)
    assert board.rows() == [] and board.claim(2, 0) == slot  # a released slot is reused


def test_the_heartbeat_is_the_counter_a_worker_publishes() -> None:
    board = Board(1)
    slot = publish(board, 0, 4000, evented_stats(0, 0))
    assert board.beats(slot) == 1
    board.publish(slot, 2, evented_stats(0, 0).snapshot(), 0)
    assert board.beats(slot) == 2


def test_every_counter_is_a_number_of_the_stats_page() -> None:
    snapshot = Stats("evented", "epoll").snapshot(
        threads={"connections": 0, "max": 0, "process": 0})
    for path in COUNTERS:
        group, _, key = path.rpartition("/")
        where = snapshot[group] if group else snapshot
        assert isinstance(where[key], int | float), path


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_writes_what_the_parent_reads() -> None:
    board = Board(1)
    slot = board.claim(0, 0)
    assert slot is not None
    board.set_pid(slot, os.getpid())
    pid = os.fork()
    if pid == 0:  # the child: publish, then leave without running anything of pytest's
        board.publish(slot, 7, evented_stats(9, 1).snapshot(), 1)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    (row,) = board.rows()
    assert (row.beats, row.counters["requests"], row.accepted) == (7, 9, 1)
