"""Errors that carry their HTTP status.

What this module knows: the statuses a malformed or unserviceable request earns (RFC 9110
section 15). What it must not know: who turns an error into a response. Exactly one place,
``evserver.protocol``, catches :class:`HTTPError`, answers with ``error.status`` and closes the
connection; nothing else inspects the error's class (no ``isinstance`` ladders).

An error carries only its status: its reason phrase is looked up in :mod:`evserver.http.status`,
the table the status line and the error page use, so the three can never name a status
differently.
"""

from evserver.http.status import reason_phrase


class HTTPError(Exception):
    """A request the server cannot accept. ``status`` is the response it deserves."""

    status = 400

    def __init__(self, detail: str = "") -> None:
        detail = detail or reason_phrase(self.status)
        super().__init__(detail)
        self.detail = detail

    @property
    def reason(self) -> str:
        """The reason phrase of ``status`` (RFC 9110 15), from the one table."""
        return reason_phrase(self.status)


class BadRequest(HTTPError):
    """RFC 9110 15.5.1: the request is malformed (syntax, framing, missing Host...)."""


class PayloadTooLarge(HTTPError):
    """RFC 9110 15.5.14: the body is larger than the server is willing to read."""

    status = 413


class URITooLong(HTTPError):
    """RFC 9110 15.5.15 / RFC 9112 3: the request line is longer than the limit."""

    status = 414


class ExpectationFailed(HTTPError):
    """RFC 9110 15.5.18: an Expect value other than 100-continue."""

    status = 417


class HeadersTooLarge(HTTPError):
    """RFC 6585 5: the head (or the number of fields) is larger than the limit."""

    status = 431


class NotImplementedCoding(HTTPError):
    """RFC 9112 6.1: a transfer coding the server does not understand."""

    status = 501


class VersionNotSupported(HTTPError):
    """RFC 9110 15.6.6: a major HTTP version other than 1."""

    status = 505
