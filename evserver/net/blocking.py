"""Blocking send helpers: put a list of body items on a blocking socket, in order, completely.

What this module knows: sockets, file descriptors, ``os.sendfile`` and ``os.pread``, and the
shape of :mod:`evserver.bodies` (an item is ``bytes`` or a :class:`~evserver.bodies.FileRegion`).
What it must not know: HTTP, the protocol, servers, threads. The threaded and iterative models
(``evserver.drivers.blocking``) send with it; the evented model has its own non-blocking transport.

"Blocking" here means what Python means by it: a socket with a timeout (``settimeout(t)``) or none
(``settimeout(None)``). With a timeout, CPython keeps the descriptor non-blocking and waits with
``poll`` inside ``send``; ``os.sendfile`` knows nothing of that, so it may raise
``BlockingIOError``, and we wait for writability ourselves, with the socket's own timeout.
Without a Python timeout the descriptor is truly blocking and a wait is bounded by the kernel's
``SO_SNDTIMEO`` if the caller set one (the blocking servers do: it saves the ``poll`` CPython
makes before every call on a socket with a timeout); a send or sendfile that then fails with
``EAGAIN`` has made no progress for that long, and is reported as ``TimeoutError``.

Invariants:

- Items go out strictly in order; consecutive ``bytes`` items are sent together (one gathering
  ``sendmsg``, or one ``send`` of their join), so a response head and its body leave in one
  system call (and one TCP segment: with TCP_NODELAY, two small writes would cost two segments).
- A file region is sent completely or an exception is raised: if the file ends before the
  region does (it shrank under us), :class:`FileShrankError` aborts the connection. A short body
  would desynchronise the client's framing, so never pad and never stop silently.
- Every timeout is "no progress for that long" (the socket's timeout applies to each wait, not to
  the whole body): a 1 GiB download over a slow but steady link is not a timeout; a client that
  reads nothing is.
- :func:`send_each` is the teaching switch ``--split-writes``: every item in a call of its own
  (no gathering, no join, no ``MSG_MORE``), so a head and its body are two writes.
- When sending fails, the exception tells how many of the items' bytes were never sent
  (:func:`unsent_bytes`, for the access log): what went out before the failure counts as sent,
  to the byte, whether it came from a file region (sendfile or pread) or from bytes in memory
  (a head and a large cached body half sent).
- Every file region handed to :func:`send_items` or :func:`send_each` is released (its
  descriptor closed when it owns it), whether it was sent, half sent or never reached because
  of an error.
"""

from __future__ import annotations

import os
import select
import socket
import struct

from evserver.bodies import GATHER_LIMIT, FileRegion, Item, release_all, unsent_parts
from evserver.net.sendfile import (
    FALLBACK_CHUNK_SIZE,
    HAVE_SENDFILE,
    MAX_SENDFILE_COUNT,
    MSG_MORE,
    SENDFILE_UNSUPPORTED_ERRNOS,
)

TIMEVAL = struct.Struct("@ll")
"""struct timeval as SO_RCVTIMEO/SO_SNDTIMEO want it: seconds and microseconds, native longs
(Linux; on little-endian BSD/macOS, whose tv_usec is an int, the same bytes read the same)."""


class FileShrankError(ConnectionAbortedError):
    """The file ended before the region did: the connection must be aborted, not finished short."""


_UNSENT = "evserver_unsent_bytes"
"""The attribute a failed send's exception carries: the items' bytes never sent."""

_PART_SENT = "evserver_part_sent"
"""The attribute :func:`send_region`, :func:`send_run` and :func:`send_bytes` add to their
exception: the bytes of the region or run they were given that went out before the failure."""


def unsent_bytes(error: BaseException) -> int | None:
    """How many bytes of the items :func:`send_items` or :func:`send_each` failed to send."""
    unsent = getattr(error, _UNSENT, None)
    return unsent if isinstance(unsent, int) else None


def note_unsent(error: OSError, items: list[Item], sent: int) -> None:
    """Mark ``error`` with what was not sent of ``items``, of which ``sent`` bytes (whole items)
    and what the failing region or run got through (:func:`note_part_sent`) went out."""
    total = sum(item.count if isinstance(item, FileRegion) else len(item) for item in items)
    sent += getattr(error, _PART_SENT, 0)
    setattr(error, _UNSENT, max(0, total - sent))


def note_part_sent(error: OSError, count: int) -> None:
    """Mark ``error`` with the ``count`` bytes of a region or run that went out before it (a
    sender of its own, such as TLS's, tells :func:`note_unsent` this way)."""
    setattr(error, _PART_SENT, count + getattr(error, _PART_SENT, 0))


def send_items(sock: socket.socket, items: list[Item], use_sendfile: bool = True) -> int:
    """Send every item, in order; release every file region. Return the bytes sent by sendfile.

    Raises ``OSError`` (``TimeoutError`` when the peer read nothing for the socket's timeout,
    :class:`FileShrankError`, ``BrokenPipeError``...): the caller then drops the connection.
    """
    via_sendfile = 0
    pending: list[bytes] = []
    sent = 0  # bytes of the items wholly sent before a region (only counted there)
    try:
        for item in items:
            if isinstance(item, FileRegion):
                if pending:
                    send_run(sock, pending, MSG_MORE)
                    sent += sum(map(len, pending))
                    pending = []
                via_sendfile += send_region(sock, item, use_sendfile)
                sent += item.count
            else:
                pending.append(item)
        if pending:
            send_run(sock, pending)
    except OSError as error:
        note_unsent(error, items, sent)
        raise
    finally:
        release_all(items)
    return via_sendfile


