"""The fleet's board: a slot per worker process, in memory the master shares with every worker.

What this module knows: an anonymous shared mapping (``mmap.mmap(-1, size)``, made by the master
before it forks, so every worker maps the very same pages), the layout of a slot, and which keys
of the stats page are counters (to publish one worker's and sum the fleet's). What it must not
know: processes, signals, sockets, HTTP.

Why shared memory rather than pipes to the master: the two things that cross processes are a
heartbeat (the master must see that a worker's loop still turns) and counters (any worker must
answer the stats page for the whole fleet). With a board, a worker writes its slot from a timer
(once a second, and again when it answers the stats page) and reads the others' slots when it
answers the page: no message, no system call, and the master is not in the path of a stats
request at all. With pipes, the master would have to collect every worker's figures and hand
them back to the one answering, a round trip through a process that is meant to sleep.

Layout: a header (the master's start time, and how many slots have ever been used: readers look
no further), then ``slots`` slots of ``SLOT_SIZE`` bytes. A slot
has a head the master writes (pid, index, restarts, start time; pid 0 is a free slot, -1 one
being filled) and a body its worker writes (a beat counter and the counters of ``COUNTERS``).
The two never write the same bytes, and nobody locks: every field is 8 bytes and 8-byte aligned,
so a reader sees each one whole, and a row read while its worker writes may mix two moments a
second apart (a statistic, not an account, as in ``evserver.stats``). The heartbeat is a counter
rather than a time: the master only asks whether it moved, by its own clock.

Times are ``time.monotonic()`` readings: on Linux that clock is the system's, the same in every
process, so a worker can tell the master's uptime from the header.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass
from typing import Any

COUNTERS = (
    "connections_open", "connections_total", "connections_refused", "requests",
    "responses/1xx", "responses/2xx", "responses/3xx", "responses/4xx", "responses/5xx",
    "body_bytes", "sendfile_bytes", "accept_pauses",
    "timeouts/header", "timeouts/idle", "timeouts/send", "access_log/lines_lost",
    "loop/iterations", "loop/poll_seconds", "loop/work_seconds",
    "threads/connections", "threads/max", "threads/process",
)
"""The stats page's numbers that the fleet's page sums (``group/key`` for a nested one): every
number of the page but the uptime, which is the master's, and the threads' stack size."""

SECONDS = frozenset({"loop/poll_seconds", "loop/work_seconds"})
"""Counters that are durations (the rest are counts)."""

ACCEPTED = "accepted"
"""Connections ``accept()`` gave the worker: only its row shows it (``Stats.accepted``)."""

ROW_KEYS = ("connections_open", "connections_total", "requests", "body_bytes")
"""Counters each worker's row shows, besides its index, pid, uptime, restarts and accepted."""

_HEADER = struct.Struct("@dq")  # started, slots ever used
_HEAD = struct.Struct("@qqqd")  # pid, index, restarts, started: the master's part
_BODY = struct.Struct("@q" + "d" * (len(COUNTERS) + 1))  # beats, COUNTERS, accepted: the worker's

HEADER_SIZE = 64
"""Bytes before the first slot (the header is 16; the rest keeps slots on cache lines)."""

SLOT_SIZE = 256
"""Bytes per slot: room for the head and body above (224 bytes), on whole cache lines."""

FREE, FILLING = 0, -1
"""Values of a slot's pid that are not a process: a free slot, and one the master is filling."""

assert _HEAD.size + _BODY.size <= SLOT_SIZE and _HEADER.size <= HEADER_SIZE


@dataclass(frozen=True)
class Row:
    """One worker as the board shows it."""

    pid: int
    index: int
    restarts: int
    started: float
    beats: int
    counters: dict[str, float]
    accepted: int


