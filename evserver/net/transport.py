"""The write side of one non-blocking socket: an ordered queue of bytes and file regions.

What this module knows: a non-blocking socket, ``send``, ``os.sendfile``, ``os.pread``, and the
:mod:`evserver.bodies` contract (an item is bytes or a :class:`~evserver.bodies.FileRegion` whose
descriptor it may own). What it must not know: HTTP (it never looks inside the bytes), selectors
(its owner watches for writable while ``pending_bytes`` is non-zero), timers.

The write path (the shape of asyncio's ``_SelectorSocketTransport.write``)::

    write(items)   queue empty: send the bytes at once -- the hot path, one system call for a
                   response head and its body (one send() when the protocol joined a small body
                   to its head, one gathering sendmsg() for a head and a large body); keep
                   whatever did not fit.
                   queue busy:  append (the socket is full; trying now would only fail).
    flush()        on writable: send queue items in order until one would block.

File regions go out with ``os.sendfile(sock, file, offset, count)`` with explicit offsets (never
``socket.sendfile()``, which refuses non-blocking sockets), resuming where the last call stopped.
A head followed by a region is sent with ``MSG_MORE`` so the kernel packs it with the first file
bytes. Where sendfile is unavailable (ENOSYS, EINVAL for files it cannot map) or switched off
(``use_sendfile=False``, the lab that measures what sendfile buys), regions are read with
``os.pread`` in ``FALLBACK_CHUNK_SIZE`` pieces (``region_chunk_size``) and sent as bytes.

The teaching switch ``--split-writes`` uses :class:`SplitWritesTransport` instead: every item
leaves in a ``send`` of its own (never gathered by ``sendmsg``, joined, or corked with
``MSG_MORE``), so a head and its body are two writes, as a naive server makes them. The driver
picks the class once per connection, so the default write path has no test for the switch.

Invariants:

- ``pending_bytes`` is exactly the bytes not yet handed to the kernel, file regions included;
  once closed, ``dropped_bytes`` is what it was then (never sent: the access log's truth).
- The queue never holds an empty item. Regions are tracked by a private cursor; the caller's
  ``FileRegion`` objects are never mutated.
- Every region the transport accepted is released (its descriptor closed, if it owns one) exactly
  once: when fully sent, or when the transport is closed or aborted with it still queued.
- ``BlockingIOError``/``InterruptedError`` mean "later". Any other ``OSError`` (EPIPE,
  ECONNRESET...) aborts this transport with a log line and sets ``closed``; it never propagates,
  so one dead peer cannot hurt the loop. A file that shrank under a region (sendfile or pread
  returns 0 early) aborts too: a response shorter than its Content-Length must not pass as whole.
"""

from __future__ import annotations

import errno
import logging
import os
import socket

from evserver.bodies import FileRegion, Item, release, unsent_parts
from evserver.net.sendfile import FALLBACK_CHUNK_SIZE, MSG_MORE, SENDFILE_UNSUPPORTED_ERRNOS
from evserver.stats import Stats

log = logging.getLogger("evserver.net")

QUIET_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                          errno.ENOTCONN, errno.ESHUTDOWN})
"""Peers vanish all the time; these are logged at debug level, anything else at info."""


class _RegionCursor:
    """How far a queued FileRegion has been sent."""

    __slots__ = ("fd", "left", "offset", "region")

    def __init__(self, region: FileRegion) -> None:
        self.region = region
        self.fd = region.fd
        self.offset = region.offset
        self.left = region.count


_Queued = bytes | memoryview | _RegionCursor


