"""The master process: open the port, fork the workers, then only supervise them.

What this module knows: processes (``fork``, ``waitpid``, signals), the three ways worker
processes share a port, and the policy of supervision (restarts, heartbeats, reload, stop). What
it must not know: HTTP, and how a worker serves (each worker is a server of any model, built
after ``fork`` by ``evserver.servers.worker``; the master never accepts a connection). The
master's loop sleeps in a selector on two pipes and wakes about once a second; no request ever
passes through it, so a worker under a master serves exactly as a single process does::

    master: bind -> fork N workers -> loop: signals, reports, reaping, restarts, heartbeats
    worker: build a server on the listener -> report "ready" -> beat -> serve -> exit

Every model works as a worker; iterative workers, each serving one connection at a time, make
Apache's classic prefork MPM.

Port sharing (``--port-sharing``):

- ``reuseport`` (the default): the master opens one socket per worker, all with ``SO_REUSEPORT``
  on the same port, and the kernel spreads new connections over them by a hash of the client's
  address and port: no worker is woken for another's connection, and each worker's share is
  about equal whatever its load. The master keeps every socket open for as long as its worker
  index exists, and a worker's replacement (after a crash, a hang or a reload) serves the very
  same socket, so the connections waiting in its queue are taken over, never reset (the kernel
  resets the queue of a listening socket whose last descriptor closes). Only SIGTTOU closes one
  for good: its worker, told to hand over, first accepts what waits in it and closes it
  at once, so only a connection arriving in those microseconds is reset (Linux 5.14's
  ``net.ipv4.tcp_migrate_req=1`` moves it to another socket instead). The price: a worker
  that is stuck keeps its share of new connections waiting until the heartbeat replaces it. The
  port is first probed with a socket *without* ``SO_REUSEPORT``, so a second server started on
  the same port by mistake is refused instead of silently sharing the traffic.
- ``inherited``: one socket, opened by the master and inherited by every worker, each of which
  watches it. Each new connection wakes every idle worker; one wins the ``accept`` and the others
  find nothing (the thundering herd). A busy worker is slower to wake, so idle ones take more.
- ``exclusive``: the same socket, registered with ``EPOLLEXCLUSIVE`` on each worker's loop's own
  epoll (``evserver.event.reactor.register_exclusive``), so the kernel wakes one waiting worker
  per connection: it passes over busy workers and wakes the first idle one in the socket's wait
  queue, so at low load that same worker takes nearly every connection. It needs epoll:
  ``--selector poll`` or ``select`` is refused with one line (no silent fall-back: the mode is
  what a lab measures).

Supervision:

- A worker that dies is replaced after ``RESTART_DELAY_MIN``, doubled for each quick death in a
  row (up to ``RESTART_DELAY_MAX``), back to the minimum once a worker lived ``STABLE_SECONDS``.
- A worker that exits before it reported ready has failed to start: after ``START_ATTEMPTS``
  failures in a row the master stops the others and exits with status 1 and that worker's error
  (no fork loop), except during a reload, where the old worker of that index keeps serving.
- A worker whose heartbeat (``evserver.servers.fleet``) has not moved for the heartbeat timeout
  (``HEARTBEAT_TIMEOUT``; starting workers get as long to report ready) is killed (SIGKILL) and
  replaced. A master that was itself stopped (Ctrl-Z, SIGSTOP) forgives the silence it missed.

Signals only write their number to a self-pipe (``signal.set_wakeup_fd``; the Python handlers do
nothing); the loop reads the numbers and acts:

- SIGTERM or SIGINT: every worker drains as a single server does (SIGTERM), the master exits 0
  once the last one is reaped; a second signal makes every worker exit at once (SIGQUIT: each
  writes its buffered access-log lines first), kills any still there after
  ``FAST_EXIT_SECONDS`` (SIGKILL), reaps them and exits 128 + the signal's number.
- SIGHUP: rolling restart. A new worker is forked for every index at once; as soon as one
  reports ready, the old worker of its index is told to hand over (SIGUSR2, ``retire()``): it
  stops accepting, answers each further request with ``Connection: close`` and closes idle
  connections after a second's grace. A client busy on a connection is moved by a response, not
  by a close it could race, and one whose idle connection is closed as it sends (the race that
  remains) is the client that retries an idempotent request once, as browsers and urllib3 do.
  New workers reopen the access log (rename it, then SIGHUP: log rotation) and start with
  empty caches; the options and the code stay the master's (restart it for a new version).
  Over HTTPS the master first reads the certificate and key files again (a renewed
  certificate); if they cannot be used it logs why and refuses the reload, and the workers go
  on serving with the certificate they have.
- SIGTTIN: one worker more; SIGTTOU: one fewer (it hands over as in a reload), never under one.
- SIGUSR1: passed on to every worker, each of which reopens the access log (log rotation
  without a reload: logrotate's ``postrotate``).
- SIGCHLD: only wakes the loop, which reaps every child that has ended: none is left a zombie.

Signals are blocked around ``fork``, so the child can put its own handlers in place before any
signal reaches it (a handler of the master's running in a child would write to the master's
self-pipe).

Limits: ``MAX_WORKERS`` (in ``evserver.config``) workers; every other limit (``--max-connections``,
select()'s descriptor cap, the backlog) is per worker.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace

from evserver.config import MAX_WORKERS, ServerConfig, available_cores
from evserver.net.listener import open_listener
from evserver.servers.fleet import Board
from evserver.servers.worker import (
    FAILED,
    FAST_EXIT_SIGNAL,
    READY,
    REOPEN_SIGNAL,
    REPORT_LIMIT,
    RETIRE_SIGNAL,
    WorkerPlan,
    run_worker,
)

log = logging.getLogger("evserver.master")

HEARTBEAT_TIMEOUT = 30.0
"""Seconds a worker's heartbeat may stand still before it is killed and replaced (gunicorn's
worker timeout; an evented loop never stalls that long unless something is wrong, such as a
handler that never returns, though a machine short of memory can slow it down)."""

HEARTBEAT_TIMEOUT_ENV = "EVSERVER_HEARTBEAT_TIMEOUT"
"""For tests only: an environment variable that overrides ``HEARTBEAT_TIMEOUT`` (seconds), so
a test can see a stopped worker replaced in a second or two."""

HEARTBEAT_INTERVAL = 1.0
"""Seconds between two beats of a worker (and two looks of the master), at most; a shorter
timeout gets beats four times per timeout."""

RESTART_DELAY_MIN = 0.1
"""Seconds before a dead worker's replacement starts: a crash loop costs ten forks a second."""

