"""What the request parser hands out: the events of one request, and two sentinels.

What this module knows: the shape of a parsed HTTP/1.1 request (RFC 9112 2.1: a head, then a body
that arrives in pieces, then its end). What it must not know: how bytes became these objects, and
what anyone does with them.

The parser's ``next_event()`` returns, for each request, in order::

    Request                  the head, once
    Data(b"...")             zero or more pieces of the body (already de-chunked)
    END_OF_MESSAGE           once, when the body (possibly empty) is complete

and then the events of the next pipelined request. When it cannot go on without more bytes it
returns ``NEED_DATA``; after the peer's end of input between two requests it returns ``CLOSED``.
"""

from __future__ import annotations

from typing import Final


class _Sentinel:
    """A named singleton; compare with ``is``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
"""The parser needs more bytes before it can return another event."""

CLOSED: Final = _Sentinel("CLOSED")
"""The peer ended its input (``feed(b"")``) cleanly between two requests."""

END_OF_MESSAGE: Final = _Sentinel("END_OF_MESSAGE")
"""The current request's body is complete (trailer fields, if any, were read and discarded)."""


class Data:
    """A piece of the request body, after removing chunked framing."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Data({self.data!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Data) and other.data == self.data

    __hash__ = None  # type: ignore[assignment]


class Request:
    """A request head (RFC 9112 2.1, 3 and 5), validated.

    Strings are the head's bytes decoded as ISO-8859-1, so every byte maps to one character and
    nothing is lost; the parser has already rejected what the RFCs forbid (CTLs, bad tokens).

    - ``method``: case-sensitive token, e.g. ``"GET"`` (RFC 9110 9.1).
    - ``target``: the request-target exactly as sent (RFC 9112 3.2).
    - ``version``: ``"1.0"`` or ``"1.1"`` (``HTTP/1.x`` with x > 1 is reported as ``"1.1"``).
    - ``headers``: field name in lower case -> value with OWS trimmed. Repeated fields are
      combined with ``", "`` in order of arrival (RFC 9110 5.3).
    - ``raw_headers``: ``(name, value)`` pairs as received, original case, in order.
    - ``keep_alive``: persistence per RFC 9112 9.3 (1.1: unless ``close``; 1.0: only with
      ``keep-alive``). The protocol may still decide to close.
    - ``expect_continue``: an HTTP/1.1 request carrying ``Expect: 100-continue``.
    - ``content_length``: the body length when framed by Content-Length, else ``None``.
    - ``chunked``: the body is framed by chunked transfer coding.
    """

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "raw_headers",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: dict[str, str],
        raw_headers: list[tuple[str, str]],
        keep_alive: bool,
        expect_continue: bool = False,
        content_length: int | None = None,
        chunked: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.raw_headers = raw_headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.content_length = content_length
        self.chunked = chunked

    @property
    def has_body(self) -> bool:
        """True when a body follows the head (chunked, or a Content-Length above zero)."""
        return self.chunked or bool(self.content_length)

    @property
    def request_line(self) -> str:
        """The request line as the access log shows it."""
        return f"{self.method} {self.target} HTTP/{self.version}"

    def __repr__(self) -> str:
        fields = len(self.headers)
        return f"Request({self.method} {self.target} HTTP/{self.version}, {fields} fields)"


Event = Request | Data | _Sentinel
