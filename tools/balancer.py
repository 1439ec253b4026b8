"""Several evserver instances behind HAProxy on this machine: one command, one front URL.

    python tools/balancer.py                                # two instances of this folder
    python tools/balancer.py --instances 3 -d /srv/www -- --workers 2

What this module knows: how to start N evserver instances on free loopback ports (through
``tools.servers``, each with a health path), how to fill the HAProxy configuration template
(``tools/haproxy.cfg.template``) and run HAProxy in the foreground, how to read the instances'
states from HAProxy's runtime API (``show stat`` on its stats socket), and how to stop it all.
What it must not know: how evserver serves, or what HAProxy does with a request (the template
says that).

Invariants:
- Nothing is started before the arguments are judged: bad ones, or no HAProxy, are one line on
  standard error and exit status 2. evserver judges its own options: the first instance that
  exits with status 2 turns into the same one line and status 2.
- The front URL is printed only once HAProxy has checked every instance and found it up.
- Every process started is stopped at the end, whatever ends it (Ctrl-C, SIGTERM, an error
  while starting): HAProxy first, so no new request arrives, then each instance (it drains).
  Exit status 0 after Ctrl-C or SIGTERM, 1 when something did not start or HAProxy died.
- The run folder (configuration, HAProxy's log, each instance's log) is a new temporary folder
  removed at a clean exit and kept, with its path printed, after a failure; ``--run-dir``
  names one that is always kept.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

if __package__ in (None, ""):  # run as a script: make ``tools`` importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import servers

TEMPLATE = os.path.join(servers.TOOLS_DIR, "haproxy.cfg.template")
BACKEND = "evservers"
"""The backend's name in the template (the rows of ``show stat`` that are instances)."""

DEFAULT_INSTANCES = 2
DEFAULT_PORT = 8080
"""The front port: not evserver's 8000, so an evserver of one's own can run beside it."""

HEALTH_PATH = "/-/health"
STATS_URI = "/-/haproxy"
"""HAProxy's own stats page on the front (each instance's state, checks and retries)."""

INSTANCE_STATS_PATH = "/-/stats"

READY_TIMEOUT = 15.0
"""Seconds for HAProxy to start and find every instance up (checks run every 250 ms)."""

POLL_STEP = 0.05
"""While waiting for HAProxy's checks, or watching the children: how often to look again."""

RUNTIME_API_TIMEOUT = 2.0
"""Seconds a ``show stat`` on HAProxy's runtime socket may take."""

INSTALL_HAPROXY = "haproxy is not installed (Debian: sudo apt-get install haproxy)"

USAGE_ERROR = 2
START_FAILED = 1

OWN_OPTIONS = ("-b", "--bind", "--health-path", "--stats-path")
"""evserver options the balancer sets itself; given after ``--`` they are refused."""


class UsageError(ValueError):
    """Arguments the balancer cannot use; the message is one line for the user."""


class StartFailed(RuntimeError):
    """Something did not start; the message says what and shows the end of its log."""


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="balancer", allow_abbrev=False,
        description="Start N evserver instances on loopback ports and HAProxy in front of "
                    "them (health checks, least connections, retries on another instance); "
                    "print the front URL; Ctrl-C stops everything. Options after '--' (or any "
                    "this tool does not know) go to every evserver, e.g. -- --workers 2.")
    parser.add_argument("--instances", "-n", type=_count, default=DEFAULT_INSTANCES,
                        metavar="N", help=f"evserver instances (default {DEFAULT_INSTANCES})")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"HAProxy's front port on 127.0.0.1, 0 for a free one "
                             f"(default {DEFAULT_PORT})")
    parser.add_argument("-d", "--directory", default=os.curdir,
                        help="folder every instance serves (default: the current folder)")
    parser.add_argument("--health-path", default=HEALTH_PATH, metavar="PATH",
                        help=f"the instances' health path, which HAProxy checks "
                             f"(default {HEALTH_PATH})")
    parser.add_argument("--run-dir", metavar="DIR",
                        help="folder for the configuration and the logs, kept (default: a "
                             "temporary one, removed at a clean exit)")
    return parser


@dataclass(frozen=True)
class Options:
    instances: int
    port: int
    directory: str
    health_path: str
    run_dir: str | None
    evserver_args: tuple[str, ...]


def parse_args(argv: Sequence[str]) -> Options:
    """The balancer's own options, and the rest for evserver; ``UsageError`` if unusable."""
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        own, passed = argv[:split], argv[split + 1:]
    else:
        own, passed = argv, []
    args, unknown = build_parser().parse_known_args(own)
    passed = unknown + passed
    for word in passed:
        name = word.split("=", 1)[0]
        if name in OWN_OPTIONS:
            raise UsageError(f"the balancer sets {name} of every instance itself")
    if not os.path.isdir(args.directory):
        raise UsageError(f"-d/--directory: {args.directory!r} is not a folder")
    if not args.health_path.startswith("/"):
        raise UsageError("--health-path must start with '/'")
    return Options(args.instances, args.port, os.path.abspath(args.directory),
                   args.health_path, args.run_dir, tuple(passed))


