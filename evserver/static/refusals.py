"""How the file handler says no: the one exception its helpers raise, and the errno table.

What this module knows: that a request the handler cannot serve ends in an error status (with, at
times, a field the status requires), and which status each filesystem error means. What it must
not know: how the error page looks or how a response is built; the handler's entry
(:meth:`evserver.static.handler.StaticHandler.__call__`) is the one place that catches a
:class:`Refusal` and turns it into the error response.

Invariants: a ``Refusal`` is an answer for the client (a bad path, a missing file, a range nobody
can satisfy), never a bug, so it carries no message; the one errno table below is the only place
an ``OSError`` becomes a status, and an errno it does not hold is a 500 with one log line (the
only refusal that is logged: the server, not the client, has a problem).
"""

from __future__ import annotations

import errno
import logging
from typing import Final

_log = logging.getLogger("evserver.static")  # the package's logger: operators filter by it


class Refusal(Exception):
    """The request is answered with the error page of ``status``.

    ``fields`` are serialized field lines sent before the page's own, for the statuses that
    require one (RFC 9110 15.5.17: a 416 carries ``Content-Range``). ``missing`` says the path
    names nothing at all (no such file, or a symlink leading out of the root, which is answered
    as if there were none), as opposed to something that exists and is refused: only a missing
    path may be answered by a fallback page.
    """

    def __init__(self, status: int, fields: bytes = b"", *, missing: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.fields = fields
        self.missing = missing


_STATUS_FOR_ERRNO: Final = {
    errno.ENOENT: 404,
    errno.ENOTDIR: 404,
    errno.ENAMETOOLONG: 404,
    errno.ENXIO: 404,  # a socket file, or a device without a driver: not a regular file anyway
    errno.EACCES: 403,
    errno.EPERM: 403,
    errno.ELOOP: 403,  # a symlink loop, or O_NOFOLLOW meeting a symlink
    # Out of descriptors or memory: the server is overloaded, not broken, and the client may
    # retry (RFC 9110 15.6.4). No log line per request: the accept loop already says it once.
    errno.EMFILE: 503,
    errno.ENFILE: 503,
    errno.ENOMEM: 503,
}
"""The one errno -> status table (nginx's static module). Anything else is 500 plus a log line."""


_MISSING_ERRNOS: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})
"""The errors that mean "no such file" (not "a file you may not have"): see ``Refusal.missing``."""


def refusal_for_os_error(error: OSError, fs_path: str) -> Refusal:
    """The refusal that answers ``error`` met while serving ``fs_path`` (to be raised)."""
    status = _STATUS_FOR_ERRNO.get(error.errno or 0)
    if status is None:
        _log.error("cannot serve %r: %s", fs_path, error)
        return Refusal(500)
    return Refusal(status, missing=error.errno in _MISSING_ERRNOS)
