"""Reason phrases: the one table that the status line, the error pages and the errors read.

What this module knows: status codes and the reason phrase registered for each (RFC 9110 15,
and the IANA HTTP Status Code Registry that RFC 9110 16.2.1 maintains). What it must not know:
anything else; it imports nothing from evserver, so every module of ``evserver.http`` may use it.

Why a module of its own rather than a table inside ``response.py``: three modules name a status
for three reasons (``response`` in the status line, ``errorpage`` in the HTML title, ``errors``
as an error's default detail), and ``errors`` sits under the parser, which must not depend on
the response serializer. One table below all three is the only place they can all agree.

Why written out rather than taken from ``http.HTTPStatus``: its phrases change with the Python
version (3.11 still has RFC 7231's "Request Entity Too Large", later versions RFC 9110's
"Content Too Large"), and the bytes this server sends must not.

Invariants:

- A status that is not listed gets the empty phrase: RFC 9112 4 lets the reason-phrase be empty
  (the SP before it stays), and inventing one ("Unknown") would tell the client nothing. The
  error page of such a status is titled with the bare code. :func:`reason_phrase` is the one
  place that decision is made.
- Every phrase is printable ASCII without ``<``, ``&`` or ``"``: it goes into a status line
  (RFC 9112 4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )) and into HTML unescaped.
- The codes RFC 9110 marks "(Unused)", 306 and 418, have no phrase.
"""

from __future__ import annotations

from typing import Final

REASONS: Final[dict[int, str]] = {
    # RFC 9110 15.2: informational
    100: "Continue",
    101: "Switching Protocols",
    102: "Processing",  # RFC 2518 10.1
    103: "Early Hints",  # RFC 8297 2
    # RFC 9110 15.3: successful
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    207: "Multi-Status",  # RFC 4918 11.1
    208: "Already Reported",  # RFC 5842 7.1
    226: "IM Used",  # RFC 3229 10.4.1
    # RFC 9110 15.4: redirection
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    # RFC 9110 15.5: client error
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    423: "Locked",  # RFC 4918 11.3
    424: "Failed Dependency",  # RFC 4918 11.4
    425: "Too Early",  # RFC 8470 5.2
    426: "Upgrade Required",
    428: "Precondition Required",  # RFC 6585 3
    429: "Too Many Requests",  # RFC 6585 4
    431: "Request Header Fields Too Large",  # RFC 6585 5
    451: "Unavailable For Legal Reasons",  # RFC 7725 3
    # RFC 9110 15.6: server error
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
    506: "Variant Also Negotiates",  # RFC 2295 8.1
    507: "Insufficient Storage",  # RFC 4918 11.5
    508: "Loop Detected",  # RFC 5842 7.2
    510: "Not Extended",  # RFC 2774 7
    511: "Network Authentication Required",  # RFC 6585 6
}
"""Status code -> registered reason phrase. Read it through :func:`reason_phrase`."""


def reason_phrase(status: int) -> str:
    """The registered reason phrase of ``status``, or ``""`` if none is (RFC 9112 4)."""
    return REASONS.get(status, "")
