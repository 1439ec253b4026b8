"""The contract between the handler and the transport: a body is bytes, or a region of an open file.

What this module knows: that a response is a status, a block of header lines and a body made of
``bytes`` and :class:`FileRegion` pieces. What it must not know: sockets, HTTP parsing, files'
names. The handler (``evserver.static``) opens files and describes regions; only the transport
(``evserver.net``) ever calls ``os.sendfile`` on them; nobody else reads a file descriptor.

Ownership of descriptors (the invariant that keeps them from leaking): a region whose
``close_after`` is true owns its descriptor. Whoever consumes the region (the transport when it
has sent it or drops it, the protocol when it abandons a response) calls :func:`release`, which
closes it. Several regions may share one descriptor (multipart ranges); only the last of them
owns it.
"""

from __future__ import annotations

import os


class FileRegion:
    """``count`` bytes of the open file ``fd`` starting at ``offset``.

    A sender that finds fewer bytes than promised (the file shrank under us: ``sendfile`` or
    ``pread`` returns 0 early) must abort the connection, never pad or silently truncate.
    """

    __slots__ = ("close_after", "count", "fd", "offset")

    def __init__(self, fd: int, offset: int, count: int, close_after: bool = True) -> None:
        self.fd = fd
        self.offset = offset
        self.count = count
        self.close_after = close_after

    def __repr__(self) -> str:
        owner = ", owns fd" if self.close_after else ""
        return f"FileRegion(fd={self.fd}, offset={self.offset}, count={self.count}{owner})"


Item = bytes | FileRegion
"""What a protocol hands its driver to send: raw bytes, or a file region."""


def release(item: Item) -> None:
    """Close the descriptor an item owns, if any (idempotent for a given region)."""
    if isinstance(item, FileRegion) and item.close_after:
        item.close_after = False
        try:
            os.close(item.fd)
        except OSError:
            pass


def release_all(items: list[Item]) -> None:
    """Release every item of an abandoned list."""
    for item in items:
        release(item)


class Response:
    """What a handler returns.

    - ``status``: the status code.
    - ``fields``: the header lines, already serialized, each ending in CRLF (``b"Content-Type:
      text/html\\r\\nContent-Length: 12\\r\\n"``). They are bytes so a handler can cache them; the
      protocol adds the status line, ``Date``, ``Server`` and ``Connection`` around them.
    - ``body``: the pieces to send after the head, in order (empty for HEAD, 204, 304).
    - ``body_length``: the number of body bytes that will be sent (for the access log).
    - ``close``: the handler wants the connection closed after this response.
    """

    __slots__ = ("body", "body_length", "close", "fields", "status")

    def __init__(
        self,
        status: int,
        fields: bytes,
        body: tuple[Item, ...] | list[Item] = (),
        body_length: int = 0,
        close: bool = False,
    ) -> None:
        self.status = status
        self.fields = fields
        self.body = body
        self.body_length = body_length
        self.close = close

    def release(self) -> None:
        """Close any descriptor the body owns (used when a response is abandoned)."""
        for item in self.body:
            release(item)

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.body_length} body bytes)"


GATHER_LIMIT = 64
"""Most byte strings handed to one ``sendmsg`` (a gathered write, no copy into one buffer); a
longer run is joined instead. Far below Linux's IOV_MAX of 1024, and above what one batch of the
protocol produces in practice (a head and a body per response)."""


def unsent_parts(parts: list[bytes], sent: int) -> list[bytes | memoryview]:
    """What is left of ``parts`` after a gathered send that took ``sent`` bytes, in order.

    A part cut in the middle becomes a memoryview sharing its bytes (no copy); empty leftovers
    are dropped.
    """
    left: list[bytes | memoryview] = []
    for part in parts:
        size = len(part)
        if sent >= size:
            sent -= size
            continue
        left.append(memoryview(part)[sent:] if sent else part)
        sent = 0
    return left