RESTART_DELAY_MAX = 10.0
"""The longest wait before a replacement, reached after seven quick deaths in a row."""

FAST_EXIT_SECONDS = 1.0
"""After a second stop signal, how long the workers get to write their buffered access-log lines
and exit before they are killed: a write takes milliseconds; a worker stopped or stuck in the
kernel is not worth a longer wait from someone who insists on stopping now."""

STABLE_SECONDS = 10.0
"""A worker that served this long before it died was not crash-looping: its replacement gets the
shortest delay again."""

START_ATTEMPTS = 3
"""Start-up failures in a row, at one index, after which the master gives up."""

SLOTS_PER_WORKER = 4
"""Board slots per worker: each worker, its successor during a reload, and room for workers
still draining after repeated reloads."""

MASTER_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                  signal.SIGCHLD, REOPEN_SIGNAL)

PORT_SHARING_BANNERS = {
    "reuseport": "a socket per worker (SO_REUSEPORT): the kernel spreads connections",
    "inherited": "one shared socket: every idle worker wakes for each connection",
    "exclusive": "one shared socket, EPOLLEXCLUSIVE: one worker woken per connection",
}

STOPPING, RETIRING = "stopping", "retiring"
"""Why a worker is leaving: told to stop (SIGTERM), told to hand over (SIGUSR2)."""