def haproxy_binary() -> str | None:
    """HAProxy's path: Debian puts it in /usr/sbin, which a normal user's PATH often lacks."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


def _model(evserver_args: Sequence[str]) -> str:
    """The model named in evserver's options (the last one wins, as in evserver)."""
    model = "evented"
    for index, word in enumerate(evserver_args):
        if word == "--model" and index + 1 < len(evserver_args):
            model = evserver_args[index + 1]
        elif word.startswith("--model="):
            model = word.split("=", 1)[1]
    return model


def instance_spec(number: int, evserver_args: Sequence[str],
                  health_path: str) -> servers.ServerSpec:
    return servers.ServerSpec(f"evserver-{number}", "evserver", _model(evserver_args),
                              (*evserver_args, "--health-path", health_path))


def haproxy_config(port: int, instances: Sequence[tuple[str, int]], health_path: str,
                   runtime_socket: str) -> str:
    """The template filled in: the front on ``servers.HOST:port``, one server line per
    (name, port) instance on loopback."""
    with open(TEMPLATE) as template_file:
        template = string.Template(template_file.read())
    lines = "\n".join(f"    server {name} {servers.HOST}:{instance_port}"
                      for name, instance_port in instances)
    return template.substitute(host=servers.HOST, port=port, health_path=health_path,
                               runtime_socket=runtime_socket, stats_uri=STATS_URI,
                               servers=lines)


def show_stat(runtime_socket: str, timeout: float = RUNTIME_API_TIMEOUT) -> list[dict[str, str]]:
    """HAProxy's ``show stat`` as rows (one per frontend, backend and server); empty when the
    socket does not answer (HAProxy not up yet, or gone)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as api:
            api.settimeout(timeout)
            api.connect(runtime_socket)
            api.sendall(b"show stat\n")
            chunks = []
            while chunk := api.recv(65536):
                chunks.append(chunk)
    except OSError:
        return []
    text = b"".join(chunks).decode(errors="replace").removeprefix("# ")
    return list(csv.DictReader(line for line in text.splitlines() if line.strip()))


def instance_states(runtime_socket: str) -> dict[str, str]:
    """Each instance's state as HAProxy sees it: ``UP``, ``DOWN``, ``UP 1/2`` (going down),
    ``DOWN 1/2`` (coming up), ``NOLB``, ``MAINT``...; empty when HAProxy does not answer."""
    return {row["svname"]: row["status"] for row in show_stat(runtime_socket)
            if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", "FRONTEND")}


def all_checked_up(runtime_socket: str, names: Sequence[str]) -> bool:
    """True once HAProxy has run a health check on every instance and found it up (a server
    counts as up before its first check; this waits for the check)."""
    rows = {row["svname"]: row for row in show_stat(runtime_socket)
            if row.get("pxname") == BACKEND}
    return all(rows.get(name, {}).get("status") == "UP"
               and rows[name].get("check_status") == "L7OK" for name in names)


def _log_tail(path: str) -> str:
    try:
        with open(path, errors="replace") as log:
            lines = [line for line in log.read()[-16384:].splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in lines[-servers.LOG_TAIL_LINES:]) or "    (empty)"


@dataclass
class Balancer:
    """N instances and HAProxy in front of them; ``start`` then ``stop`` (or ``with``)."""

    options: Options
    rundir: str
    running: list[servers.RunningServer] = field(default_factory=list)
    haproxy: subprocess.Popen[bytes] | None = None
    port: int = 0
    """The front port, once started."""

    @property
    def runtime_socket(self) -> str:
        return os.path.join(self.rundir, "haproxy.sock")

    @property
    def haproxy_log(self) -> str:
        return os.path.join(self.rundir, "haproxy.log")

    @property
    def names(self) -> list[str]:
        return [server.spec.label for server in self.running]

    def url(self, path: str = "/") -> str:
        return f"http://{servers.HOST}:{self.port}{path}"

    def start(self) -> None:
        """Start the instances, then HAProxy; return once HAProxy has found all of them up.
        Raises ``UsageError`` when evserver refuses its options, ``StartFailed`` otherwise;
        what was started is left for ``stop``."""
        self.port = self._front_port()
        self._start_instances()
        self._start_haproxy()
        deadline = time.monotonic() + READY_TIMEOUT
        while not all_checked_up(self.runtime_socket, self.names):
            assert self.haproxy is not None
            if self.haproxy.poll() is not None:
                raise StartFailed(f"haproxy exited with status {self.haproxy.returncode}; the "
                                  f"end of its log ({self.haproxy_log}):\n"
                                  f"{_log_tail(self.haproxy_log)}")
            if time.monotonic() > deadline:
                raise StartFailed(f"haproxy did not find every instance up in "
                                  f"{READY_TIMEOUT:g} s: {self.states()}; its log: "
                                  f"{self.haproxy_log}")
            time.sleep(POLL_STEP)

    def _front_port(self) -> int:
        """The port asked for, once it is known to be free (HAProxy would say so only after
        the instances started), or a free one."""
        if not self.options.port:
            return servers.free_port()
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy binds
            try:
                probe.bind((servers.HOST, self.options.port))
            except OSError as error:
                raise StartFailed(f"cannot listen on {servers.HOST}:{self.options.port}: "
                                  f"{error.strerror or error}") from None
        return self.options.port

    def _start_instances(self) -> None:
        options = self.options
        for number in range(1, options.instances + 1):
            spec = instance_spec(number, options.evserver_args, options.health_path)
            try:
                server = servers.start(spec, options.directory, self.rundir, None,
                                       INSTANCE_STATS_PATH)
            except servers.StartError as error:
                if error.reason == f"exit status {USAGE_ERROR}":
                    raise UsageError(f"evserver refused its options: {error.last_line}") \
                        from None
                raise StartFailed(str(error)) from None
            self.running.append(server)

    def _start_haproxy(self) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise UsageError(INSTALL_HAPROXY)
        config_path = os.path.join(self.rundir, "haproxy.cfg")
        with open(config_path, "w") as config:
            config.write(haproxy_config(self.port, [(s.spec.label, s.port) for s in self.running],
                                        self.options.health_path, self.runtime_socket))
        with open(self.haproxy_log, "wb") as log:
            # -db: stay in the foreground (this tool supervises it); its own session, so a
            # Ctrl-C at the terminal reaches this tool, which stops everything in order.
            self.haproxy = subprocess.Popen([binary, "-db", "-f", config_path],
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def states(self) -> dict[str, str]:
        return instance_states(self.runtime_socket)

    def stop(self) -> None:
        """HAProxy first (no new requests), then every instance (each drains); idempotent."""
        if self.haproxy is not None:
            servers.stop_process(self.haproxy)
        for server in self.running:
            server.stop()

    def __enter__(self) -> Balancer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Stop(Exception):
    """SIGTERM arrived: end as after Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def watch(balancer: Balancer) -> int:
    """Until Ctrl-C or SIGTERM: report an instance that exits (HAProxy goes on without it);
    HAProxy itself exiting ends the run with status 1."""
    reported: set[str] = set()
    assert balancer.haproxy is not None
    while True:
        try:
            code = balancer.haproxy.wait(POLL_STEP * 10)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            log(f"balancer: haproxy exited with status {code}; the end of its log:\n"
                f"{_log_tail(balancer.haproxy_log)}")
            return START_FAILED
        for server in balancer.running:
            status = server.process.poll()
            if status is not None and server.spec.label not in reported:
                reported.add(server.spec.label)
                log(f"balancer: {server.spec.label} (pid {server.pid}) exited with status "
                    f"{status}; HAProxy sends its requests to the others")


