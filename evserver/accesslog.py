"""Access log lines in the Common or Combined Log Format.

What this module knows: the two formats (Apache's ``%h %l %u %t "%r" %>s %b`` and, for combined,
``"%{Referer}i" "%{User-agent}i"``) and how to write lines cheaply. What it must not know: who
produces the records, threads (the threaded model wraps calls in a lock), the reactor.

Cost on the hot path: per response one call with five arguments, one small key tuple, one
dictionary lookup and one list append (no stream call): lines are memoised for the current
second, keyed by everything they show but the time, so a line repeated within a second (the
common case under load) is neither formatted nor escaped again. The timestamp is
formatted once per second and reused while the record's time falls in that second (two float
comparisons, no call); a string is escaped only when a cheap check (``isascii``,
``isprintable``, no ``"`` or ``\\``) finds something to escape. The lines waiting are joined
and written with one ``write`` when the server calls ``flush()`` (the evented loop when
:data:`FLUSH_LINES` are waiting or about once a second, blocking drivers about once a second) or
when :data:`MAX_PENDING_LINES` pile up. Escaping follows nginx: ``"``, ``\\``, non-printable and
non-ASCII characters become ``\\xHH`` so a client cannot forge log lines.

Several processes, one log (worker processes): lines from different workers never interleave
within a line, because every ``write`` holds whole lines only and the kernel keeps each write in
one piece. A file is opened with ``O_APPEND`` by each worker: every write lands at the end of the
file, whole, whatever the others write (Linux appends under the file's lock), and a flush is one
``write``. A pipe or a socket (standard error under a supervisor, ``2>&1 | tee``) keeps a write in
one piece only up to ``PIPE_BUF`` bytes (POSIX), so a flush there is cut at line ends into writes
of at most that much (a single line longer than that goes alone). A terminal, or a file the shell
opened for standard error (``2>log``, shared by every worker), takes each flush in one ``write``.
No Python buffer sits in between: ``flush()`` hands the bytes to ``os.write`` itself.

When writing fails (a full disk, ``ENOSPC``; a quota; an I/O error) the server goes on: the
lines of that flush are dropped and counted (``lines_lost``, shown on the stats page), one
warning says so, and the next flush simply tries again; the first one that succeeds says how
many lines were lost meanwhile. Lines are not kept for a later retry: memory stays bounded
however long the disk stays full. A short write before the failure may leave part of one line
in the file.

Log rotation (logrotate's ``postrotate``, as with nginx and gunicorn): :meth:`AccessLog.reopen`
only asks for the file to be opened again by name; the next flush does it, then writes. So a
signal handler may call it whatever the server is doing (between two lines, in the middle of a
flush, on another thread), and the rotated file gets every line written before the signal.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import sys
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # only for annotations: the log reads a request, it does not need the parser
    from evserver.http.events import Request

log = logging.getLogger("evserver.accesslog")

LOG_FORMATS = ("common", "combined")

MAX_PENDING_LINES = 4096
"""Lines kept in memory before they are written whatever the server's flush policy (about
300 KiB of text): bounds the memory a burst can take."""

LOG_FLUSH_SECONDS = 1.0
"""Lines wait at most about this long before they are written, in every model (one write per
second, not one per request; nginx's ``access_log ... flush=`` does the same job)."""

FLUSH_LINES = 512
"""Lines waiting at which a driver that batches (the evented loop) flushes at once instead of
waiting for its periodic flush: about 40 KiB, one write of a good size."""

MAX_MEMO_LINES = 1024
"""Distinct lines remembered per second (at most a few hundred KiB with their keys): the hot
(client, request) pairs of a busy second; past it lines are formatted each time."""

ATOMIC_WRITE_BYTES = select.PIPE_BUF
"""The largest write a pipe keeps in one piece when several processes write to it (POSIX's
PIPE_BUF: 4096 bytes on Linux); a stream socket gives no more."""

LOG_FILE_MODE = 0o666
"""Permissions of a new log file before the umask, as ``open(..., "a")`` gives."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _is_plain(text: str) -> bool:
    """True when ``text`` needs no escaping: printable ASCII without ``"`` or ``\\``."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _escape(text: str) -> str:
    if _is_plain(text):
        return text  # the common case: nothing to do
    return "".join(ch if ch.isprintable() and ch not in '"\\' and ord(ch) < 0x7F
                   else f"\\x{ord(ch):02X}" if ord(ch) < 0x100 else ch for ch in text)


class LineStream(Protocol):
    """Where lines go: a text stream (``io.StringIO`` in tests) or :class:`LineWriter`."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class LineWriter:
    """Whole lines to a file descriptor with ``os.write``: one write per call for a file or a
    terminal, writes of at most ``ATOMIC_WRITE_BYTES`` cut at line ends for a pipe or a socket
    (see the module docstring). Text is UTF-8; what cannot be encoded is backslash-escaped."""

    def __init__(self, fd: int, owns_fd: bool = False) -> None:
        self.fd = fd
        self._owns_fd = owns_fd
        mode = os.fstat(fd).st_mode
        self.piece_limit = (ATOMIC_WRITE_BYTES if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
                            else None)
        """The most bytes one write may carry, or None for no limit."""

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "backslashreplace")
        limit = self.piece_limit
        if limit is None or len(data) <= limit:
            self._write_all(data)
            return len(text)
        view = memoryview(data)
        start = 0
        while start < len(data):
            end = len(data)
            if end - start > limit:
                end = data.rfind(b"\n", start, start + limit) + 1
                if end <= start:  # one line longer than the limit: it goes alone
                    end = data.find(b"\n", start) + 1 or len(data)
            self._write_all(view[start:end])
            start = end
        return len(text)

    def _write_all(self, data: bytes | memoryview) -> None:
        """Write it all: more than one write only after a short write (a full disk, a signal),
        where nothing could keep it whole anyway."""
        while data:
            data = data[os.write(self.fd, data):]

    def flush(self) -> None:
        """Nothing waits here: every ``write`` reached the kernel."""

    def close(self) -> None:
        if self._owns_fd:
            self._owns_fd = False
            os.close(self.fd)


class CannotOpenLog(OSError):
    """The access log file cannot be opened (at start-up: the server does not start)."""

    def __init__(self, destination: str, error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), destination)
        self.destination = destination

    def __str__(self) -> str:
        return f"cannot open the access log {self.destination!r}: {self.strerror}"


def open_log_file(destination: str) -> LineWriter:
    """A writer appending to the file ``destination`` (created if needed)."""
    try:
        fd = os.open(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     LOG_FILE_MODE)
    except OSError as error:
        raise CannotOpenLog(destination, error) from None
    return LineWriter(fd, owns_fd=True)


class AccessLog:
    """Formats records and writes them to a stream. Not thread-safe by itself."""

    def __init__(self, stream: LineStream, log_format: str = "common", owns_stream: bool = False,
                 destination: str | None = None):
        if log_format not in LOG_FORMATS:
            raise ValueError(f"unknown log format {log_format!r} (choose common or combined)")
        self._stream = stream
        self.destination = destination
        """The file name :meth:`reopen` opens again (None: a stream that cannot be reopened)."""
        self._reopen_wanted = False
        self.lines_lost = 0
        """Lines dropped because writing failed, since the start."""
        self._failing = False
        """The last write failed (a warning was given; the next success says how many lines
        were lost meanwhile)."""
        self._lost_since_warning = 0
        self._combined = log_format == "combined"
        self._owns_stream = owns_stream
        self._second = -1
        self._second_end = -1.0
        """The stamp below holds for times in ``[_second, _second_end)``."""
        self._stamp = ""
        self._lines: list[str] = []
        self._memo: dict[tuple[object, ...], str] = {}
        """This second's lines by what they show besides the time (see ``__call__``)."""

    @classmethod
    def open(cls, destination: str | None, log_format: str = "common") -> AccessLog | None:
        """``"-"`` is standard error, ``None`` no log, anything else a file appended to."""
        if destination is None:
            return None
        if destination == "-":
            # sys.stderr is line-buffered (one write per line); writing its descriptor directly
            # lets flush() decide when lines go out.
            sys.stderr.flush()
            return cls(LineWriter(sys.stderr.fileno()), log_format, owns_stream=True)
        return cls(open_log_file(destination), log_format, owns_stream=True,
                   destination=destination)

    def _timestamp(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            t = time.localtime(second)
            offset = t.tm_gmtoff // 60
            sign = "+" if offset >= 0 else "-"
            self._stamp = (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
                           f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
                           f"{sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}")
            self._second = second
            self._second_end = second + 1.0
        return self._stamp

    def record(self, peer: str, timestamp: float, request: Request | None, status: int,
               body_bytes: int) -> None:
        """Format one response's line (newline included) and queue it for ``flush()``.

        The arguments are the protocol's :data:`~evserver.protocol.AccessLogger` call. Speed:
        this runs per response. Lines are memoised for the current second (the stamp is the
        only part that changes with time), keyed by everything else they show: under load most
        responses repeat a line already made this second, and a dictionary hit is cheaper than
        formatting and escaping again. The key's strings are the parser's own (its request-line
        memo hands out the same objects), so hashing them costs nothing after the first time.
        """
        if not self._second <= timestamp < self._second_end:
            self._timestamp(timestamp)
            self._memo.clear()
        if request is None:
            key: tuple[object, ...] = (peer, status, body_bytes)
        elif self._combined:
            headers = request.headers
            key = (peer, request.method, request.target, request.version, status, body_bytes,
                   headers.get("referer", "-"), headers.get("user-agent", "-"))
        else:
            key = (peer, request.method, request.target, request.version, status, body_bytes)
        lines = self._lines
        line = self._memo.get(key)
        if line is None:
            line = self._format(peer, request, status, body_bytes)
            if len(self._memo) < MAX_MEMO_LINES:
                self._memo[key] = line
        lines.append(line)
        if len(lines) >= MAX_PENDING_LINES:
            self.flush()

    __call__ = record
    """A log is callable as well. The servers hand each protocol the bound method ``record``,
    made once: Python calls a bound method by the fast path, while calling an instance goes
    through a lookup of ``__call__`` and an argument tuple on every response."""

    def _format(self, peer: str, request: Request | None, status: int, body_bytes: int) -> str:
        size = str(body_bytes) if body_bytes else "-"
        if request is None:  # the request could not be parsed: nginx shows "-" too
            request_line, referer, user_agent = "-", "-", "-"
        else:
            request_line = request.request_line
            referer = request.headers.get("referer", "-")
            user_agent = request.headers.get("user-agent", "-")
        line = f'{peer} - - [{self._stamp}] "{_escape(request_line)}" {status} {size}'
        if self._combined:
            line += f' "{_escape(referer)}" "{_escape(user_agent)}"'
        return line + "\n"

    @property
    def pending(self) -> int:
        """Lines formatted and not yet written."""
        return len(self._lines)

    def reopen(self) -> None:
        """Open the file again by name at the next flush (log rotation; signal-safe)."""
        self._reopen_wanted = True

    def _reopen_now(self) -> None:
        self._reopen_wanted = False
        if self.destination is None or not self._owns_stream:
            return
        try:
            stream = open_log_file(self.destination)
        except CannotOpenLog as error:
            log.warning("cannot reopen the access log %s (%s); writing on to the old file",
                        self.destination, error.strerror)
            return
        old, self._stream = self._stream, stream
        old.close()

    def flush(self) -> None:
        """Write every waiting line with one ``write``, then flush the stream.

        A failure drops this flush's lines and counts them; it never reaches the caller (see
        the module docstring)."""
        if self._reopen_wanted:
            self._reopen_now()
        lines = self._lines
        if lines:
            text = "".join(lines)
            count = len(lines)
            lines.clear()
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError) as error:  # a closed or full log must not stop us
                self._lost(count, error)
                return
            if self._failing:
                self._failing = False
                log.warning("access log writable again: %d line(s) lost meanwhile",
                            self._lost_since_warning)

    def _lost(self, count: int, error: Exception) -> None:
        self.lines_lost += count
        if not self._failing:
            self._failing = True
            self._lost_since_warning = 0
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            log.warning("cannot write the access log (%s): dropping lines, counted in the "
                        "stats, until writing works again", reason)
        self._lost_since_warning += count

    def close(self) -> None:
        self.flush()
        if self._owns_stream:
            self._stream.close()
