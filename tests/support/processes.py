"""Servers in child processes: ``python -m evserver`` started, found and stopped.

What this module knows: the command line and the banner's address, subprocesses, signals and
``/proc``. What it must not know: the server's code; it imports only the standard library, so
``tools/fuzz_server.py`` starts its target the same way the tests do.

A child is ready when its banner (the first stderr line that names the address) has been read:
the listener is bound and listening by then, so no sleep is needed before connecting. After the
banner a thread keeps reading stderr into :attr:`ServerProcess.stderr_lines`, or a chatty server
would block on a full pipe; :meth:`ServerProcess.stop` lets it read to the end first, so the
lines are complete once the child has stopped.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.support.procfs import open_fds
from tests.support.waiting import STOP_TIMEOUT

_BANNER_ADDRESS = re.compile(r" on https?://(\[[^\]]+\]|[^:/]+):(\d+)/")


class ServerDidNotStart(RuntimeError):
    """The child exited before its banner; the message holds its exit status and output."""


@dataclass
class ServerProcess:
    """A server running as ``python -m evserver`` in a child process."""

    process: subprocess.Popen[str]
    port: int
    root: Path
    banner: str
    stderr_lines: list[str] = field(default_factory=list)
    collector: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def open_fds(self) -> int:
        return open_fds(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the child and wait for it (killed if it outlives ``timeout``); its status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if self.collector is not None:  # the end of stderr (its last writer has exited)
                self.collector.join(STOP_TIMEOUT)
            if self.process.stderr:
                self.process.stderr.close()


def spawn_server(root: Path, *args: str, nofile: int | None = None,
                 wrapper: Sequence[str] = ()) -> ServerProcess:
    """Run ``python -m evserver 0 -b 127.0.0.1 -d ROOT ARGS...`` and wait for its banner.

    ``nofile`` lowers the child's RLIMIT_NOFILE before the server starts (set in the child
    itself: ``preexec_fn`` is unsafe in a process with threads); ``wrapper`` is a command
    prefix such as ``["setpriv", ...]``. Raises :class:`ServerDidNotStart` if the child exits
    before its banner.
    """
    server_args = ["0", "-b", "127.0.0.1", "-d", str(root), *args]
    if nofile is None:
        command = [sys.executable, "-m", "evserver", *server_args]
    else:
        code = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
                f"({nofile}, {nofile})); sys.argv = {['evserver', *server_args]!r}; "
                "runpy.run_module('evserver', run_name='__main__', alter_sys=True)")
        command = [sys.executable, "-c", code]
    process = subprocess.Popen([*wrapper, *command], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:  # the banner is the first line that names the address
        lines.append(line)
        match = _BANNER_ADDRESS.search(line)
        if match:
            collector = threading.Thread(target=_collect, args=(process.stderr, lines),
                                         daemon=True)
            collector.start()
            return ServerProcess(process, int(match.group(2)), root, line, lines, collector)
    process.wait()
    process.stderr.close()
    raise ServerDidNotStart(f"server exited ({process.returncode}): {''.join(lines)}")


def _collect(stream: IO[str], lines: list[str]) -> None:
    try:
        for line in stream:
            lines.append(line)
    except (OSError, ValueError):
        pass  # the stream was closed by stop()
