"""The opt-in stats endpoint's response: counters as JSON.

What this module knows: how to turn a dict into a JSON response that no cache keeps. What it
must not know: where the counters come from. Off unless ``--stats-path`` is given.
"""

from __future__ import annotations

import json
from typing import Any

from evserver.bodies import Response


def stats_response(snapshot: dict[str, Any]) -> Response:
    body = json.dumps(snapshot, indent=1, sort_keys=True).encode() + b"\n"
    fields = (b"Content-Type: application/json\r\nCache-Control: no-store\r\n"
              b"Content-Length: %d\r\n" % len(body))
    return Response(200, fields, (body,), len(body))
