"""Start and stop the servers under test as pinned child processes; read server specs.

What this module knows: the command line of each kind of server (evserver, ``python -m
http.server``, nginx), how each announces its port, how to stop it, the server *spec*
language of the runner's ``--server`` option, and how to run the evserver of another checkout
(``ServerSpec.checkout``). What it must not know: what is measured -- a
running server is a pid, a base URL and maybe a stats URL.

A spec is a model and evserver options, as one would type them after ``evserver``::

    evented                       the evented model with evserver's defaults
    evented --selector select     the same with another readiness API
    threaded --max-connections 64
    poll=evented --selector poll  an explicit label before '='
    nginx, http.server            the peers (no options: the runner configures them)

Invariants:
- Every server binds 127.0.0.1 (load never leaves the machine) and is pinned with ``taskset`` to
  the server core, so the load generator on the other cores does not compete with it.
- A server's output goes to a log file in the run folder, never to a pipe nobody reads (a full
  pipe would stall a server that logs each request).
- Each server runs in its own process group (nginx is a master and a worker): ``stop()`` sends
  SIGTERM to the server, waits a bounded time, then SIGKILLs the whole group; it is safe to call
  twice. A server that fails to start is killed before the error is raised, so no error path
  leaves a process behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tools import cores

START_TIMEOUT = 15.0
"""Seconds a server has to announce itself or accept a connection before the run gives up."""

STOP_TIMEOUT = 10.0
"""Seconds between SIGTERM and SIGKILL (evserver drains in-flight responses on SIGTERM)."""

POLL_STEP = 0.05
"""While waiting for a banner line or a listening port: how often to look again."""

BACKLOG = 4096
"""listen() backlog for every server we control, the kernel's somaxconn cap: no silent queue cap."""

NOFILE = 20000
"""Descriptor limit asked for in nginx's worker (the runner raises its own soft limit too)."""

LOG_TAIL_LINES = 8
"""Lines of a failed server's log shown to the user: enough for a traceback's last frames."""

HOST = "127.0.0.1"
TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
NGINX_TEMPLATE = os.path.join(TOOLS_DIR, "nginx.conf.template")

MODELS = ("evented", "threaded", "iterative")
NGINX_TLS = "nginx+tls"
"""The nginx peer serving HTTPS, with the run's certificate (see ``NGINX_TLS_SETTINGS``)."""
PEERS = ("http.server", "nginx", NGINX_TLS)
INSTALL_HINTS = {"nginx": "Debian: sudo apt-get install nginx"}

TLS_FOLDER = "tls"
"""Where in the run folder the runner makes the certificate its HTTPS servers share."""

EVSERVER_TLS_ARGS = ("--tls-cert", "{rundir}/tls/server-cert.pem",
                     "--tls-key", "{rundir}/tls/server-key.pem", "--tls-no-tickets")
"""evserver's options for HTTPS with the run's certificate (``{rundir}`` is filled in at start),
and no session tickets: wrk keeps each connection's TLS session across its reconnects and
would resume it, so a new connection per request would measure resumed handshakes, not full
ones."""

NGINX_TLS_SETTINGS = """\
        ssl_certificate ${cert};
        ssl_certificate_key ${key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_session_tickets off;
        ssl_session_cache off;
"""
"""nginx over TLS as evserver is: the same certificate, TLS 1.2 and 1.3, the server's cipher
order (Python's server context prefers its own order too, so both pick the same cipher from
wrk's offer), no session resumption (``EVSERVER_TLS_ARGS`` says why); the 16 KiB TLS buffer
at its default, the record size evserver writes; no kTLS (nginx turns it on only when told)."""

RUNNER_OPTIONS = ("-b", "--bind", "-d", "--directory", "--stats-path", "-h", "--help",
                  "--version")
"""evserver options the runner sets itself (address, folder, stats URL) or that do not serve."""

EVSERVER_BANNER = re.compile(r"on https?://(\[[^\]]+\]|[^:/\s]+):(\d+)/")
HTTP_SERVER_BANNER = re.compile(r"Serving HTTP on \S+ port (\d+)")
LABEL_PREFIX = re.compile(r"([A-Za-z0-9_.+-]+)=(?=\S)")


class SpecError(ValueError):
    """A ``--server`` spec the runner cannot use; the message is one line for the user."""


class StartError(RuntimeError):
    """A server did not start; the message says which and shows the end of its log."""

    def __init__(self, message: str, reason: str = "", last_line: str = "",
                 log_path: str = "") -> None:
        super().__init__(message)
        self.reason, self.last_line, self.log_path = reason, last_line, log_path


