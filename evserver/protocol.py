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
    if protocol.held_lines is not None and nothing is queued: protocol.output_sent()
    protocol.connection_lost(unsent) # once, when the connection ends: bytes never sent

Invariants:

- Responses go out strictly in the order the requests came (RFC 9112 9.3.2).
- Every request's body is read to its end (and discarded) before the next request is parsed, so
  framing never slips; the parser enforces the body limit (413).
- After an error response the connection closes: nothing more is parsed, nothing more is sent.
- The access log tells what was sent (nginx's ``$body_bytes_sent``). A response whose body
  takes time to send (a file region, or bytes not joined to the head) is not logged when it is
  handed to the driver: its line, and the line of every response after it on the connection,
  wait in ``held_lines`` (with their sizes on the wire) until the driver says all output has
  gone (``output_sent()``) or the connection ends (``connection_lost(unsent)``: the client went
  away, a send or drain timeout, a file that shrank). The bytes never sent are the last of the
  output, so each line then gets the body bytes that really left. A small response on a
  connection with nothing held is logged at once: its one write nearly always takes it whole.
- A handler that fails answers 500 (a bug, logged with its traceback), or 503 when it ran out
  of memory (RFC 9110 15.6.4: an address-space limit or a full machine; the page is built at
  import, and nothing is formatted): either way the connection closes and the server goes on.
  So does the parser running out of memory (its buffer, a request's fields): the responses
  already made go out, then a 503 that closes. Anywhere else (the driver, the transport) the
  output may be half made: the driver closes that one connection, without a traceback.
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
decided once, by the class the server builds (:class:`SplitWritesProtocol`): the join test
compares with ``_join_limit``, a class attribute, where it would compare with ``JOIN_LIMIT``
(a global), so the default path does the same work.
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

OUT_OF_MEMORY_STATUS = 503
"""RFC 9110 15.6.4: the answer when serving a request ran out of memory."""

_OUT_OF_MEMORY_PAGE = error_page(OUT_OF_MEMORY_STATUS)
"""The page of that answer; built at import, since building it then could fail as well (it also
fills ``error_page``'s cache, so ``_error`` finds it there without building it)."""

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
request could not be parsed; ``body_bytes`` counts the body bytes that left: the whole body,
unless the connection ended before it had all gone out (``ServerProtocol.connection_lost``). A
HEAD response counts the body it describes, as before (no body is ever sent with it).

Speed: five positional arguments, no record object: a call with a tuple or a small class built
per response costs measurably more (``tools/bench_hotpath.py``). The request is passed whole,
so the log reads only the fields its format shows (a common-format log never looks up Referer or
User-Agent)."""

HeldLine = tuple[float, Request | None, int, int, int, int]
"""An access log line waiting for its response to go out: (timestamp, request, status, body
length, body bytes on the wire (0 for HEAD and bodiless answers), head length)."""


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

    def head(self, status: int, fields: bytes, connection: str | None, now: float) -> bytes:
        """The head for this response at ``now`` (``time.time()``, read once per response and
        shared with the access log line)."""
        second = int(now)
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

    __slots__ = ("_access_log", "_handler", "_parser", "_request", "_stats", "held_lines",
                 "linger", "paused", "peer", "should_close")

    _join_limit = JOIN_LIMIT
    """The largest body joined to its head. A class attribute (``SplitWritesProtocol``: none):
    as a slot it was 16 bytes per idle connection, with the object's size rounded."""

    def __init__(
        self,
        handler: Handler,
        *,
        limits: ParserLimits = DEFAULT_LIMITS,
        peer: str = "-",
        access_log: AccessLogger | None = None,
        stats: Stats | None = None,
    ) -> None:
        self._handler = handler
        self._parser = RequestParser(limits)
        self.peer = peer
        """The client's address, for the access log (and the driver's ``repr``)."""
        self._access_log = access_log
        self._stats = stats
        self._request: Request | None = None
        self.held_lines: list[HeldLine] | None = None
        """Access log lines waiting to learn how much of their response left (None: none; see
        the module docstring). A slot the drivers read: a property would cost a call."""
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
        return f"<ServerProtocol {self.peer} {state} buffered={self._parser.buffered}>"

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
        except MemoryError:  # the parser's buffer could not grow: nothing of it answered yet
            return self._error(OUT_OF_MEMORY_STATUS)
        return self._produce()

    def resume(self) -> list[Item]:
        """Answer more of the requests that arrived pipelined; call after flushing."""
        self.paused = False
        if self.should_close:
            return []
        return self._produce()

    def output_sent(self) -> None:
        """Everything handed to the driver has been sent: write the held lines as they are."""
        self.connection_lost(0)

    def connection_lost(self, unsent: int) -> None:
        """The connection has ended with the last ``unsent`` bytes of output never sent (0: all
        went out): write the held lines, each with the body bytes that really left."""
        held = self.held_lines
        if held is None:
            return
        self.held_lines = None
        access_log = self._access_log
        assert access_log is not None
        body_unsent = [0] * len(held)
        for index in range(len(held) - 1, -1, -1):  # the bytes not sent are the last ones
            if unsent <= 0:
                break
            wire_body, head_length = held[index][4], held[index][5]
            body_unsent[index] = min(unsent, wire_body)
            unsent -= wire_body + head_length
        for (timestamp, request, status, body_length, _, _), missing in zip(held, body_unsent,
                                                                            strict=True):
            access_log(self.peer, timestamp, request, status, body_length - missing)

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
            except MemoryError:  # parsing the next head: the responses in ``out`` are whole
                out += self._error(OUT_OF_MEMORY_STATUS)
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
            if not parser._buffer:  # ``buffered`` without the property call (per request)
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
        except MemoryError:  # an address-space limit or a full machine: not a bug, and this
            # request may be the only one too big; no traceback (formatting one allocates).
            fields, page = _OUT_OF_MEMORY_PAGE
            response = Response(OUT_OF_MEMORY_STATUS, fields, (page,), len(page), close=True)
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
        now = time.time()
        head = _heads.head(response.status, response.fields, connection, now)
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
            if self.held_lines is None and self._access_log is not None:
                self.held_lines = []  # takes time to send: its line waits (module docstring)
        stats = self._stats
        if stats is not None:  # Stats.count_response, written out: it runs per response
            stats.requests += 1
            stats.status_classes[response.status // 100 % 6] += 1
            stats.body_bytes += response.body_length
        access_log = self._access_log
        if access_log is not None:
            held = self.held_lines
            if held is None:
                access_log(self.peer, now, request, response.status, response.body_length)
            else:
                wire_body = response.body_length if body and request.method != "HEAD" else 0
                held.append((now, request, response.status, response.body_length, wire_body,
                             len(head)))
        return response.body_length

    def _error(self, status: int) -> list[Item]:
        """RFC 9112 9.6: after a response to a bad request, close; the parser is now dead too."""
        self.should_close = True
        self.paused = False
        fields, page = error_page(status)
        if self._stats is not None:
            self._stats.count_response(status, len(page))
        now = time.time()
        head = _heads.head(status, fields, "close", now)
        if self.held_lines is not None:  # it follows a response still being sent
            self.held_lines.append((now, self._request, status, len(page), len(page),
                                    len(head)))
        elif self._access_log is not None:
            self._access_log(self.peer, now, self._request, status, len(page))
        if self._join_limit == NEVER_JOIN:
            return [head, page]
        return [head + page]


class SplitWritesProtocol(ServerProtocol):
    """The teaching switch ``--split-writes``: no body is ever joined to its head."""

    __slots__ = ()

    _join_limit = NEVER_JOIN