def send_each(sock: socket.socket, items: list[Item], use_sendfile: bool = True) -> int:
    """:func:`send_items` for the teaching switch ``--split-writes``: each item in its own call
    (``send``, or ``sendfile`` for a region), never gathered, joined or corked with ``MSG_MORE``.
    Returns the bytes sent by sendfile; raises and releases as :func:`send_items` does."""
    via_sendfile = 0
    sent = 0
    try:
        for item in items:
            if isinstance(item, FileRegion):
                via_sendfile += send_region(sock, item, use_sendfile)
                sent += item.count
            else:
                send_bytes(sock, item)
                sent += len(item)
    except OSError as error:
        note_unsent(error, items, sent)
        raise
    finally:
        release_all(items)
    return via_sendfile


def send_run(sock: socket.socket, run: list[bytes], flags: int = 0) -> None:
    """Send consecutive byte strings completely, with one system call when the socket has room.

    Speed: a head and a large cached body go out with one ``sendmsg`` that gathers them (joining
    them first would copy the body); many small pieces are joined.
    """
    if len(run) == 1:
        send_bytes(sock, run[0], flags)
        return
    if len(run) > GATHER_LIMIT:
        send_bytes(sock, b"".join(run), flags)
        return
    try:
        sent = sock.sendmsg(run, (), flags)
    except BlockingIOError:  # a blocking socket's SO_SNDTIMEO expired with nothing sent
        raise TimeoutError("peer read nothing for the send timeout") from None
    for part in unsent_parts(run, sent):
        try:
            send_bytes(sock, part, flags)
        except OSError as error:
            setattr(error, _PART_SENT, sent + getattr(error, _PART_SENT, 0))
            raise
        sent += len(part)


def send_bytes(sock: socket.socket, data: bytes | memoryview, flags: int = 0) -> None:
    """Send all of ``data``. Each ``send`` waits at most the socket's timeout for room. On
    failure the exception tells how much of ``data`` went out (see :func:`unsent_bytes`)."""
    sent = 0
    try:
        sent = sock.send(data, flags)
        if sent == len(data):  # the common case: the socket buffer took it all at once
            return
        view = memoryview(data)[sent:]
        while view:
            count = sock.send(view, flags)
            sent += count
            view = view[count:]
    except BlockingIOError:  # a blocking socket's SO_SNDTIMEO expired with nothing sent
        timeout = TimeoutError("peer read nothing for the send timeout")
        setattr(timeout, _PART_SENT, sent)
        raise timeout from None
    except OSError as error:
        setattr(error, _PART_SENT, sent)
        raise


def send_region(sock: socket.socket, region: FileRegion, use_sendfile: bool = True) -> int:
    """Send ``region.count`` bytes of ``region.fd`` from ``region.offset``; return how many of them
    went through ``os.sendfile`` (the rest, if any, through pread+send). Does not release it.
    On failure the exception tells how much of the region went out (see :func:`unsent_bytes`)."""
    offset = region.offset
    end = offset + region.count
    try:
        if use_sendfile and HAVE_SENDFILE:
            out_fd = sock.fileno()
            while offset < end:
                try:
                    sent = os.sendfile(out_fd, region.fd, offset,
                                       min(end - offset, MAX_SENDFILE_COUNT))
                except BlockingIOError:
                    if sock.gettimeout() is None:  # blocking: SO_SNDTIMEO expired, no progress
                        raise TimeoutError("peer read nothing for the send timeout") from None
                    wait_writable(sock)  # a socket with a timeout has a non-blocking descriptor
                    continue
                except OSError as error:
                    if error.errno in SENDFILE_UNSUPPORTED_ERRNOS and offset == region.offset:
                        break  # this pair of descriptors cannot sendfile: read and send instead
                    raise
                if sent == 0:
                    raise FileShrankError(f"fd {region.fd} ended at offset {offset}, "
                                          f"{end - offset} bytes short of its region")
                offset += sent
        via_sendfile = offset - region.offset
        while offset < end:
            chunk = os.pread(region.fd, min(end - offset, FALLBACK_CHUNK_SIZE), offset)
            if not chunk:
                raise FileShrankError(f"fd {region.fd} ended at offset {offset}, "
                                      f"{end - offset} bytes short of its region")
            send_bytes(sock, chunk)
            offset += len(chunk)
    except OSError as error:
        # pread's fallback: send_bytes tells what went out of the chunk it was sending
        setattr(error, _PART_SENT, offset - region.offset + getattr(error, _PART_SENT, 0))
        raise
    return via_sendfile


def wait_writable(sock: socket.socket) -> None:
    """Wait until ``sock`` can take more bytes, at most its timeout; else raise ``TimeoutError``.

    ``poll``, not ``select``: a threaded server holds thousands of sockets, and ``select`` cannot
    watch a descriptor numbered 1024 or above. An error or hang-up also ends the wait; the next
    send then raises it.
    """
    timeout = sock.gettimeout()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLOUT)
    milliseconds = None if timeout is None else max(0, round(timeout * 1000 + 0.5))
    if not poller.poll(milliseconds):
        raise TimeoutError(f"peer read nothing for {timeout} s")
