"""The small HTML page every error response carries.

What this module knows: a status code and its reason phrase, and how to say them in HTML. What it
must not know: who sends the page. Pages are built once per status and cached, so answering a
flood of bad requests costs no formatting.
"""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus

_PAGE = (
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n"
    "<body><h1>{code} {reason}</h1></body></html>\n"
)


def reason_phrase(status: int) -> str:
    """The registered reason phrase (RFC 9110 15), or ``"Unknown"``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@lru_cache(maxsize=64)
def error_page(status: int) -> tuple[bytes, bytes]:
    """``(fields, body)`` for an error: the Content-Type and Content-Length lines, and the HTML."""
    body = _PAGE.format(code=status, reason=reason_phrase(status)).encode("ascii")
    fields = b"Content-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n" % len(body)
    return fields, body