class Transport:
    """Non-blocking output for one socket, plus ``recv`` so its owner needs nothing else."""

    __slots__ = ("_close_when_drained", "_pending", "_queue", "_stats", "_use_sendfile",
                 "closed", "fd", "sock")

    _more = MSG_MORE
    """The flag a head just before a file region is sent with (0: sent alone). A class
    attribute, like every setting fixed per class: slots are per connection (this one and
    ``dropped_bytes``, now a property, were 16 bytes per idle connection)."""

    region_chunk_size = FALLBACK_CHUNK_SIZE
    """Bytes read per ``pread`` when a file region is not sent with ``sendfile`` (a subclass
    may read in other sizes: the TLS transport reads one TLS record's worth)."""

    def __init__(self, sock: socket.socket, *, use_sendfile: bool = True,
                 stats: Stats | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        # A list, not a deque: an empty deque takes 760 bytes (its first block), an empty
        # list 56, and this is per idle connection; the queue is a few items long at most, so
        # removing from its front costs next to nothing. None until the socket first refuses
        # bytes or a file region comes (``write``, ``_send_now``): a connection whose responses
        # each went out in one send never makes the list, which saves 64 bytes per idle
        # connection. Reading it needs no test (None, like an empty list, is false).
        self._queue: list[_Queued] = None  # type: ignore[assignment]
        self._pending = 0
        self._use_sendfile = use_sendfile
        self._stats = stats
        self._close_when_drained = False
        self.closed = False
        """True once the socket is closed (by close(), abort(), or an error)."""

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Transport fd={self.fd} {state} pending={self._pending}>"

    @property
    def pending_bytes(self) -> int:
        """Bytes queued and not yet handed to the kernel, file regions included (0 once closed:
        what was left then is ``dropped_bytes``)."""
        return 0 if self.closed else self._pending

    @property
    def dropped_bytes(self) -> int:
        """Bytes queued but never sent when the socket was closed (0 while it is open)."""
        return self._pending if self.closed else 0

    # -- reading --------------------------------------------------------------------------

    def recv(self, size: int) -> bytes | None:
        """Up to ``size`` bytes; ``None`` if none are ready; ``b""`` at EOF or after an error."""
        try:
            return self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            self._fail(error, "recv")
            return b""

    # -- writing --------------------------------------------------------------------------

    def write(self, items: list[Item]) -> None:
        """Send ``items`` in order: as much as possible now, the rest when writable."""
        if self.closed:
            for item in items:
                release(item)
            return
        queue = self._queue
        # Speed: the keep-alive hot paths, with nothing queued: one response whose head and small
        # body are one bytes object is one send() with no queue, join or loop; a head and a large
        # cached body are one sendmsg() that gathers them without a copy.
        if not queue and items and type(items[0]) is bytes and (
                len(items) == 1 or (len(items) == 2 and type(items[1]) is bytes)):
            self._send_now(items)  # type: ignore[arg-type]  # checked: bytes only
            return
        if queue is None:
            queue = self._queue = []
        busy = bool(queue)  # then the socket is full and its owner waits for writable
        run: list[bytes] = []  # consecutive bytes items, coalesced into one send
        for item in items:
            if type(item) is FileRegion:
                if run:
                    self._enqueue_bytes(run)
                    run = []
                if item.count > 0:
                    queue.append(_RegionCursor(item))
                    self._pending += item.count
                else:
                    release(item)
            elif item:
                run.append(item)  # type: ignore[arg-type]  # not a FileRegion: bytes
        if run:
            self._enqueue_bytes(run)
        if not busy:
            self.flush()

    def _send_now(self, parts: list[bytes]) -> None:
        """Send ``parts`` with the queue empty (one part: ``send``; two: one gathering
        ``sendmsg``); queue what the socket did not take, as views sharing the bytes."""
        try:
            if len(parts) == 1:
                sent = self.sock.send(parts[0])
                if sent == len(parts[0]):
                    return  # the common case: the socket took it all
            else:
                sent = self.sock.sendmsg(parts)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self._fail(error, "send")
            return
        for part in unsent_parts(parts, sent):  # the socket buffer is full
            if self._queue is None:
                self._queue = []
            self._queue.append(part)
            self._pending += len(part)

    def _enqueue_bytes(self, run: list[bytes]) -> None:
        data = run[0] if len(run) == 1 else b"".join(run)
        self._queue.append(data)
        self._pending += len(data)

    def flush(self) -> None:
        """Send queued items until the socket would block or the queue is empty."""
        queue = self._queue
        sock = self.sock
        while queue:
            item = queue[0]
            if isinstance(item, _RegionCursor):
                if not self._send_region(item):
                    return
                continue
            try:
                if self._more and len(queue) > 1 and type(queue[1]) is _RegionCursor:
                    sent = sock.send(item, self._more)  # pack the head with the file's first bytes
                else:
                    sent = sock.send(item)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self._fail(error, "send")
                return
            self._pending -= sent
            if sent < len(item):
                # Partial: the socket buffer is full. A memoryview slice shares the bytes.
                queue[0] = memoryview(item)[sent:]
                return
            del queue[0]
        if self._close_when_drained:
            self._close_now()

    def _send_region(self, cursor: _RegionCursor) -> bool:
        """Send from the region at the head of the queue; True to go on with the queue."""
        if self._use_sendfile:
            try:
                sent = os.sendfile(self.fd, cursor.fd, cursor.offset, cursor.left)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as error:
                if error.errno not in SENDFILE_UNSUPPORTED_ERRNOS:
                    self._fail(error, "sendfile")
                    return False
                log.debug("sendfile unavailable (%s); using pread + send", error)
                self._use_sendfile = False
                return True
            if sent == 0:
                self._file_shrank(cursor)
                return False
            cursor.offset += sent
            cursor.left -= sent
            self._pending -= sent
            if self._stats is not None:
                self._stats.sendfile_bytes += sent
            if cursor.left:
                return False  # partial: the socket buffer is full
            del self._queue[0]
            release(cursor.region)
            return True
        return self._read_region_chunk(cursor)

    def _read_region_chunk(self, cursor: _RegionCursor) -> bool:
        """The fallback: move the next chunk of the region into the queue as bytes."""
        try:
            chunk = os.pread(cursor.fd, min(self.region_chunk_size, cursor.left), cursor.offset)
        except OSError as error:
            self._fail(error, "pread")
            return False
        if not chunk:
            self._file_shrank(cursor)
            return False
        cursor.offset += len(chunk)
        cursor.left -= len(chunk)
        queue = self._queue
        if not cursor.left:
            del queue[0]
            release(cursor.region)
        queue.insert(0, chunk)  # pending_bytes is unchanged: the bytes only changed form
        return True

    def _file_shrank(self, cursor: _RegionCursor) -> None:
        log.warning("fd %d: file shrank under a response (%d bytes missing at offset %d); "
                    "aborting the connection", self.fd, cursor.left, cursor.offset)
        self.abort()

    # -- ending ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close once everything queued has been sent (at once if nothing is)."""
        if self.closed:
            return
        if self._queue:
            self._close_when_drained = True
        else:
            self._close_now()

    def abort(self) -> None:
        """Close now, dropping (and releasing) whatever is queued."""
        if not self.closed:
            self._close_now()

    def _close_now(self) -> None:
        self.closed = True  # from now on ``_pending`` counts the bytes dropped
        queue = self._queue
        while queue:
            item = queue.pop(0)
            if type(item) is _RegionCursor:
                release(item.region)
        try:
            self.sock.close()
        except OSError:
            pass

    def _fail(self, error: OSError, operation: str) -> None:
        level = logging.DEBUG if error.errno in QUIET_ERRNOS else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "fd %d: %s failed (%s); aborting the connection",
                    self.fd, operation, error)
        self.abort()


class SplitWritesTransport(Transport):
    """A teaching switch (``--split-writes``): each item in a ``send`` of its own.

    A head and its body leave as two writes: never gathered into one ``sendmsg``, never joined
    into one buffer, never corked together with ``MSG_MORE``. With ``TCP_NODELAY`` off, the
    second write of a small response then waits for the client's delayed ACK of the first.
    """

    __slots__ = ()

    _more = 0

    def _send_now(self, parts: list[bytes]) -> None:
        """Send each part with its own ``send``; queue from the first the socket did not take."""
        for index, part in enumerate(parts):
            try:
                sent = self.sock.send(part)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as error:
                self._fail(error, "send")
                return
            if sent < len(part):
                if self._queue is None:
                    self._queue = []
                for rest in unsent_parts(parts[index:], sent):
                    self._queue.append(rest)
                    self._pending += len(rest)
                return

    def _enqueue_bytes(self, run: list[bytes]) -> None:
        """Queue each bytes item as it is: ``flush`` then sends them one ``send`` each."""
        for data in run:
            self._queue.append(data)
            self._pending += len(data)
