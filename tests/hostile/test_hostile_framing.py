"""Hostile framing: every shape where two parsers could disagree on where a request ends.

Request smuggling needs two HTTP processors (a proxy and this server) to split the same bytes into
different requests. The defence is to accept only framing that RFC 9112 makes unambiguous and to
reject everything else with a status and a closed connection, so no byte after the disagreement is
ever read as a request. Each case below is sent over a real socket to every model and selector, and
checked with the strict response reader (``tests/support/responses.py``):

- a rejected case gets exactly one response, with the expected status and ``Connection: close``,
  and then the server closes by itself (we never half-close, so a server that waits for more
  would run into our timeout and fail);
- an accepted case gets exactly the responses RFC 9112 implies, in order; the request hidden in
  a body (``HIDDEN``, for ``/kib.bin``, a 1024-byte body) is never answered.

Every case is also replayed one byte per ``send`` (with ``TCP_NODELAY``), because incremental
parsers go wrong at buffer edges that a whole send never reaches.

The decisions the RFCs leave open (bare LF -> 400, ``HTTP/1.2`` -> served as 1.1, ``HTTP/2.0``
-> 505, obs-fold -> 400) are documented in README.rst and ``evserver/http/parser.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.support.responses import HTTPResponse, exchange, parse_responses, read_until_close
from tests.support.servers import RunningServer

SERVER_TIMEOUT = 2.0
"""The servers' header/idle timeouts here: a case the server wrongly waits on ends in 408."""

CLIENT_TIMEOUT = 8.0
"""Well above SERVER_TIMEOUT: if this fires, the server neither answered nor closed."""

HIDDEN = b"GET /kib.bin HTTP/1.1\r\nHost: t\r\n\r\n"
"""The smuggled request. Its answer (1024 bytes of kib.bin) must never appear."""

FOLLOWUP = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
"""The request that legitimately follows an accepted case, and ends the conversation."""


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    statuses: tuple[int, ...]
    """Statuses of the responses, in order (the last one closes the connection)."""
    heads: tuple[bool, ...] = ()
    """Which responses answer a HEAD request (no body)."""
    bug: str = ""
    """A known server bug this case exposes (reported to the lead): the case is xfail."""


def _post(fields: bytes, body: bytes = b"", method: bytes = b"POST",
          version: bytes = b"1.1") -> bytes:
    return method + b" / HTTP/" + version + b"\r\nHost: t\r\n" + fields + b"\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"