@dataclass(frozen=True)
class ServerSpec:
    """What to run. ``kind`` is evserver, http.server or nginx; ``label`` names it in tables."""

    label: str
    kind: str
    model: str = ""
    extra_args: tuple[str, ...] = ()
    only_when_named: bool = False
    """True for a variant measured only in the cases that name it (the access-log twin)."""
    text: str = ""
    """The spec as the user wrote it (for messages); empty for specs the runner builds."""
    checkout: str = ""
    """A folder holding the evserver to run instead of the installed one (the A/B mode): the
    server starts in it, with it first on ``PYTHONPATH`` (see ``checkout_place``)."""

    @property
    def tls(self) -> bool:
        """The server speaks HTTPS (its URLs say ``https``)."""
        return self.kind == NGINX_TLS or "--tls-cert" in self.extra_args


@dataclass
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    log_path: str
    argv: list[str] = field(default_factory=list)
    stats_url: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str = "/") -> str:
        return f"{'https' if self.spec.tls else 'http'}://{HOST}:{self.port}{path}"

    def stop(self) -> int | None:
        return stop_process(self.process)


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> int | None:
    """SIGTERM, a bounded wait, then SIGKILL to what is left of the process group it leads.

    The leader is waited for without being reaped (``WNOWAIT``), so its process id -- which is
    the group's id -- cannot be reused by another process before the group is killed.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # polls first: reaps a child that has ended
        deadline = time.monotonic() + timeout
        while process.returncode is None and time.monotonic() < deadline:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                break
            time.sleep(POLL_STEP)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # a worker left behind (nginx), or a hang
        process.wait(timeout)
    return process.returncode


def evserver_spec(model: str, *extra: str, label: str | None = None) -> ServerSpec:
    return ServerSpec(label or model, "evserver", model, tuple(extra))


def peer_spec(name: str) -> ServerSpec:
    return ServerSpec(name, name, text=name)


# --- the --server spec language ------------------------------------------------------------

def parse_spec(text: str) -> ServerSpec:
    """One ``--server`` value; raises ``SpecError`` with a one-line reason."""
    label = None
    match = LABEL_PREFIX.match(text.strip())
    if match:
        label, body = match.group(1), text.strip()[match.end():]
    else:
        body = text
    try:
        words = shlex.split(body)
    except ValueError as error:
        raise SpecError(f"--server {text!r}: {error}") from None
    if not words:
        raise SpecError(f"--server {text!r}: empty; give a model, e.g. --server evented")
    first, options = words[0], tuple(words[1:])
    if first in PEERS:
        if options:
            raise SpecError(f"--server {text!r}: {first} takes no options here "
                            f"(the runner configures it)")
        return replace(peer_spec(first), label=label or first, text=text)
    if first not in MODELS:
        raise SpecError(f"--server {text!r}: starts with {first!r}; the first word must be a "
                        f"model ({', '.join(MODELS)}) or a peer ({', '.join(PEERS)})")
    for word in options:
        name = word.split("=", 1)[0]
        if name in RUNNER_OPTIONS:
            raise SpecError(f"--server {text!r}: the runner sets {name} itself")
    return ServerSpec(label or "", "evserver", first, options, text=text)


def _option_groups(options: Sequence[str]) -> list[str]:
    """Options as readable words: ``--selector select`` -> ``selector=select``."""
    groups: list[str] = []
    index = 0
    while index < len(options):
        word = options[index]
        if word.startswith("-") and "=" not in word and index + 1 < len(options) \
                and not options[index + 1].startswith("-"):
            groups.append(f"{word.lstrip('-')}={options[index + 1]}")
            index += 2
        else:
            groups.append(word.lstrip("-") if word.startswith("-") else word)
            index += 1
    return groups


def label_specs(specs: Sequence[ServerSpec]) -> list[ServerSpec]:
    """Give every unlabelled spec a label naming what differs between the specs.

    Options that every evserver spec shares are left out of the labels (they do not tell the
    servers apart). Raises ``SpecError`` when two servers end up with the same label.
    """
    evservers = [spec for spec in specs if spec.kind == "evserver"]
    grouped = {id(spec): _option_groups(spec.extra_args) for spec in evservers}
    shared = set.intersection(*(set(g) for g in grouped.values())) if len(evservers) > 1 \
        else set()
    labelled: list[ServerSpec] = []
    for spec in specs:
        if spec.kind == "evserver" and not spec.label:
            words = [group for group in grouped[id(spec)] if group not in shared]
            spec = replace(spec, label=" ".join([spec.model, *words]))
        labelled.append(spec)
    seen: dict[str, ServerSpec] = {}
    for spec in labelled:
        if spec.label in seen:
            raise SpecError(f"--server {spec.text or spec.label!r}: the same server as "
                            f"{seen[spec.label].text or spec.label!r}; give one of them a label "
                            f"(LABEL=SPEC) or drop it")
        seen[spec.label] = spec
    return labelled


def check_specs(specs: Iterable[ServerSpec], timeout: float = START_TIMEOUT) -> None:
    """Let evserver itself judge each spec's options: start it on an empty folder, then stop it.

    evserver answers bad arguments with one line and exit status 2 before it binds anything;
    that line becomes the ``SpecError``. The servers are started together, so this costs about
    one interpreter start, not one per spec.
    """
    evservers = [spec for spec in specs if spec.kind == "evserver" and spec.extra_args]
    if not evservers:
        return
    with tempfile.TemporaryDirectory(prefix="evserver-check-") as folder:
        started: list[tuple[ServerSpec, subprocess.Popen[bytes], str]] = []
        try:
            if any("{rundir}/" + TLS_FOLDER in " ".join(s.extra_args) for s in evservers):
                make_tls_files(folder)  # the folder stands in for the run folder
            for spec in evservers:
                log_path = os.path.join(folder, f"{len(started)}.log")
                extra = tuple(arg.replace("{rundir}", folder) for arg in spec.extra_args)
                argv = evserver_argv(replace(spec, extra_args=extra), folder, "/-/stats")
                started.append((spec, _spawn(argv, log_path, spec.checkout), log_path))
            deadline = time.monotonic() + timeout
            waiting = list(started)
            while waiting and time.monotonic() < deadline:
                for spec, process, log_path in list(waiting):
                    if process.poll() == 2:
                        last = _log_tail(log_path, 1).strip() or "exit status 2"
                        raise SpecError(f"--server {spec.text or spec.label!r}: {last}")
                    if process.returncode is not None or _banner_port(log_path,
                                                                      EVSERVER_BANNER):
                        waiting.remove((spec, process, log_path))  # the real start will tell
                time.sleep(POLL_STEP)
        finally:
            for _, process, _ in started:
                stop_process(process)


# --- starting servers ------------------------------------------------------------------------

def nginx_binary() -> str | None:
    """nginx's path: Debian puts it in /usr/sbin, which a normal user's PATH often lacks."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def peer_missing(name: str) -> str | None:
    """None when peer ``name`` can run here, else what to install (one line)."""
    if name in ("nginx", NGINX_TLS) and nginx_binary() is None:
        return f"nginx is not installed ({INSTALL_HINTS['nginx']})"
    return None


