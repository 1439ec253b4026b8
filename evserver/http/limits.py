"""Limits on what a client may make the parser hold, each with its reason.

What this module knows: numbers. The defaults follow common servers (nginx, h11) and the
status each limit earns is in brackets. A limit is a defence: without it, one client can make the
server buffer without bound.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REQUEST_LINE = 8 * 1024
"""[414] nginx's large_client_header_buffers is 8 KiB; longer URLs are not sent by browsers."""

MAX_HEAD = 64 * 1024
"""[431] the whole head, request line and fields; h11 uses 16 KiB, Apache 8 KiB per field x 100."""

MAX_HEADER_COUNT = 100
"""[431] Apache's LimitRequestFields; a browser sends 10 to 20."""

MAX_BODY = 1024 * 1024
"""[413] a static server reads and discards bodies; nginx's client_max_body_size is 1 MiB."""

MAX_CHUNK_SIZE_DIGITS = 16
"""[400] 16 hex digits reach 2**64; more (even with leading zeros) is an overflow attempt."""

MAX_CHUNK_LINE = 4 * 1024
"""[400] a chunk-size line with its extensions; extensions are discarded, so keep them small."""

MAX_TRAILER = 16 * 1024
"""[431] trailer fields after the last chunk; parsed and discarded."""


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """The limits one parser enforces. Defaults are the constants above."""

    max_request_line: int = MAX_REQUEST_LINE
    max_head: int = MAX_HEAD
    max_header_count: int = MAX_HEADER_COUNT
    max_body: int = MAX_BODY


DEFAULT_LIMITS = ParserLimits()