REJECTED = [
    # RFC 9112 6.1 / 6.3: both framings, or lengths that disagree (the classic CL.TE / TE.CL).
    Case("cl-and-te", _post(b"Content-Length: 6\r\n" + CHUNKED, b"0\r\n\r\n" + HIDDEN), (400,)),
    Case("te-and-cl", _post(CHUNKED + b"Content-Length: 40\r\n", b"0\r\n\r\n" + HIDDEN), (400,)),
    Case("te-and-cl-zero", _post(CHUNKED + b"Content-Length: 0\r\n", b"0\r\n\r\n"), (400,)),
    Case("two-lengths", _post(b"Content-Length: 0\r\nContent-Length: 35\r\n", HIDDEN), (400,)),
    Case("length-list-differs", _post(b"Content-Length: 35, 0\r\n", HIDDEN), (400,)),
    # RFC 9112 6.2: Content-Length = 1*DIGIT; everything int() would also accept is refused.
    Case("length-plus", _post(b"Content-Length: +35\r\n", HIDDEN), (400,)),
    Case("length-minus", _post(b"Content-Length: -1\r\n", HIDDEN), (400,)),
    Case("length-hex", _post(b"Content-Length: 0x23\r\n", HIDDEN), (400,)),
    Case("length-underscore", _post(b"Content-Length: 3_5\r\n", HIDDEN), (400,)),
    Case("length-inner-space", _post(b"Content-Length: 3 5\r\n", HIDDEN), (400,)),
    Case("length-fullwidth-digit", _post(b"Content-Length: \xef\xbc\x93\xef\xbc\x95\r\n",
                                         HIDDEN), (400,)),
    Case("length-nbsp", _post(b"Content-Length: \xa035\r\n", HIDDEN), (400,)),
    Case("length-nel", _post(b"Content-Length: 35\x85\r\n", HIDDEN), (400,)),
    Case("length-empty", _post(b"Content-Length: \r\n", HIDDEN), (400,)),
    Case("length-19-digits", _post(b"Content-Length: 1000000000000000035\r\n", HIDDEN), (400,)),
    Case("length-overflow", _post(b"Content-Length: 18446744073709551617\r\n", HIDDEN), (400,)),
    Case("length-too-large", _post(b"Content-Length: 1048577\r\n", HIDDEN), (413,)),
    # RFC 9112 6.1: chunked must be the final coding, once; unknown codings are 501.
    # RFC 9112 7: chunked defines no parameters, so chunked;a=b is a coding we do not know.
    Case("te-chunked-parameter", _post(b"Transfer-Encoding: chunked;a=b\r\n", b"0\r\n\r\n"),
         (501,)),
    Case("te-chunked-twice", _post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
         (400,)),
    Case("te-two-lines", _post(CHUNKED + CHUNKED, b"0\r\n\r\n"), (400,)),
    Case("te-chunked-not-last", _post(b"Transfer-Encoding: chunked, identity\r\n",
                                      b"0\r\n\r\n"), (400,)),
    Case("te-identity", _post(b"Transfer-Encoding: identity\r\n", HIDDEN), (501,)),
    Case("te-gzip-chunked", _post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), (501,)),
    Case("te-xchunked", _post(b"Transfer-Encoding: xchunked\r\n", HIDDEN), (501,)),
    Case("te-chunked-vt", _post(b"Transfer-Encoding: chunked\x0b\r\n", b"0\r\n\r\n"), (400,)),
    Case("te-chunked-nel", _post(b"Transfer-Encoding: chunked\x85\r\n", b"0\r\n\r\n"), (400,)),
    Case("te-empty-element", _post(b"Transfer-Encoding: , chunked\r\n", b"0\r\n\r\n"), (400,)),
    Case("te-empty", _post(b"Transfer-Encoding: \r\n", HIDDEN), (400,)),
    Case("te-in-http-1.0", _post(CHUNKED, b"0\r\n\r\n", version=b"1.0"), (400,)),
    Case("te-space-before-colon", _post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
         (400,)),
    Case("te-obs-fold", _post(b"Transfer-Encoding: identity\r\n chunked\r\n", b"0\r\n\r\n"),
         (400,)),
    Case("length-obs-fold", _post(b"Content-Length:\r\n 35\r\n", HIDDEN), (400,)),
    # RFC 9112 7.1: chunk-size = 1*HEXDIG, then extensions or CRLF, nothing else.
    Case("chunk-size-0x", _post(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-size-plus", _post(CHUNKED, b"+5\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-size-minus", _post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-size-leading-space", _post(CHUNKED, b" 5\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-size-trailing-space", _post(CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-size-17-digits", _post(CHUNKED, b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
         (400,)),
    Case("chunk-size-huge", _post(CHUNKED, b"ffffffffffffffff\r\n" + HIDDEN), (413,)),
    Case("chunk-size-empty", _post(CHUNKED, b"\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-size-bare-lf", _post(CHUNKED, b"5\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-size-underscore", _post(CHUNKED, b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"),
         (400,)),
    Case("chunk-data-too-long", _post(CHUNKED, b"3\r\nabcdef\r\n0\r\n\r\n"), (400,)),
    Case("chunk-data-bare-lf", _post(CHUNKED, b"5\r\nhello\n0\r\n\r\n"), (400,)),
    Case("chunk-ext-bad", _post(CHUNKED, b"5;a\"b\r\nhello\r\n0\r\n\r\n"), (400,)),
    Case("chunk-last-without-crlf", _post(CHUNKED, b"0\r\n" + HIDDEN[:-2] + b"X\r\n\r\n"),
         (400,)),
    # RFC 9112 7.1.2: a trailer section holds field lines only: a request there is not one.
    Case("request-in-trailer", _post(CHUNKED, b"0\r\n" + HIDDEN), (400,)),
    Case("trailer-obs-fold", _post(CHUNKED, b"0\r\nX-T: a\r\n b\r\n\r\n"), (400,)),
    Case("trailer-bare-lf", _post(CHUNKED, b"0\r\nX-T: a\n\r\n"), (400,)),
    # RFC 9112 2.2: line terminators. Bare LF is refused (our choice); bare CR always.
    Case("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: t\n\n", (400,)),
    Case("bare-lf-after-field", b"GET / HTTP/1.1\r\nHost: t\n\r\n", (400,)),
    Case("bare-lf-request-line", b"GET / HTTP/1.1\nHost: t\r\n\r\n", (400,)),
    Case("bare-cr-request-line", b"GET / HTTP/1.1\rHost: t\r\n\r\n", (400,)),
    Case("bare-cr-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", (400,)),
    Case("bare-lf-leading", b"\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("too-many-leading-crlf", b"\r\n" * 9 + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    # RFC 9110 5.5 / 9112 5: control bytes and whitespace in odd places.
    Case("nul-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", (400,)),
    Case("nul-in-name", b"GET / HTTP/1.1\r\nHost: t\r\nX\x00: a\r\n\r\n", (400,)),
    Case("del-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x7fb\r\n\r\n", (400,)),
    Case("esc-in-value", b"GET / HTTP/1.1\r\nHost: t\r\nX: \x1b[31m\r\n\r\n", (400,)),
    Case("empty-field-name", b"GET / HTTP/1.1\r\nHost: t\r\n: a\r\n\r\n", (400,)),
    Case("field-name-paren", b"GET / HTTP/1.1\r\nHost: t\r\nX(y): a\r\n\r\n", (400,)),
    Case("field-without-colon", b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n", (400,)),
    Case("space-before-first-field", b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", (400,)),
    Case("tab-before-colon", b"GET / HTTP/1.1\r\nHost\t: t\r\n\r\n", (400,)),
    # RFC 9112 3: request-line = method SP request-target SP HTTP-version, exactly.
    Case("double-space", b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("tab-separator", b"GET\t/ HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("trailing-space", b"GET / HTTP/1.1 \r\nHost: t\r\n\r\n", (400,)),
    Case("leading-space", b" GET / HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("space-in-target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("high-byte-in-target", b"GET /\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("fragment-in-target", b"GET /#x HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("method-not-token", b"GE(T / HTTP/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("http-0.9", b"GET /\r\n\r\n", (400,)),
    Case("version-lowercase", b"GET / http/1.1\r\nHost: t\r\n\r\n", (400,)),
    Case("version-two-digits", b"GET / HTTP/1.10\r\nHost: t\r\n\r\n", (400,)),
    Case("version-no-minor", b"GET / HTTP/1\r\nHost: t\r\n\r\n", (400,)),
    Case("version-0.9", b"GET / HTTP/0.9\r\nHost: t\r\n\r\n", (400,)),
    Case("version-2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", (505,)),
    Case("version-3.0", b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", (505,)),
    Case("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (505,)),
    # RFC 9112 3.2: Host, exactly once in HTTP/1.1 and well formed.
    Case("no-host", b"GET / HTTP/1.1\r\n\r\n", (400,)),
    Case("two-hosts", b"GET / HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", (400,)),
    Case("host-with-space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", (400,)),
    Case("host-with-slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", (400,)),
    Case("host-with-at", b"GET / HTTP/1.1\r\nHost: user@t\r\n\r\n", (400,)),
    # RFC 9110 10.1.1: an expectation we cannot meet.
    Case("expect-other", b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n", (417,)),
    # RFC 9110 5.6.1.2: empty list elements are ignored, so these expect nothing unsupported.
    Case("expect-empty", b"GET / HTTP/1.1\r\nHost: t\r\nExpect:\r\n\r\n" + FOLLOWUP, (200, 200)),
    Case("expect-twice", b"GET / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue,\r\n"
         b"Expect: 100-continue\r\n\r\n" + FOLLOWUP, (200, 200)),
    # A good request, then a bad one: the first is answered, the bad one ends the connection.
    Case("good-then-bad", b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\nHost: t\n\n",
         (200, 400)),
]

ACCEPTED = [
    # Bodies are read to their end and discarded: a request inside one is never answered.
    Case("request-in-length-body",
         _post(b"Content-Length: %d\r\n" % len(HIDDEN), HIDDEN, method=b"GET") + FOLLOWUP,
         (200, 200)),
    Case("request-in-chunked-body",
         _post(CHUNKED, b"%x\r\n" % len(HIDDEN) + HIDDEN + b"\r\n0\r\n\r\n", method=b"GET")
         + FOLLOWUP, (200, 200)),
    Case("request-in-post-body", _post(b"Content-Length: %d\r\n" % len(HIDDEN), HIDDEN)
         + FOLLOWUP, (405, 200)),
    Case("request-split-over-chunks",
         _post(CHUNKED, b"10\r\n" + HIDDEN[:16] + b"\r\n%x\r\n" % (len(HIDDEN) - 16)
               + HIDDEN[16:] + b"\r\n0\r\n\r\n", method=b"GET") + FOLLOWUP, (200, 200)),
    Case("head-with-body", _post(b"Content-Length: %d\r\n" % len(HIDDEN), HIDDEN,
                                 method=b"HEAD") + FOLLOWUP, (200, 200), heads=(True, False)),
    # RFC 9110 8.6: a list of identical lengths is one length; leading zeros are digits.
    Case("length-list-same", _post(b"Content-Length: 5, 5\r\n", b"hello", method=b"GET")
         + FOLLOWUP, (200, 200)),
    Case("length-repeated-same", _post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello",
                                       method=b"GET") + FOLLOWUP, (200, 200)),
    Case("length-leading-zeros", _post(b"Content-Length: 005\r\n", b"hello", method=b"GET")
         + FOLLOWUP, (200, 200)),
    Case("length-zeros-past-18-digits", _post(b"Content-Length: 0000000000000000005\r\n",
                                              b"hello", method=b"GET") + FOLLOWUP, (200, 200)),
    Case("length-zero", _post(b"Content-Length: 0\r\n", method=b"GET") + FOLLOWUP, (200, 200)),
    # RFC 9112 7.1: hex in either case, leading zeros, extensions (ignored), trailer fields.
    Case("chunked-case-and-ows", _post(b"Transfer-Encoding:  ChUnKeD \t\r\n",
                                       b"5\r\nhello\r\n0\r\n\r\n", method=b"GET") + FOLLOWUP,
         (200, 200)),
    Case("chunk-hex-forms", _post(CHUNKED, b"0000A\r\n0123456789\r\na\r\n0123456789\r\n"
                                           b"0\r\n\r\n", method=b"GET") + FOLLOWUP, (200, 200)),
    Case("chunk-extensions", _post(CHUNKED, b"5;a=b;c=\"d;e\" ; f\r\nhello\r\n0;z=1\r\n\r\n",
                                   method=b"GET") + FOLLOWUP, (200, 200)),
    Case("chunk-trailers", _post(CHUNKED, b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Two: 2\r\n\r\n",
                                 method=b"GET") + FOLLOWUP, (200, 200)),
    # A field that only looks like a framing field is an ordinary field (RFC 9110 5.1 names are
    # tokens matched exactly): the "chunked body" is then the next request, and a bad one.
    Case("underscore-te-is-not-te", b"GET / HTTP/1.1\r\nHost: t\r\nTransfer_Encoding: chunked"
                                    b"\r\n\r\n0\r\n\r\n", (200, 400)),
    Case("content-length-typo", b"GET / HTTP/1.1\r\nHost: t\r\nContent-Lenght: 35\r\n\r\n"
                                + FOLLOWUP, (200, 200)),
    # RFC 9112 2.2: a few empty lines before a request line are ignored.
    Case("leading-crlf", b"\r\n\r\n" + FOLLOWUP, (200,)),
    Case("crlf-between-requests", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n\r\n\r\n" + FOLLOWUP,
         (200, 200)),
    # RFC 9110 6.2 / 9112 2.3: a higher minor version is answered as HTTP/1.1 (our decision).
    Case("http-1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n" + FOLLOWUP, (200, 200)),
    Case("http-1.9-close", b"GET / HTTP/1.9\r\nHost: t\r\nConnection: close\r\n\r\n", (200,)),
    Case("http-1.0-no-host", b"GET / HTTP/1.0\r\n\r\n" + HIDDEN, (200,)),
    # RFC 9110 5.5: obs-text in a value is allowed; OWS around a value is trimmed.
    Case("obs-text-value", b"GET / HTTP/1.1\r\nHost: t\r\nX: caf\xe9 \x85\r\n\r\n" + FOLLOWUP,
         (200, 200)),
    Case("ows-value", b"GET / HTTP/1.1\r\nHost:\t t \t\r\n\r\n" + FOLLOWUP, (200, 200)),
    # RFC 9110 10.1.1: 100 Continue, then the answer.
    Case("expect-continue", _post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello",
                                  method=b"GET") + FOLLOWUP, (200, 200)),
    # RFC 9112 9.3.2: pipelined requests are answered in order.
    Case("pipelined-mix", b"HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                          b"GET /sub/a.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                          b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n" + FOLLOWUP,
         (200, 200, 204, 200), heads=(True, False, False, False)),
]


def _send(server: RunningServer, data: bytes, bytewise: bool) -> tuple[bytes, str]:
    with socket.create_connection(server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if bytewise:
                for index in range(len(data)):
                    sock.send(data[index : index + 1])
            else:
                sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we finished: it is allowed to
        return read_until_close(sock)


def _check(server: RunningServer, case: Case, bytewise: bool) -> list[HTTPResponse]:
    raw, _how = _send(server, case.data, bytewise)
    responses = parse_responses(raw, case.heads)
    statuses = tuple(r.status for r in responses)
    assert statuses == case.statuses, f"{case.name}: got {statuses}, raw {raw[:400]!r}"
    assert responses[-1].closes, f"{case.name}: the last response must say Connection: close"
    kib = (server.root / "kib.bin").read_bytes()
    assert all(r.body != kib for r in responses), f"{case.name}: the hidden request was answered"
    if case in ACCEPTED and case.statuses[-1] == 200 and case.data.endswith(FOLLOWUP):
        assert responses[-1].body == b"hello, world\n", case.name
    return responses


@pytest.fixture
def quick_server(start_server: Callable[..., RunningServer],
                 model_name: tuple[str, str]) -> RunningServer:
    model, selector = model_name
    return start_server(model=model, selector=selector, header_timeout=SERVER_TIMEOUT,
                        idle_timeout=SERVER_TIMEOUT, send_timeout=SERVER_TIMEOUT,
                        drain_timeout=1)


def _params(cases: list[Case]) -> list[object]:
    return [pytest.param(case, id=case.name,
                         marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug
                         else []) for case in cases]


@pytest.mark.parametrize("case", _params(REJECTED))
def test_rejected_framing_gets_its_status_and_a_closed_connection(
        quick_server: RunningServer, case: Case) -> None:
    _check(quick_server, case, bytewise=False)


@pytest.mark.parametrize("case", _params(ACCEPTED))
def test_accepted_framing_is_parsed_as_rfc_9112_says(quick_server: RunningServer,
                                                     case: Case) -> None:
    _check(quick_server, case, bytewise=False)


def test_every_case_fed_one_byte_at_a_time(quick_server: RunningServer) -> None:
    failures = []
    for case in REJECTED + ACCEPTED:
        if case.bug:
            continue  # known, and xfail in the tests above
        try:
            _check(quick_server, case, bytewise=True)
        except AssertionError as error:
            failures.append(str(error).splitlines()[0])
    assert not failures, "\n".join(failures)


def test_expect_continue_sends_the_interim_response_first(quick_server: RunningServer) -> None:
    data = _post(b"Expect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n",
                 method=b"GET")
    with socket.create_connection(quick_server.address, timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(data)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)
            assert chunk, f"closed before 100 Continue: {interim!r}"
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        raw, _ = read_until_close(sock)
    assert [r.status for r in parse_responses(raw)] == [200]


def test_incomplete_body_then_eof_is_never_answered_as_whole(quick_server: RunningServer
                                                             ) -> None:
    # The client promises 10 bytes, sends 3 and half-closes: the request is incomplete, so it
    # must not be served (RFC 9112 8); a 400 is allowed, and then the connection ends.
    responses, _ = exchange(quick_server.address,
                            _post(b"Content-Length: 10\r\n", b"abc", method=b"GET"),
                            timeout=CLIENT_TIMEOUT, half_close=True)
    assert [r.status for r in responses] in ([], [400])