def free_port() -> int:
    """A port free right now (for nginx, which cannot bind port 0 and tell us the result)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as log_file:
            text = log_file.read()[-16384:]
    except OSError:
        return ""
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def _wait_for(condition: Callable[[], Any], process: subprocess.Popen[bytes], what: str,
              log: str, timeout: float = START_TIMEOUT) -> Any:
    """Poll ``condition`` until it is true; the child exiting or the timeout is a StartError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if process.poll() is not None:
            break
        time.sleep(POLL_STEP)
    exited = process.returncode is not None
    stop_process(process)
    reason = f"exit status {process.returncode}" if exited else f"no answer in {timeout:g} s"
    tail = _log_tail(log) or "(empty)"
    raise StartError(f"{what} did not start ({reason}); the end of its log ({log}):\n"
                     + "\n".join("    " + line for line in tail.splitlines()),
                     reason, tail.splitlines()[-1], log)


def _banner_port(log_path: str, pattern: re.Pattern[str]) -> int | None:
    try:
        with open(log_path, errors="replace") as log:
            match = pattern.search(log.read(8192))
    except OSError:
        return None
    return int(match.group(match.lastindex or 1)) if match else None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def checkout_place(checkout: str) -> tuple[str | None, dict[str, str] | None]:
    """The folder and environment a server starts with: for a checkout, in it and with it first
    on ``PYTHONPATH`` (``python -m`` looks in the current folder first too), so its own evserver
    is imported, not the installed one; otherwise (None, None): the runner's own."""
    if not checkout:
        return None, None
    path = [checkout, *filter(None, [os.environ.get("PYTHONPATH")])]
    return checkout, {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _spawn(argv: list[str], log_path: str, checkout: str = "") -> subprocess.Popen[bytes]:
    """A child in its own session: a Ctrl-C at the terminal reaches the runner, which stops
    its children itself, in order, instead of every process at once."""
    cwd, env = checkout_place(checkout)
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)


