"""Which CPU cores the server and the load generators get, and how a child is pinned to them.

What this module knows: the machine's core count, ``sched_setaffinity`` and ``taskset``. What it
must not know: what runs on the cores.

Invariant: the server's core and the load generators' cores never overlap, so a load generator
never steals the server's CPU time (and the server's CPU figure means what it says). On a
machine with one core nothing is pinned, and the runner says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable


def split() -> tuple[int | None, set[int]]:
    """(the server's core, the load generators' cores), or (None, empty) on a one-core machine.

    The server gets the lowest core this process may run on; the load generators (and the
    runner) every other one.
    """
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, set()
    return available[0], set(available[1:])


def describe(cores: Iterable[int] | int | None) -> str:
    """``1`` or ``1,2,3``: the form taskset accepts and reports print."""
    if cores is None:
        return ""
    if isinstance(cores, int):
        return str(cores)
    return ",".join(str(core) for core in sorted(cores))


def pin_prefix(cores: Iterable[int] | int | None) -> list[str]:
    """``taskset -c CORES`` to put before a command, or nothing when pinning is not possible."""
    text = describe(cores)
    if not text or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", text]
