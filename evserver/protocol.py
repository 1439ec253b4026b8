"""One connection's conversation: bytes in, things to send out, and what to do next.

What this module knows: HTTP/1.1 connection management (RFC 9112 9: persistence, pipelining,
closing), ``Expect: 100-continue`` (RFC 9110 10.1.1), and that one place turns an
:class:`~evserver.http.errors.HTTPError` into a response. What it must not know: sockets,
selectors, threads, timers. A driver (``evserver.drivers.evented`` for the evented server,
``evserver.drivers.blocking`` for the threaded and iterative ones) moves bytes; this class decides.

The driver's side of the contract::

    items = protocol.receive(data)   # data from recv(); b"" when the peer closed its side
    send(items)                      # bytes and FileRegions, strictly in order
    if protocol.paused:              # requests are waiting but we stopped (backpressure):
        ...after the output above has been flushed: items = protocol.resume()
    if protocol.should_close:        # after flushing everything returned so far, close
        protocol.linger              # ...half-close and drain input first (False: plain close)
    protocol.wants_read              # False while paused or closing: do not recv()

Invariants:

- Responses go out strictly in the order the requests came (RFC 9112 9.3.2).
- Every request's body is read to its end (and discarded) before the next request is parsed, so
  framing never slips; the parser enforces the body limit (413).
- After an error response the connection closes: nothing more is parsed, nothing more is sent.
- Backpressure: one call answers at most ``MAX_RESPONSES_PER_BATCH`` requests or
  ``MAX_BATCH_BODY_BYTES`` of body; the rest wait in the parser's buffer until the driver has sent
  what it holds and calls ``resume()``. With ``wants_read`` false meanwhile, a client that pipelines
  without reading cannot make the server buffer without bound.

Speed: a request without a body is answered as soon as its head is parsed
(``RequestParser.skip_end_of_message``); the whole response head comes from a per-second cache
(:class:`_HeadCache`); a small in-memory body is joined to its head so the driver sends one bytes
object; statistics are three attribute adds; the access log gets one call with five arguments.

The teaching switch ``split_writes`` (``--split-writes``) keeps every head and body apart: the
protocol then never joins them (the drivers, told the same, never gather them either). It is
decided once, when the protocol is built: the join test compares with ``_join_limit`` (a slot)
where it would compare with ``JOIN_LIMIT`` (a global), so the default path does the same work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from evserver import SERVER_NAME
from evserver.bodies import Item, Response
from evserver.http.dates import format_http_date
from evserver.http.errorpage import error_page
from evserver.http.errors import HTTPError
from evserver.http.events import CLOSED, END_OF_MESSAGE, NEED_DATA, Request
from evserver.http.limits import DEFAULT_LIMITS, ParserLimits
from evserver.http.parser import RequestParser
from evserver.http.response import response_head, status_line
from evserver.stats import Stats

log = logging.getLogger("evserver.protocol")

Handler = Callable[[Request], Response]

MAX_RESPONSES_PER_BATCH = 32
"""Pipelined requests answered per call before pausing; each may hold an open file descriptor."""

MAX_BATCH_BODY_BYTES = 256 * 1024
"""Body bytes queued per call before pausing; bounds memory for a pipelining client."""

JOIN_LIMIT = 8 * 1024
"""Largest in-memory body joined to its head (one bytes item, one send()). A larger one stays a
separate item, and the drivers gather head and body with one sendmsg() instead: copying a large
body costs more than gathering does, while copying a few KiB costs about as much as it
(``tools/bench_hotpath.py`` measures both)."""

NEVER_JOIN = -1
"""``_join_limit`` under ``split_writes``: no body is that short, so none is joined to its head."""

CONTINUE_RESPONSE = status_line(100) + b"\r\n"
"""RFC 9110 15.2.1: an interim response, sent before reading a body the client is holding back."""

REQUEST_TIMEOUT_STATUS = 408
"""RFC 9110 15.5.9: the client did not send a complete request in time."""


AccessLogger = Callable[[str, float, Request | None, int, int], None]
"""What the access log is told of each response: ``(peer, timestamp, request, status,
body_bytes)``; formatting is ``evserver.accesslog``'s.

``timestamp`` is ``time.time()`` when the response was queued; ``request`` is ``None`` when the
request could not be parsed; ``body_bytes`` counts the body handed to the driver (a connection
aborted mid-transfer still logs the full length, as nginx logs what it meant to send when
``$body_bytes_sent`` is not available).