def evserver_argv(spec: ServerSpec, docroot: str, stats_path: str) -> list[str]:
    argv = [sys.executable, "-m", "evserver", "0", "-b", HOST, "-d", docroot,
            "--model", spec.model, "--backlog", str(BACKLOG), "--stats-path", stats_path]
    if "--access-log" not in spec.extra_args:
        argv.append("-q")
    return argv + list(spec.extra_args)


def start(spec: ServerSpec, docroot: str, rundir: str, core: Iterable[int] | int | None,
          stats_path: str = "/-/stats", log_suffix: str = "") -> RunningServer:
    """Start one server, wait until it accepts, and return it; ``StartError`` if it does not.
    Its output goes to ``server-<label><log_suffix>.log`` in ``rundir``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.label)
    log_path = os.path.join(rundir, f"server-{safe}{log_suffix}.log")
    pin = cores.pin_prefix(core)
    if spec.kind == "evserver":
        extra = [arg.replace("{rundir}", rundir) for arg in spec.extra_args]
        argv = evserver_argv(replace(spec, extra_args=tuple(extra)), docroot, stats_path)
        pattern: re.Pattern[str] | None = EVSERVER_BANNER
        stats_url: str | None = stats_path
    elif spec.kind == "http.server":
        # -u: unbuffered, or the banner line waits in a pipe buffer and we never see the port.
        argv = [sys.executable, "-u", "-m", "http.server", "0", "-b", HOST, "-d", docroot]
        pattern, stats_url = HTTP_SERVER_BANNER, None
    elif spec.kind in ("nginx", NGINX_TLS):
        argv, nginx_port = _nginx_argv(docroot, rundir, spec.tls)
        pattern, stats_url = None, None
    else:
        raise ValueError(f"unknown server kind {spec.kind!r}")
    process = _spawn(pin + argv, log_path, spec.checkout)
    try:
        if pattern is not None:
            port = _wait_for(lambda: _banner_port(log_path, pattern), process, spec.label,
                             log_path)
        else:
            port = nginx_port
        _wait_for(lambda: _accepts(port), process, spec.label, log_path)
    except BaseException:  # StartError, or Ctrl-C while waiting: never leave the child behind
        stop_process(process)
        raise
    running = RunningServer(spec, process, port, log_path, pin + argv)
    if stats_url:
        running.stats_url = running.url(stats_url)
    return running


def tls_files(rundir: str) -> tuple[str, str]:
    """The run's certificate and key (``make_tls_files`` makes them)."""
    folder = os.path.join(rundir, TLS_FOLDER)
    return os.path.join(folder, "server-cert.pem"), os.path.join(folder, "server-key.pem")


def make_tls_files(rundir: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 in the run folder, shared by every HTTPS server
    of the run (so that nginx and evserver do the same handshake work)."""
    from tests.support.tls import make_certificate

    made = make_certificate(Path(rundir) / TLS_FOLDER)
    assert (str(made.cert), str(made.key)) == tls_files(rundir)
    return str(made.cert), str(made.key)


def nginx_config(docroot: str, prefix: str, port: int,
                 tls: tuple[str, str] | None = None) -> str:
    """The configuration of the nginx peer; with ``tls`` (certificate, key), over HTTPS."""
    with open(NGINX_TEMPLATE) as template_file:
        template = string.Template(template_file.read())
    # As root, nginx drops its worker to "nobody"; the docroot is world-readable, so that works,
    # but naming the user explicitly keeps the worker's identity obvious in `ps`.
    user_line = "user nobody nogroup;" if os.geteuid() == 0 else ""
    settings = "" if tls is None else string.Template(NGINX_TLS_SETTINGS).substitute(
        cert=tls[0], key=tls[1])
    return template.substitute(rundir=prefix, docroot=os.path.abspath(docroot), host=HOST,
                               port=port, backlog=BACKLOG, nofile=NOFILE,
                               worker_connections=NOFILE - 100, user_line=user_line,
                               listen_tls=" ssl" if tls else "", tls_settings=settings)


def _nginx_argv(docroot: str, rundir: str, tls: bool = False) -> tuple[list[str], int]:
    binary = nginx_binary()
    if binary is None:
        raise StartError(f"nginx is not installed ({INSTALL_HINTS['nginx']})")
    prefix = os.path.join(rundir, "nginx-tls" if tls else "nginx")
    for sub in ("logs", "tmp"):  # nginx opens <prefix>/logs/error.log before reading the config
        os.makedirs(os.path.join(prefix, sub), exist_ok=True)
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as out:
        out.write(nginx_config(docroot, prefix, port, tls_files(rundir) if tls else None))
    return [binary, "-p", prefix + "/", "-c", conf, "-e", prefix + "/error.log"], port