def heartbeat_timeout() -> float:
    """``HEARTBEAT_TIMEOUT``, or the test override from ``HEARTBEAT_TIMEOUT_ENV``."""
    text = os.environ.get(HEARTBEAT_TIMEOUT_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return HEARTBEAT_TIMEOUT
    return value if 0 < value < float("inf") else HEARTBEAT_TIMEOUT


@dataclass
class WorkerRecord:
    """What the master knows of one worker process."""

    index: int
    generation: int
    pid: int
    slot: int
    started: float
    ready_at: float | None = None
    leaving: str = ""
    hung: bool = False
    """Killed by the master for a heartbeat that stood still."""
    beats: int = -1
    beat_seen: float = 0.0
    error: str = ""
    """Why it could not start, from its report."""


@dataclass
class _Pipes:
    """The master's two pipes: signal numbers (the self-pipe) and the workers' reports."""

    wake_read: int
    wake_write: int
    report_read: int
    report_write: int
    pending: bytes = b""
    fds: list[int] = field(default_factory=list)

    @classmethod
    def open(cls) -> _Pipes:
        wake_read, wake_write = os.pipe()
        report_read, report_write = os.pipe()
        for fd in (wake_read, wake_write, report_read):
            os.set_blocking(fd, False)
        return cls(wake_read, wake_write, report_read, report_write,
                   fds=[wake_read, wake_write, report_read, report_write])

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


class Master:
    """Supervises ``config.workers`` worker processes. Build it (it binds, so a port in use
    raises ``OSError`` before anything forks), then ``run()`` until the fleet has stopped."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.count = config.workers
        self.mode = config.port_sharing
        self.listeners: list[socket.socket] = []
        try:
            self._open_listeners()
        except BaseException:
            self._close_listeners()
            raise
        self.port: int = self.listeners[0].getsockname()[1]
        self.worker_config = replace(config, port=self.port)
        self.timeout = heartbeat_timeout()
        self.interval = min(HEARTBEAT_INTERVAL, self.timeout / 4)
        self.board = Board(SLOTS_PER_WORKER * MAX_WORKERS)
        self.workers: dict[int, WorkerRecord] = {}
        self.generation = 0
        self.wanted: dict[int, int] = {}
        """The generation each index must run (a reload raises it)."""
        self.restarts: dict[int, int] = {}
        self.failures: dict[int, int] = {}
        self.delays: dict[int, float] = {}
        self.due: dict[int, float] = {}
        """Indexes waiting for a replacement, and when it starts."""
        self.stopping = False
        self.exit_status = 0
        self.fatal = ""
        """The one line said last, after the others have stopped, when the master gives up."""
        self.banner_shown = False
        self._pipes: _Pipes | None = None
        self._selector: selectors.BaseSelector | None = None
        self._last_look = time.monotonic()

    # -- the port ---------------------------------------------------------------------------

    def _open_listeners(self) -> None:
        config = self.config
        if self.mode != "reuseport":
            self.listeners.append(open_listener(config.host, config.port, config.backlog))
            return
        probe = open_listener(config.host, config.port, None)  # refused if anyone holds it
        port = probe.getsockname()[1]
        probe.close()
        for _ in range(self.count):
            self._add_listener(port)

    def _add_listener(self, port: int) -> None:
        self.listeners.append(open_listener(self.config.host, port, self.config.backlog,
                                            reuse_port=True))

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners = []

    def _listener_of(self, index: int) -> socket.socket:
        return self.listeners[index] if self.mode == "reuseport" else self.listeners[0]

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until they have all stopped; the exit status."""
        pipes = self._pipes = _Pipes.open()
        previous = {signum: signal.signal(signum, _wake_only) for signum in MASTER_SIGNALS}
        previous_wakeup = signal.set_wakeup_fd(pipes.wake_write, warn_on_full_buffer=False)
        selector = self._selector = selectors.DefaultSelector()
        try:
            selector.register(pipes.wake_read, selectors.EVENT_READ)
            selector.register(pipes.report_read, selectors.EVENT_READ)
            for index in range(self.count):
                self.wanted[index] = self.generation
                self._start(index)
            self._loop()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._kill_all(signal.SIGKILL)  # only after an error: the loop ends with none left
            selector.close()
            pipes.close()
            self._close_listeners()
            self.board.close()
        if self.fatal:
            print(self.fatal, file=sys.stderr, flush=True)
        return self.exit_status

    def _loop(self) -> None:
        next_look = time.monotonic() + self.interval
        while not (self.stopping and not self.workers):
            now = time.monotonic()
            wake_at = min([next_look, *self.due.values()])
            assert self._selector is not None
            for key, _ in self._selector.select(max(wake_at - now, 0.0)):
                if key.fd == self._require_pipes().wake_read:
                    self._read_signals()
            self._read_reports()  # before reaping: a worker reports before it exits
            self._reap()
            self._start_due()
            now = time.monotonic()
            if now >= next_look:
                self._look_at_heartbeats(now)
                next_look = now + self.interval

    def _require_pipes(self) -> _Pipes:
        assert self._pipes is not None
        return self._pipes

    def _read_signals(self) -> None:
        try:
            numbers = os.read(self._require_pipes().wake_read, 4096)
        except BlockingIOError:
            return
        for number in numbers:
            self._on_signal(number)

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM):
            if self.stopping:
                log.warning("second stop signal: every worker exits now")
                self._exit_all_now()
                self.exit_status = 128 + signum
            else:
                self._stop(f"stopping ({signal.Signals(signum).name})")
        elif signum == signal.SIGHUP:
            self._reload()
        elif signum == signal.SIGTTIN:
            self._add_worker()
        elif signum == signal.SIGTTOU:
            self._remove_worker()
        elif signum == REOPEN_SIGNAL:
            for worker in self.workers.values():
                _signal(worker.pid, REOPEN_SIGNAL)

    # -- reports ----------------------------------------------------------------------------

    def _read_reports(self) -> None:
        pipes = self._require_pipes()
        while True:
            try:
                chunk = os.read(pipes.report_read, REPORT_LIMIT)
            except BlockingIOError:
                break
            if not chunk:
                break
            pipes.pending += chunk
        *lines, pipes.pending = pipes.pending.split(b"\n")
        for line in lines:
            kind, _, rest = line.decode(errors="replace").partition(" ")
            pid_text, _, text = rest.partition(" ")
            worker = self.workers.get(int(pid_text)) if pid_text.isdigit() else None
            if worker is None:
                continue
            if kind == READY:
                self._on_ready(worker, text)
            elif kind == FAILED:
                worker.error = text

    def _on_ready(self, worker: WorkerRecord, banner: str) -> None:
        now = time.monotonic()
        worker.ready_at = now
        worker.beat_seen = now
        index = worker.index
        self.failures[index] = 0
        if worker.leaving or worker.hung:
            return
        if index >= self.count or worker.generation != self.wanted.get(index):
            self._send_away(worker)  # overtaken by a newer reload, or its index was removed
            return
        for other in self._workers_at(index):
            if other is not worker:
                log.info("worker %d: pid %d takes over from pid %d", index, worker.pid,
                         other.pid)
                self._send_away(other)
        if not self.banner_shown and all(self._serving(i) for i in range(self.count)):
            self.banner_shown = True
            self._show_banner(banner)

    def _show_banner(self, worker_banner: str) -> None:
        cores = available_cores()
        lines = [worker_banner,
                 f"evserver: master {os.getpid()}, {self.count} worker process(es), port "
                 f"sharing {self.mode}: {PORT_SHARING_BANNERS[self.mode]}; SIGHUP reloads the "
                 "workers, SIGTTIN/SIGTTOU add or remove one; limits are per worker"]
        if self.count > cores:
            lines.append(f"evserver: {self.count} workers on {cores} core(s): more workers than "
                         "cores only adds switching between them")
        print("\n".join(lines), file=sys.stderr, flush=True)

    # -- starting ---------------------------------------------------------------------------

    def _start(self, index: int) -> None:
        """Fork a worker for ``index`` at the generation it must run."""
        slot = self.board.claim(index, self.restarts.get(index, 0))
        if slot is None:
            log.error("worker %d: no free slot on the board (too many workers draining); "
                      "trying again later", index)
            self._schedule(index)
            return
        plan = WorkerPlan(
            config=self.worker_config, index=index, slot=slot, board=self.board,
            listener=self._listener_of(index), exclusive=self.mode == "exclusive",
            own_listener=self.mode == "reuseport", report_fd=self._require_pipes().report_write,
            master_pid=os.getpid(), heartbeat_interval=self.interval,
            close_inherited=lambda: self._close_in_child(index),
            signal_mask=signal.pthread_sigmask(signal.SIG_BLOCK, []))
        sys.stdout.flush()
        sys.stderr.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, (*MASTER_SIGNALS, RETIRE_SIGNAL, FAST_EXIT_SIGNAL))
        try:
            pid = os.fork()
            if pid == 0:
                run_worker(plan)  # never returns
        except OSError as error:
            self.board.release(slot)
            log.error("worker %d: cannot fork (%s); trying again later", index, error)
            self._schedule(index)
            return
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, plan.signal_mask)
        self.board.set_pid(slot, pid)
        now = time.monotonic()
        self.workers[pid] = WorkerRecord(index, self.wanted[index], pid, slot, now,
                                         beat_seen=now)

    def _close_in_child(self, index: int) -> None:
        """In a new worker: close the master's pipes (but the report pipe's writing end), its
        selector, and every listener but the worker's own (a copy kept open elsewhere would
        keep a reuseport socket in the group after SIGTTOU closed it)."""
        pipes = self._require_pipes()
        if self._selector is not None:
            self._selector.close()
        for fd in (pipes.wake_read, pipes.wake_write, pipes.report_read):
            os.close(fd)
        own = self._listener_of(index)
        for listener in self.listeners:
            if listener is not own:
                listener.close()

    def _schedule(self, index: int, lived: float = 0.0) -> float:
        """Start a worker for ``index`` after a delay that grows with quick deaths in a row."""
        delay = self.delays.get(index, RESTART_DELAY_MIN)
        if lived >= STABLE_SECONDS:
            delay = RESTART_DELAY_MIN
        self.delays[index] = min(delay * 2, RESTART_DELAY_MAX)
        self.due[index] = time.monotonic() + delay
        return delay

    def _start_due(self) -> None:
        now = time.monotonic()
        for index, when in list(self.due.items()):
            if when <= now:
                del self.due[index]
                if self._needs_worker(index):
                    self._start(index)

    def _needs_worker(self, index: int) -> bool:
        return not self.stopping and index < self.count and not any(
            w.generation == self.wanted[index] for w in self._workers_at(index))

    def _workers_at(self, index: int) -> list[WorkerRecord]:
        """The workers of ``index`` that are not leaving (serving or starting)."""
        return [w for w in self.workers.values() if w.index == index and not w.leaving]

    def _serving(self, index: int) -> bool:
        return any(w.ready_at is not None and w.generation == self.wanted.get(index)
                   for w in self._workers_at(index))

    # -- ends -------------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self.board.release(worker.slot)
                self._on_exit(worker, status)

    def _on_exit(self, worker: WorkerRecord, status: int) -> None:
        how = _exit_description(status)
        index, pid = worker.index, worker.pid
        if worker.leaving or self.stopping:
            log.info("worker %d (pid %d) %s", index, pid, how)
            return
        if worker.ready_at is None:
            self._start_failed(worker, how)
            return
        if worker.hung:
            how = "sent no heartbeat and was killed"
        self.restarts[index] = self.restarts.get(index, 0) + 1
        if self._needs_worker(index):
            delay = self._schedule(index, lived=time.monotonic() - worker.ready_at)
            log.warning("worker %d (pid %d) %s; a new one starts in %.1f s", index, pid, how,
                        delay)
        else:
            log.warning("worker %d (pid %d) %s", index, pid, how)

    def _start_failed(self, worker: WorkerRecord, how: str) -> None:
        index = worker.index
        error = worker.error or (
            "no report within the heartbeat timeout" if worker.hung
            else f"it {how} before it was ready")
        if not self._needs_worker(index):
            log.warning("worker %d could not start: %s", index, error)
            return
        failures = self.failures[index] = self.failures.get(index, 0) + 1
        if failures < START_ATTEMPTS:
            delay = self._schedule(index)
            log.warning("worker %d could not start: %s; trying again in %.1f s", index, error,
                        delay)
            return
        self.failures[index] = 0
        survivors = self._workers_at(index)
        if survivors:  # a reload that cannot start: keep what serves
            self.wanted[index] = survivors[0].generation
            log.error("worker %d could not start %d times (%s); the old worker keeps serving",
                      index, START_ATTEMPTS, error)
            return
        self.exit_status = 1
        self.fatal = f"evserver: worker {index} cannot start: {error}"
        self._stop("giving up")

    def _send_away(self, worker: WorkerRecord) -> None:
        """Make ``worker`` leave: hand over if it serves, stop if it is still starting."""
        if worker.ready_at is not None:
            worker.leaving = RETIRING
            _signal(worker.pid, RETIRE_SIGNAL)
        else:
            worker.leaving = STOPPING
            _signal(worker.pid, signal.SIGTERM)

    def _stop(self, why: str) -> None:
        """Every worker drains (SIGTERM) as a single server does; the loop ends with the last."""
        self.stopping = True
        self.due.clear()
        log.info("%s: %d worker(s) to drain", why, len(self.workers))
        for worker in self.workers.values():
            if not worker.leaving:  # one handing over already drains: a SIGTERM would force it
                worker.leaving = STOPPING
                _signal(worker.pid, signal.SIGTERM)

    def _exit_all_now(self) -> None:
        """Every worker exits at once (``FAST_EXIT_SIGNAL``: its buffered log lines written
        first); those still there after ``FAST_EXIT_SECONDS``, or at a further stop signal, are
        killed. Every one is reaped on return."""
        self.stopping = True
        self.due.clear()
        for worker in self.workers.values():
            _signal(worker.pid, FAST_EXIT_SIGNAL)
        deadline = time.monotonic() + FAST_EXIT_SECONDS
        wake_read, selector = self._require_pipes().wake_read, self._selector
        assert selector is not None
        self._reap()
        while self.workers:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                if key.fd == wake_read and self._insists(wake_read):
                    deadline = 0.0
            self._read_reports()  # a full report pipe must not wake us again and again
            self._reap()
        self._kill_all(signal.SIGKILL)

    @staticmethod
    def _insists(wake_read: int) -> bool:
        """Read the self-pipe (SIGCHLD wakes it as a worker exits): True if a stop signal came
        again."""
        try:
            numbers = os.read(wake_read, 4096)
        except BlockingIOError:
            return False
        return signal.SIGINT in numbers or signal.SIGTERM in numbers

    def _kill_all(self, signum: int) -> None:
        """Kill every worker now and reap them all."""
        self.stopping = True
        self.due.clear()
        for worker in self.workers.values():
            _signal(worker.pid, signum)
        for pid, worker in list(self.workers.items()):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.board.release(worker.slot)
        self.workers.clear()

    # -- reload, more, fewer --------------------------------------------------------------------

    def _reload(self) -> None:
        if self.stopping or not self._read_tls_files_again():
            return
        self.generation += 1
        log.info("reloading: starting %d new worker(s)", self.count)
        for index in range(self.count):
            self.wanted[index] = self.generation
            self.failures[index] = 0
            self.due.pop(index, None)
            self._start(index)

    def _read_tls_files_again(self) -> bool:
        """Over HTTPS, a reload reads the certificate and key files again (a renewed
        certificate): the new workers, and any started later, serve with them. Files that
        cannot be used refuse the whole reload, as nginx refuses a reload whose configuration
        fails its test: the workers serving go on, with the certificate they have."""
        load = self.config.tls_reload
        if load is None:
            return True
        from evserver.net.tls import TLSSetupError  # only over HTTPS: plain HTTP needs no ssl

        try:
            context = load()
        except TLSSetupError as error:
            log.error("reload refused: %s; the workers go on with the certificate they have",
                      error)
            return False
        self.worker_config = replace(self.worker_config, tls_context=context)
        log.info("reloading: certificate and key read again")
        return True

    def _add_worker(self) -> None:
        if self.stopping:
            return
        if self.count >= MAX_WORKERS:
            log.warning("SIGTTIN: already %d workers, the most there may be", self.count)
            return
        if self.mode == "reuseport":
            try:
                self._add_listener(self.port)
            except OSError as error:
                log.error("SIGTTIN: cannot open one more socket: %s", error)
                return
        index = self.count
        self.count += 1
        self.wanted[index] = self.generation
        self.failures[index] = 0
        log.info("SIGTTIN: one worker more, %d", self.count)
        self._start(index)

    def _remove_worker(self) -> None:
        if self.stopping:
            return
        if self.count <= 1:
            log.warning("SIGTTOU: one worker is the fewest there may be")
            return
        self.count -= 1
        index = self.count
        self.due.pop(index, None)
        log.info("SIGTTOU: one worker fewer, %d", self.count)
        for worker in self._workers_at(index):
            self._send_away(worker)
        if self.mode == "reuseport":
            self.listeners.pop().close()  # its worker takes the queue, then closes the last copy

    # -- heartbeats -------------------------------------------------------------------------

    def _look_at_heartbeats(self, now: float) -> None:
        if now - self._last_look > 3 * self.interval:  # we were stopped or starved ourselves
            for worker in self.workers.values():
                worker.beat_seen = now
        self._last_look = now
        for worker in self.workers.values():
            if worker.hung:
                continue
            beats = self.board.beats(worker.slot)
            if beats != worker.beats:
                worker.beats = beats
                worker.beat_seen = now
            elif now - worker.beat_seen > self.timeout:
                log.warning("worker %d (pid %d) sent no heartbeat for %.0f s: killing it",
                            worker.index, worker.pid, now - worker.beat_seen)
                worker.hung = True
                _signal(worker.pid, signal.SIGKILL)


def _wake_only(signum: int, frame: object) -> None:
    """The master's Python-level handler: nothing (the number is in the self-pipe already)."""


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it has just exited; reaping will tell


def _exit_description(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    code = os.waitstatus_to_exitcode(status)
    return "exited" if code == 0 else f"exited with status {code}"
