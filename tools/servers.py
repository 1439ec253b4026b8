"""Start and stop the servers under test as pinned child processes.

What this module knows: the command line of each kind of server (evserver, ``python -m
http.server``, nginx), how each announces its port, and how to stop it. What it must not know:
what is measured -- a running server is a pid, a base URL and maybe a stats URL.

Invariants:
- Every server binds 127.0.0.1 (load never leaves the machine) and is pinned with ``taskset`` to
  the server core, so the load generator on the other core does not compete with it.
- A server's output goes to a log file in the run folder, never to a pipe nobody reads (a full
  pipe would stall a server that logs each request).
- ``stop()`` sends SIGTERM, waits a bounded time, then SIGKILLs; it is safe to call twice.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

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

HOST = "127.0.0.1"
TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
NGINX_TEMPLATE = os.path.join(TOOLS_DIR, "nginx.conf.template")

EVSERVER_BANNER = re.compile(r"on http://(\[[^\]]+\]|[^:/\s]+):(\d+)/")
HTTP_SERVER_BANNER = re.compile(r"Serving HTTP on \S+ port (\d+)")


@dataclass(frozen=True)
class ServerSpec:
    """What to run. ``kind`` is evserver, http.server or nginx; ``label`` names it in tables."""

    label: str
    kind: str
    model: str = ""
    extra_args: tuple[str, ...] = ()
    only_when_named: bool = False
    """True for a variant measured only in the cases that name it (the access-log twin)."""


@dataclass
class RunningServer:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    log_path: str
    stats_url: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        return self.process.returncode


def evserver_spec(model: str, *extra: str, label: str | None = None) -> ServerSpec:
    return ServerSpec(label or model, "evserver", model, tuple(extra))


def available_peers() -> dict[str, bool]:
    return {"http.server": True, "nginx": shutil.which("nginx") is not None}


def free_port() -> int:
    """A port free right now (for nginx, which cannot bind port 0 and tell us the result)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def pin_prefix(core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(core)]


def _wait_for(condition: Any, process: subprocess.Popen[bytes], what: str, log: str) -> Any:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        if process.poll() is not None:
            break
        time.sleep(POLL_STEP)
    tail = ""
    if os.path.exists(log):
        with open(log, errors="replace") as log_file:
            tail = log_file.read()[-2000:]
    process.kill()
    process.wait()
    raise RuntimeError(f"{what} did not start (exit {process.returncode}); log tail:\n{tail}")


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


def _spawn(argv: list[str], log_path: str, cwd: str | None = None) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=cwd)


def evserver_argv(spec: ServerSpec, docroot: str, stats_path: str) -> list[str]:
    argv = [sys.executable, "-m", "evserver", "0", "-b", HOST, "-d", docroot,
            "--model", spec.model, "--backlog", str(BACKLOG), "--stats-path", stats_path]
    if "--access-log" not in spec.extra_args:
        argv.append("-q")
    return argv + list(spec.extra_args)


def start(spec: ServerSpec, docroot: str, rundir: str, core: int | None,
          stats_path: str = "/-/stats") -> RunningServer:
    """Start one server, wait until it accepts, and return it."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.label)
    log_path = os.path.join(rundir, f"server-{safe}.log")
    pin = pin_prefix(core)
    if spec.kind == "evserver":
        extra = [arg.replace("{rundir}", rundir) for arg in spec.extra_args]
        spec_run = replace(spec, extra_args=tuple(extra))
        process = _spawn(pin + evserver_argv(spec_run, docroot, stats_path), log_path)
        port = _wait_for(lambda: _banner_port(log_path, EVSERVER_BANNER), process,
                         spec.label, log_path)
        server = RunningServer(spec, process, port, log_path, f"http://{HOST}:{port}{stats_path}")
    elif spec.kind == "http.server":
        # -u: unbuffered, or the banner line waits in a pipe buffer and we never see the port.
        argv = [sys.executable, "-u", "-m", "http.server", "0", "-b", HOST, "-d", docroot]
        process = _spawn(pin + argv, log_path)
        port = _wait_for(lambda: _banner_port(log_path, HTTP_SERVER_BANNER), process,
                         spec.label, log_path)
        server = RunningServer(spec, process, port, log_path)
    elif spec.kind == "nginx":
        server = _start_nginx(spec, docroot, rundir, pin, log_path)
    else:
        raise ValueError(f"unknown server kind {spec.kind!r}")
    _wait_for(lambda: _accepts(server.port), server.process, spec.label, log_path)
    return server


def nginx_config(docroot: str, prefix: str, port: int) -> str:
    with open(NGINX_TEMPLATE) as template_file:
        template = string.Template(template_file.read())
    # As root, nginx drops its worker to "nobody"; the docroot is world-readable, so that works,
    # but naming the user explicitly keeps the worker's identity obvious in `ps`.
    user_line = "user nobody nogroup;" if os.geteuid() == 0 else ""
    return template.substitute(rundir=prefix, docroot=os.path.abspath(docroot), host=HOST,
                               port=port, backlog=BACKLOG, nofile=NOFILE,
                               worker_connections=NOFILE - 100, user_line=user_line)


def _start_nginx(spec: ServerSpec, docroot: str, rundir: str, pin: list[str],
                 log_path: str) -> RunningServer:
    binary = shutil.which("nginx")
    if binary is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light)")
    prefix = os.path.join(rundir, "nginx")
    for sub in ("logs", "tmp"):  # nginx opens <prefix>/logs/error.log before reading the config
        os.makedirs(os.path.join(prefix, sub), exist_ok=True)
    port = free_port()
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as out:
        out.write(nginx_config(docroot, prefix, port))
    process = _spawn([*pin, binary, "-p", prefix + "/", "-c", conf, "-e", prefix + "/error.log"],
                     log_path)
    return RunningServer(spec, process, port, log_path)
