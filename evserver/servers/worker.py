"""A worker process's life, from ``fork`` to ``os._exit``: build a server, report, beat, serve.

What this module knows: what a child of the master does after ``fork``: reset the master's
signal handlers, close the master's descriptors, build a server of any model on the listener it
was handed, tell the master it is ready (or why it cannot start), beat, serve until told to stop
or hand over, and exit without ever returning into the master's code. What it must not know:
supervision (``evserver.servers.master``), HTTP.

Reports to the master are lines on a pipe every worker shares, each written with one ``write``
of at most ``PIPE_BUF`` bytes, so lines from different workers never mix::

    R <pid> <the server's banner>       ready: the listener is watched from now on
    F <pid> <why it cannot start>       then the worker exits with EXIT_CANNOT_START

Signals, once the server is built (until then they stay blocked, as the master left them around
``fork``, so none can reach a handler of the master's):

- SIGTERM: drain and exit, as a single server does. A second SIGTERM changes nothing: the one
  from the master may follow one sent to the whole process group (systemd's default
  ``KillMode=control-group`` signals every process of the service), and "stop at once" is the
  master's to decide (on its second signal it sends SIGQUIT, below);
- SIGUSR2: hand over to a successor (``retire()``: reload, or one worker fewer);
- SIGUSR1: reopen the access log file (log rotation; the master passes it on);
- SIGQUIT: exit at once (the master's answer to a second stop signal), after writing the access
  log's buffered lines: they tell what was sent, and no drain or cleanup runs;
- SIGINT and SIGHUP: ignored. Ctrl-C and a hang-up reach every process of the terminal's group;
  the master alone decides, and tells each worker what to do;
- the rest: the system's defaults.

The heartbeat (:class:`Heartbeat`) comes from where the work is done wherever it can. In the
evented model it is a timer of the loop itself, so a handler that never returns stops the beats
and the master replaces the worker. The blocking models run connections on threads (threaded)
or on the main thread for as long as a connection lasts (iterative, up to the idle timeout, or
longer while a large file goes to a slow client), so their beat comes from a thread of its own:
the master then sees a worker that is stopped or wedged (no thread gets to run), not a handler
looping in Python (the beating thread still gets its turn). In the threaded model such a handler
costs one connection's thread and the worker still answers the others; in the iterative model it
stops the worker, as anything slow does there. Each beat also checks that the master is alive:
a worker whose master died drains and exits instead of serving on as an orphan.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, NoReturn

from evserver.config import ServerConfig
from evserver.event.reactor import Reactor, register_exclusive
from evserver.event.timers import Timer
from evserver.servers import make_server
from evserver.servers.base import BaseServer
from evserver.servers.evented import EventedServer
from evserver.servers.fleet import Board, fleet_snapshot

log = logging.getLogger("evserver.worker")

EXIT_CANNOT_START = 3
"""A worker's exit status when it could not start (after its ``F`` report)."""

REPORT_LIMIT = 4096
"""Most bytes of one report line: a pipe keeps a write of up to PIPE_BUF (4096 on Linux) whole."""

READY, FAILED = "R", "F"
"""The kinds of report line."""

RETIRE_SIGNAL = signal.SIGUSR2
"""What the master sends a worker that must hand over to a successor (SIGTERM: stop)."""

REOPEN_SIGNAL = signal.SIGUSR1
"""Reopen the access log (log rotation): sent by the operator to the master, passed on."""

FAST_EXIT_SIGNAL = signal.SIGQUIT
"""What the master sends on a second stop signal: write the access log's buffered lines, then
exit at once (gunicorn's quick shutdown is SIGQUIT too)."""

IGNORED_SIGNALS = (signal.SIGINT, signal.SIGHUP)
"""Sent to the whole process group by the terminal; only the master acts on them."""

DEFAULT_SIGNALS = (signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTERM, RETIRE_SIGNAL,
                   REOPEN_SIGNAL, FAST_EXIT_SIGNAL)
"""Signals the master handles or sends, given back their default action until the server is
built."""


@dataclass(frozen=True)
class WorkerPlan:
    """Everything a new worker is told by the master (it inherits this object through fork)."""

    config: ServerConfig
    index: int
    slot: int
    board: Board
    listener: socket.socket
    exclusive: bool
    """Watch the listener with EPOLLEXCLUSIVE."""
    own_listener: bool
    """The listener is this index's own (SO_REUSEPORT): take its queue when retiring."""
    report_fd: int
    master_pid: int
    heartbeat_interval: float
    close_inherited: Callable[[], None]
    """Closes what the worker inherited from the master and must not keep."""
    signal_mask: set[int | signal.Signals]
    """The signal mask to restore once the handlers are in place."""


