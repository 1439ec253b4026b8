"""The threaded model: the iterative model's ``drive``, one thread per accepted connection.

What this module knows: threads (their stack size, joining them) and the bound on how many run.
What it must not know: HTTP; everything but "start a thread" is ``BlockingServer``'s::

    loop:                                    # the accepting thread
        wait until live threads < max_connections
        conn = accept()
        Thread(target=drive, args=(conn,)).start()

Costs: each connection holds a thread while it lives, idle or not: a stack (see
``THREAD_STACK_SIZE``), a kernel task, and scheduler work; the GIL lets one thread run Python at a
time, so the parsing and handling of all connections share one core, while the blocking system
calls (recv, send, sendfile) run in parallel. A client that stalls costs its own thread only,
never the others' (unlike the iterative model).

The bound: ``config.max_connections`` live connection threads. It acts as a semaphore with a
single taker: only the accepting thread adds threads, so "room" cannot vanish between the check
and the accept; at the bound the listener is not watched (clients wait in the listen queue) until
a thread ends and wakes the accept loop. The waiting happens in the accept loop's selector, not
in ``Semaphore.acquire``, so that ``shutdown()`` can interrupt it.

Memory: a thread waits for its connection's next request in ``recv_into`` on the connection's
own buffer (``evserver.drivers.blocking``), and all threads share one malloc arena
(``MALLOC_ARENAS``); both keep a long run's RSS level.

Threads are non-daemon and joined on shutdown: graceful shutdown shuts the reading side of every
live socket, so threads waiting for a request end at once and threads sending finish first.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from typing import Any

from evserver.config import ServerConfig
from evserver.servers.blocking import BlockingServer

THREAD_STACK_SIZE = 256 * 1024
"""Bytes of stack per connection thread (glibc's default is 8 MiB). Python 3.11 keeps Python
frames on the heap and our C call depth is shallow, so 256 KiB is ample, and 10,000 threads then
reserve 2.5 GiB of address space instead of 80 GiB (only touched pages use memory)."""


MALLOC_ARENAS = 1
"""How many glibc malloc arenas the threads share (glibc's default: up to eight per core).

glibc gives each new thread an arena of its own, so that threads allocating at the same moment
do not wait on one lock. Python threads allocate while holding the GIL, one at a time, so here
the extra arenas buy nothing, and they cost memory: each arena keeps what its threads freed for
its own threads, so with hundreds of connection threads the process holds the sum of every
arena's high-water mark, and RSS creeps up for as long as the load's spread across arenas keeps
finding new highs (README's Reliability section has the soak that showed it). One arena holds
the high-water mark of the whole process instead. A user who sets ``MALLOC_ARENA_MAX`` keeps
their own choice."""

M_ARENA_MAX = -8
"""``mallopt``'s parameter number for the arena limit (glibc's malloc.h)."""


def share_malloc_arenas() -> bool:
    """Limit glibc to ``MALLOC_ARENAS`` arenas, before the connection threads start. False when
    it did nothing: another C library, or ``MALLOC_ARENA_MAX`` set by the user."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, MALLOC_ARENAS))
    except (ValueError, OSError, AttributeError):  # no such name here: not glibc
        return False


class ThreadedServer(BlockingServer):
    """One thread per connection, at most ``config.max_connections`` at once."""

    model = "threaded"

    def __init__(self, config: ServerConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._max_threads = max(1, config.max_connections)
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._threads_started = 0
        share_malloc_arenas()

    def room(self) -> int:
        return self._max_threads - len(self._threads)

    def process_connection(self, sock: socket.socket, peer: str) -> None:
        self._threads_started += 1
        thread = threading.Thread(target=self._run, args=(sock, peer), daemon=False,
                                  name=f"conn-{self._threads_started}")
        with self._threads_lock:
            self._threads.add(thread)
        # The stack size is a process-wide setting read when a thread starts; set it each time
        # so that a stray change elsewhere cannot give connection threads an 8 MiB stack.
        previous = threading.stack_size(THREAD_STACK_SIZE)
        try:
            thread.start()
        except RuntimeError as error:  # "can't start new thread": out of memory or task limit
            with self._threads_lock:
                self._threads.discard(thread)
            self.log.warning("cannot start a thread (%s): closing the connection from %s",
                             error, peer)
            self.stats.connections_refused += 1
            self._abandon(sock)
        finally:
            threading.stack_size(previous)

    def _abandon(self, sock: socket.socket) -> None:
        with self._live_lock:
            self._live.pop(sock, None)
            self.stats.connections_open -= 1
        sock.close()

    def _run(self, sock: socket.socket, peer: str) -> None:
        try:
            self.serve_connection(sock, peer)
        finally:
            with self._threads_lock:
                self._threads.discard(threading.current_thread())
                room_freed = len(self._threads) == self._max_threads - 1
            if room_freed:
                self.wake()  # the accept loop may be waiting for room

    def wait_for_connections(self) -> None:
        while True:
            with self._threads_lock:
                if not self._threads:
                    return
                thread = next(iter(self._threads))
            thread.join()

    def stats_extra(self) -> dict[str, Any]:
        return {"threads": {"connections": len(self._threads), "max": self._max_threads,
                            "stack_bytes": THREAD_STACK_SIZE,
                            "process": threading.active_count()}}