def banner(balancer: Balancer) -> str:
    lines = [f"balancer: {len(balancer.running)} evserver instances behind HAProxy on "
             f"{balancer.url()}"]
    lines += [f"  {server.spec.label}: {server.url()} (pid {server.pid})"
              for server in balancer.running]
    lines.append(f"  HAProxy's view: {balancer.url(STATS_URI)}; logs and configuration: "
                 f"{balancer.rundir}; Ctrl-C stops everything")
    return "\n".join(lines)


@contextlib.contextmanager
def run_folder(chosen: str | None) -> Iterator[tuple[str, list[bool]]]:
    """The run folder, and a flag to set when it must be kept (a temporary one is removed at
    the end unless the flag is set)."""
    keep = [chosen is not None]
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        folder = os.path.abspath(chosen)
    else:
        folder = tempfile.mkdtemp(prefix="evserver-balancer-")
    try:
        yield folder, keep
    finally:
        if not keep[0]:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        log(f"balancer: {error} (see balancer --help)")
        return USAGE_ERROR
    if haproxy_binary() is None:
        log(f"balancer: {INSTALL_HAPROXY}")
        return USAGE_ERROR
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with run_folder(options.run_dir) as (rundir, keep):
            return _run(Balancer(options, rundir), keep)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(balancer: Balancer, keep: list[bool]) -> int:
    status = 0
    try:
        balancer.start()
        print(banner(balancer), flush=True)
        status = watch(balancer)
    except UsageError as error:
        log(f"balancer: {error}")
        status = USAGE_ERROR
    except StartFailed as error:
        log(f"balancer: {error}")
        status = START_FAILED
    except (KeyboardInterrupt, _Stop):
        log("balancer: stopping HAProxy, then every instance (each drains)")
    finally:
        with _signals_ignored():  # a second Ctrl-C or SIGTERM must not skip a stop
            balancer.stop()
    if status == START_FAILED and (balancer.running or balancer.haproxy is not None):
        keep[0] = True
        log(f"balancer: the logs are kept in {balancer.rundir}")
    return status


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    previous = {signum: signal.signal(signum, signal.SIG_IGN)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