class Board:
    """The shared mapping and its slots. Make it before forking; every process then uses it."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, HEADER_SIZE + slots * SLOT_SIZE)
        _HEADER.pack_into(self._memory, 0, time.monotonic(), 0)

    def _offset(self, slot: int) -> int:
        return HEADER_SIZE + slot * SLOT_SIZE

    # -- the master's part -------------------------------------------------------------------

    def claim(self, index: int, restarts: int) -> int | None:
        """A free slot, filled for worker ``index`` (pid unknown yet); None when all are taken."""
        for slot in range(self.slots):
            offset = self._offset(slot)
            if _HEAD.unpack_from(self._memory, offset)[0] == FREE:
                self._memory[offset:offset + SLOT_SIZE] = bytes(SLOT_SIZE)
                _HEAD.pack_into(self._memory, offset, FILLING, index, restarts, time.monotonic())
                started, used = _HEADER.unpack_from(self._memory, 0)
                if slot >= used:
                    _HEADER.pack_into(self._memory, 0, started, slot + 1)
                return slot
        return None

    def set_pid(self, slot: int, pid: int) -> None:
        """The slot's worker is now that process (the master writes it after ``fork``)."""
        struct.pack_into("@q", self._memory, self._offset(slot), pid)

    def release(self, slot: int) -> None:
        """The slot's worker is gone (reaped): the slot is free and no row shows it."""
        struct.pack_into("@q", self._memory, self._offset(slot), FREE)

    def beats(self, slot: int) -> int:
        """The slot's heartbeat counter (it moves once per beat of its worker)."""
        beats: int = _BODY.unpack_from(self._memory, self._offset(slot) + _HEAD.size)[0]
        return beats

    # -- a worker's part ---------------------------------------------------------------------

    def publish(self, slot: int, beats: int, snapshot: dict[str, Any], accepted: int) -> None:
        """Write a worker's beat counter and counters (from its stats page's ``snapshot``)."""
        values = [_lookup(snapshot, path) for path in COUNTERS]
        _BODY.pack_into(self._memory, self._offset(slot) + _HEAD.size, beats, *values,
                        float(accepted))

    def rows(self) -> list[Row]:
        """Every worker the board shows (live or not yet reaped), by index, oldest first."""
        rows = []
        for slot in range(_HEADER.unpack_from(self._memory, 0)[1]):
            offset = self._offset(slot)
            pid, index, restarts, started = _HEAD.unpack_from(self._memory, offset)
            if pid <= 0:
                continue
            beats, *values = _BODY.unpack_from(self._memory, offset + _HEAD.size)
            rows.append(Row(pid, index, restarts, started, beats,
                            dict(zip(COUNTERS, values, strict=False)), int(values[-1])))
        rows.sort(key=lambda row: (row.index, row.started))
        return rows

    def uptime(self) -> float:
        """Seconds since the master made the board (since the server started)."""
        started: float = _HEADER.unpack_from(self._memory, 0)[0]
        return time.monotonic() - started

    def close(self) -> None:
        self._memory.close()


def _lookup(snapshot: dict[str, Any], path: str) -> float:
    """The number at ``group/key`` (or ``key``) of a stats snapshot; 0 where the model has none."""
    group, _, key = path.rpartition("/")
    where = snapshot.get(group) if group else snapshot
    value = where.get(key, 0) if isinstance(where, dict) else 0
    return float(value) if isinstance(value, int | float) else 0.0


def fleet_snapshot(own: dict[str, Any], rows: list[Row], uptime: float) -> dict[str, Any]:
    """The stats page of a fleet: ``own`` (one worker's snapshot, changed in place and returned)
    with each counter it has replaced by the sum over ``rows``, the uptime the server's, and a
    ``workers`` list with a row per worker. The model and selector stay the worker's (every
    worker runs the same); so do the threads' stack size."""
    for path in COUNTERS:
        group, _, key = path.rpartition("/")
        where = own.get(group) if group else own
        if not isinstance(where, dict) or key not in where:
            continue  # a figure this model does not have (``loop``, ``threads``)
        total = sum(row.counters[path] for row in rows)
        where[key] = round(total, 6) if path in SECONDS else int(total)
    own["uptime_seconds"] = round(uptime, 3)
    now = time.monotonic()
    workers = []
    for row in rows:
        entry: dict[str, Any] = {"index": row.index, "pid": row.pid,
                                 "uptime_seconds": round(now - row.started, 3),
                                 "restarts": row.restarts}
        entry.update((key, int(row.counters[key])) for key in ROW_KEYS)
        entry[ACCEPTED] = row.accepted
        if isinstance(own.get("loop"), dict):
            entry["loop"] = {"iterations": int(row.counters["loop/iterations"]),
                             "poll_seconds": round(row.counters["loop/poll_seconds"], 6),
                             "work_seconds": round(row.counters["loop/work_seconds"], 6)}
        workers.append(entry)
    own["workers"] = workers
    return own