def run_worker(plan: WorkerPlan) -> NoReturn:
    """The child's whole life after ``fork``; never returns (``os._exit``)."""
    status = 1
    try:
        status = _live(plan)
    except BaseException:  # never return into the master's code, whatever happened
        try:
            log.exception("worker %d failed", plan.index)
        except BaseException:
            pass
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(status)


def _live(plan: WorkerPlan) -> int:
    signal.set_wakeup_fd(-1)  # the master's self-pipe: its signals are not ours
    for signum in IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    for signum in DEFAULT_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    plan.close_inherited()
    try:
        server = make_server(plan.config, listener=plan.listener)
    except Exception as error:
        report(plan.report_fd, FAILED, describe(error))
        return EXIT_CANNOT_START
    try:
        if plan.exclusive:  # a kernel without EPOLLEXCLUSIVE refuses here, not once serving
            with selectors.DefaultSelector() as probe:
                register_exclusive(probe, plan.listener, None)
    except (OSError, ValueError) as error:
        server.server_close()
        report(plan.report_fd, FAILED, f"EPOLLEXCLUSIVE: {describe(error)}")
        return EXIT_CANNOT_START
    server.exclusive_accept = plan.exclusive
    server.take_queue_on_retire = plan.own_listener
    heartbeat = Heartbeat(plan, server)
    server.fleet_stats = heartbeat.fleet_stats
    _handle_signals(server)
    signal.pthread_sigmask(signal.SIG_SETMASK, plan.signal_mask)
    heartbeat.start()
    report(plan.report_fd, READY, server.banner())
    try:
        server.serve_forever()
    finally:
        heartbeat.stop()
        server.server_close()
    return 0


def _handle_signals(server: BaseServer) -> None:
    told = False  # a second shutdown() or a shutdown() after retire() would force the stop

    def on_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal told
        if not told:
            told = True
            server.shutdown()

    def on_retire(signum: int, frame: FrameType | None) -> None:
        nonlocal told
        if not told:
            told = True
            server.retire()

    def on_reopen(signum: int, frame: FrameType | None) -> None:
        if server.access_log is not None:
            server.access_log.reopen()

    def on_fast_exit(signum: int, frame: FrameType | None) -> NoReturn:
        try:
            server.flush_log_before_exit()
        finally:
            os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(RETIRE_SIGNAL, on_retire)
    signal.signal(REOPEN_SIGNAL, on_reopen)
    signal.signal(FAST_EXIT_SIGNAL, on_fast_exit)


def describe(error: BaseException) -> str:
    """An error as one line, for the master to print."""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def report(fd: int, kind: str, text: str) -> None:
    """One report line to the master (one ``write``, so lines of several workers never mix)."""
    line = f"{kind} {os.getpid()} {' '.join(text.split())}".encode(errors="replace")
    try:
        os.write(fd, line[:REPORT_LIMIT - 1] + b"\n")
    except OSError:
        pass  # the master is gone; the heartbeat will notice


class Heartbeat:
    """This worker's beat and counters on the board, once per ``heartbeat_interval``."""

    def __init__(self, plan: WorkerPlan, server: BaseServer) -> None:
        self._plan = plan
        self._server = server
        self._beats = 0
        self._orphaned = False
        self._reactor: Reactor | None = None
        self._timer: Timer | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """From the loop (evented) or from a thread of its own (see the module docstring)."""
        self.beat()
        if isinstance(self._server, EventedServer):
            self._reactor = self._server.reactor
            self._timer = self._reactor.call_later(self._plan.heartbeat_interval, self._on_timer)
        else:
            self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            self._thread.join()

    def _on_timer(self) -> None:
        self.beat()
        assert self._reactor is not None
        self._timer = self._reactor.call_later(self._plan.heartbeat_interval, self._on_timer)

    def _run(self) -> None:
        while not self._stopped.wait(self._plan.heartbeat_interval):
            self.beat()

    def beat(self) -> None:
        self._beats += 1
        server = self._server
        self._publish(server.own_stats())
        if os.getppid() != self._plan.master_pid and not self._orphaned:
            self._orphaned = True
            log.warning("worker %d: the master is gone; stopping", self._plan.index)
            if not server.draining:  # a second shutdown() would force the stop
                server.shutdown()

    def _publish(self, snapshot: dict[str, Any]) -> None:
        plan = self._plan
        plan.board.publish(plan.slot, self._beats, snapshot, self._server.stats.accepted)

    def fleet_stats(self, own: dict[str, Any]) -> dict[str, Any]:
        """The stats page in a worker: publish our own figures first, then show the fleet."""
        self._publish(own)
        board = self._plan.board
        return fleet_snapshot(own, board.rows(), board.uptime())