Speed: five positional arguments, no record object: a call with a tuple or a small class built
per response costs measurably more (``tools/bench_hotpath.py``). The request is passed whole,
so the log reads only the fields its format shows (a common-format log never looks up Referer or
User-Agent)."""


MAX_CACHED_HEADS = 256
"""Whole response heads kept per second: the distinct (status, fields, Connection) triples of a
busy second (one per hot file); each is a few hundred bytes. Past it, heads are built uncached."""


class _HeadCache:
    """Whole response heads for the current second, keyed by (status, fields, Connection value).

    The ``Date`` field (RFC 9110 6.6.1) changes once a second, and everything else in a head
    comes from the response's ``fields`` bytes (a handler reuses one object per cached file, and
    a bytes object caches its hash) and two settings. So a head is built once per second per
    distinct response instead of once per request. Speed: a dictionary hit is several times
    cheaper than building a head (a list, joins, the date line).

    The state is one tuple ``(second, date, heads)`` swapped in a single assignment, so threads
    sharing the cache (the threaded model) never pair a head with another second's dictionary.
    """

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: tuple[int, str, dict[tuple[int, bytes, str | None], bytes]] = (-1, "", {})

    def head(self, status: int, fields: bytes, connection: str | None) -> bytes:
        second = int(time.time())
        state = self.state
        if state[0] != second:
            state = self.state = (second, format_http_date(second), {})
        heads = state[2]
        key = (status, fields, connection)
        head = heads.get(key)
        if head is None:
            head = response_head(status, fields, date=state[1], server=SERVER_NAME,
                                 connection=connection)
            if len(heads) < MAX_CACHED_HEADS:
                heads[key] = head
        return head


_heads = _HeadCache()


class ServerProtocol:
    """The conversation on one connection. Create one per accepted connection."""

    __slots__ = ("_access_log", "_handler", "_join_limit", "_parser", "_peer", "_request",
                 "_stats", "linger", "paused", "should_close")

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ParserLimits = DEFAULT_LIMITS,
        peer: str = "-",
        access_log: AccessLogger | None = None,
        stats: Stats | None = None,
        split_writes: bool = False,
    ) -> None:
        self._handler = handler
        self._join_limit = NEVER_JOIN if split_writes else JOIN_LIMIT
        """The largest body joined to its head (``split_writes``: none, a teaching switch)."""
        self._parser = RequestParser(limits)
        self._peer = peer
        self._access_log = access_log
        self._stats = stats
        self._request: Request | None = None
        self.paused = False
        """Complete requests may be waiting; call ``resume()`` once the output is flushed."""
        self.should_close = False
        """Close the connection after sending everything returned so far."""
        self.linger = True
        """When closing: half-close, then read and discard input for a while, so input still
        arriving cannot make the kernel reset the connection before the client has read the
        response (RFC 9112 9.6). False when the client itself asked to close (``Connection:
        close``, or HTTP/1.0 without keep-alive) after a complete request and nothing of its
        input is left: such a client sends nothing more, so a plain close is safe and saves a
        shutdown, a poll round and a read per connection (nginx's ``lingering_close on`` makes
        the same call)."""

    def __repr__(self) -> str:
        state = "closing" if self.should_close else "paused" if self.paused else "open"
        return f"<ServerProtocol {self._peer} {state} buffered={self._parser.buffered}>"

    # -- what the driver asks --------------------------------------------------------------

    @property
    def wants_read(self) -> bool:
        """True when more input could make progress (not paused, not closing)."""
        return not (self.paused or self.should_close)

    @property
    def mid_request(self) -> bool:
        """True while part of a request has arrived: the driver's header timeout applies,
        not its idle timeout."""
        return self._parser.mid_request

    def replace_handler(self, handler: Handler) -> None:
        """Answer the requests to come with ``handler`` (a server handing over to a successor
        gives every conversation one that closes the connection after its response)."""
        self._handler = handler

    # -- what the driver tells -------------------------------------------------------------

    def receive(self, data: bytes) -> list[Item]:
        """Take bytes from the peer (``b""``: it closed its side) and return what to send."""
        if self.should_close:
            return []  # after an error or a close decision, input is ignored
        try:
            self._parser.feed(data)
        except HTTPError as error:
            return self._error(error.status)
        return self._produce()

    def resume(self) -> list[Item]:
        """Answer more of the requests that arrived pipelined; call after flushing."""
        self.paused = False
        if self.should_close:
            return []
        return self._produce()

    def timed_out(self) -> list[Item]:
        """The driver's header timeout fired mid-request: a 408 that closes the connection.

        (An idle keep-alive connection that times out is closed without a word instead, as
        RFC 9112 9.5 allows: a 408 there could be read as the answer to a request in flight.)
        """
        if self.should_close:
            return []
        return self._error(REQUEST_TIMEOUT_STATUS)

    # -- the conversation ------------------------------------------------------------------

    def _produce(self) -> list[Item]:
        out: list[Item] = []
        answered = 0
        batch_bytes = 0
        parser = self._parser
        while True:
            try:
                event = parser.next_event()
            except HTTPError as error:
                out += self._error(error.status)
                return out
            if type(event) is Request:
                # Speed: a request without a body is answered at once, its END_OF_MESSAGE
                # consumed by skip_end_of_message() (one parser round trip saved per request).
                if not parser.skip_end_of_message():
                    self._request = event
                    # RFC 9110 10.1.1: the client waits for 100 before sending the body. A static
                    # server never needs the body, but reading it keeps the connection in sync.
                    if event.expect_continue and event.has_body:
                        out.append(CONTINUE_RESPONSE)
                    continue
                request = event
            elif event is NEED_DATA:
                return out
            elif event is END_OF_MESSAGE:
                waiting = self._request
                assert waiting is not None
                request = waiting
                self._request = None
            elif event is CLOSED:
                self.should_close = True  # RFC 9112 9.6: the client closed; so do we
                return out
            else:
                # Data events: a static server discards request bodies (RFC 9110 9.3.1: a GET
                # body has no defined semantics); the parser has already counted them.
                continue
            batch_bytes += self._respond(request, out)
            answered += 1
            if self.should_close:
                return out
            if not parser.buffered:
                # Speed: nothing more was received, so the next event can only be NEED_DATA
                # (the end of input is fed alone, and no request ends at it): skip asking.
                return out
            if answered >= MAX_RESPONSES_PER_BATCH or batch_bytes >= MAX_BATCH_BODY_BYTES:
                self.paused = True
                return out

    def _respond(self, request: Request, out: list[Item]) -> int:
        """Ask the handler, frame its response, append it to ``out``; return its body length."""
        try:
            response = self._handler(request)
        except Exception:  # a handler bug must never kill the driver
            log.exception("handler failed on %r", request)
            fields, page = error_page(500)
            response = Response(500, fields, (page,), len(page), close=True)
        if response.close or not request.keep_alive:
            connection: str | None = "close"
            self.should_close = True
            if not response.close and not self._parser.buffered:
                self.linger = False  # the client's own close, nothing unread: see ``linger``
        else:
            # RFC 9112 9.3: an HTTP/1.0 client keeps the connection only if told it persists.
            connection = "keep-alive" if request.version == "1.0" else None
        head = _heads.head(response.status, response.fields, connection)
        body = response.body
        if not body:
            out.append(head)
        elif request.method == "HEAD":  # RFC 9110 9.3.2: never a body, whoever built it
            response.release()
            out.append(head)
        elif (len(body) == 1 and type(body[0]) is bytes
              and response.body_length <= self._join_limit):
            # Speed: head and a small body as one bytes item; the transport sends it with one
            # call and no join (the copy is the one the join would have made).
            out.append(head + body[0])
        else:
            out.append(head)
            out += body
        stats = self._stats
        if stats is not None:  # Stats.count_response, written out: it runs per response
            stats.requests += 1
            stats.status_classes[response.status // 100 % 6] += 1
            stats.body_bytes += response.body_length
        access_log = self._access_log
        if access_log is not None:
            access_log(self._peer, time.time(), request, response.status, response.body_length)
        return response.body_length

    def _error(self, status: int) -> list[Item]:
        """RFC 9112 9.6: after a response to a bad request, close; the parser is now dead too."""
        self.should_close = True
        self.paused = False
        fields, page = error_page(status)
        if self._stats is not None:
            self._stats.count_response(status, len(page))
        if self._access_log is not None:
            self._access_log(self._peer, time.time(), self._request, status, len(page))
        head = _heads.head(status, fields, "close")
        if self._join_limit == NEVER_JOIN:
            return [head, page]
        return [head + page]
