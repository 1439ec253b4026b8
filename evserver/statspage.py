"""The opt-in stats endpoint's responses: counters as JSON, or the live dashboard for a browser.

What this module knows: how to turn a dict into a JSON response that no cache keeps, which of the
two representations a request gets (``Accept``, RFC 9110 12.5.1: the dashboard only when
``text/html`` is preferred to ``application/json``, so every program that asked before still
gets JSON), and the dashboard page itself (``dashboard.html`` beside this module: one
self-contained page, its style and script inline, that polls the JSON once a second). What it
must not know: where the counters come from. Off unless ``--stats-path`` is given.

Invariants: both answers carry ``Vary: Accept`` and ``Cache-Control: no-store``; the dashboard
loads nothing but the JSON from its own address, and its ``Content-Security-Policy`` (built from
digests of its inline style and script) lets a browser load nothing else.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

from evserver.bodies import Response
from evserver.http.negotiation import negotiate_media_type

_JSON: Final = "application/json"
_HTML: Final = "text/html"
_STATS_TYPES: Final = (_JSON, _HTML)
"""The stats page's representations, preferred first: JSON unless HTML is asked for first."""

DASHBOARD_FILE: Final = "dashboard.html"


def stats_response(snapshot: dict[str, Any]) -> Response:
    body = json.dumps(snapshot, indent=1, sort_keys=True).encode() + b"\n"
    fields = (b"Content-Type: application/json\r\nCache-Control: no-store\r\nVary: Accept\r\n"
              b"Content-Length: %d\r\n" % len(body))
    return Response(200, fields, (body,), len(body))


def stats_page_response(accept: str | None, snapshot: Callable[[], dict[str, Any]]) -> Response:
    """The stats path's answer to a request whose ``Accept`` value is ``accept``: the dashboard
    or the JSON of ``snapshot()`` (only called when the JSON is due)."""
    if negotiate_media_type(accept, _STATS_TYPES) == _HTML:
        return dashboard_response()
    return stats_response(snapshot())


@functools.cache
def dashboard_response() -> Response:
    """The dashboard page, read and built once (on its first request) and shared afterwards."""
    page = resources.files("evserver").joinpath(DASHBOARD_FILE).read_bytes()
    fields = (b"Content-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n"
              b"Vary: Accept\r\nContent-Security-Policy: " + dashboard_policy(page).encode()
              + b"\r\nContent-Length: %d\r\n" % len(page))
    return Response(200, fields, (page,), len(page))


def dashboard_policy(page: bytes) -> str:
    """The page's Content-Security-Policy: its inline ``<style>`` and ``<script>`` by digest,
    requests to its own origin (the JSON), nothing else."""
    styles = re.findall(rb"<style>(.*?)</style>", page, re.S)
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    return ("default-src 'none'; connect-src 'self'; "
            f"style-src {_digests(styles)}; script-src {_digests(scripts)}; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _digests(blocks: list[bytes]) -> str:
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(block).digest()).decode()}'"
        for block in blocks
    ) or "'none'"
