"""The small HTML page every error response carries.

What this module knows: a status code and its reason phrase, and how to say them in HTML. What it
must not know: who sends the page. The phrase comes from :mod:`evserver.http.status`, the table
the status line reads too, so a page's title always names its status as the status line does.
Pages are built once per status and cached, so answering a flood of bad requests costs no
formatting.
"""

from __future__ import annotations

from functools import lru_cache

from evserver.http.status import reason_phrase

_PAGE = (
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
    "<body><h1>{title}</h1></body></html>\n"
)


@lru_cache(maxsize=64)
def error_page(status: int) -> tuple[bytes, bytes]:
    """``(fields, body)`` for an error: the Content-Type and Content-Length lines, and the HTML.

    The title is ``"413 Content Too Large"``; the bare code for a status without a phrase.
    """
    reason = reason_phrase(status)
    title = f"{status} {reason}" if reason else str(status)
    body = _PAGE.format(title=title).encode("ascii")
    fields = b"Content-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\n" % len(body)
    return fields, body
