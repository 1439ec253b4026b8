"""The opt-in health endpoint's two responses: 200 while serving, 503 once a drain has begun.

What this module knows: what a load balancer's health check wants to read (a status, and that
no cache may keep it). What it must not know: when a server drains (the server says so) or where
the page is (``--health-path``). Off unless ``--health-path`` is given.

Why 503 from the very start of a drain, and not only once connections are refused: a balancer
(HAProxy's ``option httpchk``, nginx's health checks) takes a server out of rotation after a
failed check, so a draining server that says 503 while it still answers stops getting new
requests before it stops accepting them. RFC 9110 15.6.4: 503 is "temporarily unable to handle
the request", which is what a server going away (or handing over to a successor) is.
"""

from __future__ import annotations

from evserver.bodies import Response

_FIELDS = (b"Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n"
           b"Content-Length: %d\r\n")

SERVING_BODY = b"ok\n"
DRAINING_BODY = b"draining\n"

SERVING = Response(200, _FIELDS % len(SERVING_BODY), (SERVING_BODY,), len(SERVING_BODY))
DRAINING = Response(503, _FIELDS % len(DRAINING_BODY), (DRAINING_BODY,), len(DRAINING_BODY))
"""Built once: a response whose body is bytes is never changed by whoever sends it."""


def health_response(draining: bool) -> Response:
    """The health page: 200 "ok" while serving, 503 "draining" once a drain has begun."""
    return DRAINING if draining else SERVING
