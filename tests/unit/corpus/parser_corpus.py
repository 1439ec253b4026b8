"""The request corpus: raw requests, each with the events or the status it must produce.

Each :class:`Case` is ``raw`` bytes and ``expect``: either an HTTP status (the parser must raise
an ``HTTPError`` carrying it) or a tuple of :class:`Msg`, one per request in ``raw``, listing the
attributes of the ``Request`` event to check and the de-chunked body. ``test_parser.py`` feeds
every case whole, one byte at a time and in random splits; valid cases are followed by a second,
pipelined request that must parse on its own (proving the body was consumed exactly).

Cases are grouped by the rule they exercise, with the RFC section; the classic parser traps
(``int()`` leniency, Unicode whitespace and line breaks, smuggling shapes) each have their own
group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evserver.http.limits import DEFAULT_LIMITS, ParserLimits


@dataclass(frozen=True)
class Msg:
    """What one request must look like: ``fields`` are Request attributes to compare."""

    body: bytes = b""
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: int | tuple[Msg, ...]
    limits: ParserLimits = DEFAULT_LIMITS


def msg(body: bytes = b"", **fields: Any) -> Msg:
    return Msg(body, fields)


def head(request_line: bytes = b"GET / HTTP/1.1", *fields: bytes) -> bytes:
    """A head: request line, fields (``Host: example.com`` when none given is NOT added)."""
    return request_line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


HOST = b"Host: example.com"


def get(*fields: bytes) -> bytes:
    """``GET / HTTP/1.1`` with Host and the given fields."""
    return head(b"GET / HTTP/1.1", HOST, *fields)


def post(*fields: bytes, body: bytes = b"") -> bytes:
    return head(b"POST /upload HTTP/1.1", HOST, *fields) + body


def chunked(body: bytes) -> bytes:
    return post(b"Transfer-Encoding: chunked", body=body)


BAD = 400
TOO_LARGE = 413
URI_TOO_LONG = 414
EXPECTATION = 417
HEADERS_TOO_LARGE = 431
NOT_IMPLEMENTED = 501
VERSION = 505

CASES: list[Case] = []


def case(
    name: str,
    raw: bytes,
    expect: int | Msg | tuple[Msg, ...],
    limits: ParserLimits = DEFAULT_LIMITS,
) -> None:
    if isinstance(expect, Msg):
        expect = (expect,)
    CASES.append(Case(name, raw, expect, limits))


SMALL_BODY = ParserLimits(max_body=10)
"""A body limit small enough that the 413 cases stay fast when fed one byte at a time."""


# --- valid requests: the request line (RFC 9112 3) -------------------------------------------
case("simple get", get(), msg(method="GET", target="/", version="1.1", keep_alive=True,
                              headers={"host": "example.com"}, content_length=None,
                              chunked=False, expect_continue=False))
case("http/1.0 without host", head(b"GET /a HTTP/1.0"), msg(version="1.0", keep_alive=False,
                                                             headers={}))
case("http/1.2 is 1.1", head(b"GET / HTTP/1.2", HOST), msg(version="1.1"))
case("http/1.9 is 1.1", head(b"GET / HTTP/1.9", HOST), msg(version="1.1"))
case("method is case-sensitive token", head(b"get / HTTP/1.1", HOST), msg(method="get"))
case("extension method", head(b"M-SEARCH / HTTP/1.1", HOST), msg(method="M-SEARCH"))
case("method with every tchar", head(b"!#$%&'*+-.^_`|~09azAZ / HTTP/1.1", HOST),
     msg(method="!#$%&'*+-.^_`|~09azAZ"))
case("query, percent and sub-delims", head(b"GET /a/b%20c?x=1&y=$!'()*+,;:@/? HTTP/1.1", HOST),
     msg(target="/a/b%20c?x=1&y=$!'()*+,;:@/?"))
case("brackets in path", head(b"GET /[1].txt HTTP/1.1", HOST), msg(target="/[1].txt"))
case("OPTIONS asterisk-form", head(b"OPTIONS * HTTP/1.1", HOST), msg(method="OPTIONS", target="*"))
case("OPTIONS origin-form", head(b"OPTIONS /x HTTP/1.1", HOST), msg(target="/x"))
case("absolute-form", head(b"GET http://example.com/x?y HTTP/1.1", HOST),
     msg(target="http://example.com/x?y"))
case("absolute-form uppercase https", head(b"POST HTTPS://example.com:8443 HTTP/1.1", HOST),
     msg(method="POST", target="HTTPS://example.com:8443"))
case("CONNECT authority-form", head(b"CONNECT example.com:443 HTTP/1.1", HOST),
     msg(method="CONNECT", target="example.com:443"))
case("CONNECT ipv6 authority-form", head(b"CONNECT [::1]:443 HTTP/1.1", HOST),
     msg(target="[::1]:443"))
case("one leading empty line", b"\r\n" + get(), msg(target="/"))
case("eight leading empty lines", b"\r\n" * 8 + get(), msg(target="/"))

# --- valid requests: fields (RFC 9112 5, RFC 9110 5) -----------------------------------------
case("OWS trimmed, SP and HTAB only", get(b"X-A: \t value with  spaces \t "),
     msg(headers={"host": "example.com", "x-a": "value with  spaces"}))
case("no OWS at all", head(b"GET / HTTP/1.1", b"Host:example.com"), msg(headers={"host":
                                                                               "example.com"}))
case("empty field value", get(b"X-Empty:"), msg(raw_headers=[("Host", "example.com"),
                                                             ("X-Empty", "")]))
case("only OWS as value", get(b"X-Empty:  \t "), msg(raw_headers=[("Host", "example.com"),
                                                                 ("X-Empty", "")]))
case("obs-text kept", get(b"X-Name: caf\xe9"), msg(headers={"host": "example.com",
                                                            "x-name": "caf\xe9"}))
case("\\xa0 is not whitespace", get(b"X-A: \xa0a\xa0"),
     msg(headers={"host": "example.com", "x-a": "\xa0a\xa0"}))
case("\\x85 is not a line break", get(b"X-A: a\x85b"),
     msg(headers={"host": "example.com", "x-a": "a\x85b"}))
case("htab inside a value", get(b"X-A: a\tb"), msg(headers={"host": "example.com",
                                                            "x-a": "a\tb"}))
case("repeated field combined", get(b"Accept: a", b"accept: b"),
     msg(headers={"host": "example.com", "accept": "a, b"},
         raw_headers=[("Host", "example.com"), ("Accept", "a"), ("accept", "b")]))
case("field name case kept in raw_headers", head(b"GET / HTTP/1.1", b"hOsT: example.com"),
     msg(headers={"host": "example.com"}, raw_headers=[("hOsT", "example.com")]))
case("field name with every tchar", get(b"!#$%&'*+-.^_`|~09azAZ: v"),
     msg(raw_headers=[("Host", "example.com"), ("!#$%&'*+-.^_`|~09azAZ", "v")]))
case("value with colons", get(b"X-Time: 12:30:00"),
     msg(headers={"host": "example.com", "x-time": "12:30:00"}))
case("empty host allowed", head(b"GET / HTTP/1.1", b"Host:"), msg(headers={"host": ""}))
case("host with port", head(b"GET / HTTP/1.1", b"Host: localhost:8000"),
     msg(headers={"host": "localhost:8000"}))
case("host ipv6 literal", head(b"GET / HTTP/1.1", b"Host: [::1]:8000"),
     msg(headers={"host": "[::1]:8000"}))
case("host optional in 1.0 but checked", head(b"GET / HTTP/1.0", b"Host: a.example"),
     msg(version="1.0"))
case("one hundred fields", get(*[b"X-%02d: v" % n for n in range(99)]), msg(target="/"))

# --- valid requests: persistence and expectations (RFC 9112 9.3, RFC 9110 10.1.1) -------------
case("1.1 connection close", get(b"Connection: close"), msg(keep_alive=False))
case("1.1 connection CLOSE", get(b"Connection: CLOSE"), msg(keep_alive=False))
case("1.1 close in a list", get(b"Connection: upgrade, Close"), msg(keep_alive=False))
case("close wins over keep-alive", get(b"Connection: keep-alive, close"), msg(keep_alive=False))
case("close in a second field", get(b"Connection: keep-alive", b"Connection: close"),
     msg(keep_alive=False))
case("closed is not close", get(b"Connection: closed"), msg(keep_alive=True))
case("1.0 keep-alive", head(b"GET / HTTP/1.0", b"Connection: keep-alive"), msg(keep_alive=True))
case("1.0 Keep-Alive in a list", head(b"GET / HTTP/1.0", b"Connection: Upgrade, Keep-Alive"),
     msg(keep_alive=True))
case("1.0 without keep-alive", head(b"GET / HTTP/1.0", b"Connection: upgrade"),
     msg(keep_alive=False))
case("expect 100-continue", post(b"Expect: 100-continue", b"Content-Length: 2", body=b"ok"),
     msg(b"ok", expect_continue=True, content_length=2))
case("expect 100-Continue any case", post(b"Expect: 100-Continue", b"Content-Length: 0"),
     msg(expect_continue=True))
case("expect ignored in 1.0", head(b"GET / HTTP/1.0", b"Expect: 100-continue"),
     msg(expect_continue=False))
# RFC 9110 5.6.1.2: empty list elements are ignored; a repeated 100-continue is one expectation.
case("expect empty", post(b"Expect:", b"Content-Length: 0"), msg(expect_continue=False))
case("expect only commas", post(b"Expect: , ,", b"Content-Length: 0"),
     msg(expect_continue=False))
case("expect trailing comma", post(b"Expect: 100-continue,", b"Content-Length: 0"),
     msg(expect_continue=True))
case("expect twice in a list", post(b"Expect: 100-continue , 100-Continue", b"Content-Length: 0"),
     msg(expect_continue=True))
case("expect twice in fields", post(b"Expect: 100-continue", b"Expect: 100-continue",
                                    b"Content-Length: 0"), msg(expect_continue=True))

# --- valid requests: bodies (RFC 9112 6, 7) ---------------------------------------------------
case("content-length body", post(b"Content-Length: 5", body=b"hello"),
     msg(b"hello", content_length=5, chunked=False))
case("content-length zero", post(b"Content-Length: 0"), msg(content_length=0))
case("content-length leading zeros", post(b"Content-Length: 005", body=b"hello"),
     msg(b"hello", content_length=5))
# Leading zeros are not significant digits: only 18 significant digits are the overflow guard.
case("content-length zeros past 18 digits", post(b"Content-Length: 0000000000000000005",
                                                 body=b"hello"), msg(b"hello", content_length=5))
case("content-length thousands of zeros", post(b"Content-Length: " + b"0" * 5000 + b"5",
                                               body=b"hello"), msg(b"hello", content_length=5))
case("content-length all zeros", post(b"Content-Length: " + b"0" * 30), msg(content_length=0))
case("content-length list of long zeros", post(b"Content-Length: 00000000000000000005, 5",
                                               body=b"hello"), msg(b"hello", content_length=5))
case("content-length OWS", post(b"Content-Length: \t5 ", body=b"hello"), msg(b"hello"))
case("content-length identical list", post(b"Content-Length: 5, 5", body=b"hello"),
     msg(b"hello", content_length=5))
case("content-length identical fields", post(b"Content-Length: 5", b"Content-Length: 5",
                                             body=b"hello"), msg(b"hello", content_length=5))
case("content-length list 05 and 5", post(b"Content-Length: 05,5", body=b"hello"),
     msg(b"hello"))
case("get with a body is consumed", get(b"Content-Length: 4") + b"abcd", msg(b"abcd"))
case("request hidden in a body", post(b"Content-Length: 38",
                                      body=b"GET /evil HTTP/1.1\r\nHost: evil\r\n\r\n\r\n\r\n"),
     msg(b"GET /evil HTTP/1.1\r\nHost: evil\r\n\r\n\r\n\r\n"))
case("binary body with CR LF NUL", post(b"Content-Length: 6", body=b"\r\n\x00\n\r\xff"),
     msg(b"\r\n\x00\n\r\xff"))
case("chunked one chunk", chunked(b"5\r\nhello\r\n0\r\n\r\n"),
     msg(b"hello", chunked=True, content_length=None))
case("chunked several chunks", chunked(b"3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n"), msg(b"abcd"))
case("chunked empty body", chunked(b"0\r\n\r\n"), msg(b"", chunked=True))
case("chunked uppercase hex", chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), msg(b"0123456789"))
case("chunked lowercase hex", chunked(b"a\r\n0123456789\r\n0\r\n\r\n"), msg(b"0123456789"))
case("chunk size leading zeros", chunked(b"0005\r\nhello\r\n000\r\n\r\n"), msg(b"hello"))
case("chunk size sixteen digits", chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
     msg(b"hello"))
case("chunk extensions", chunked(b'5;a=b;c="q s";d\r\nhello\r\n0;e=f\r\n\r\n'), msg(b"hello"))
case("chunk extension BWS", chunked(b'5 ; a = "x\\"y" \t;b\r\nhello\r\n0\r\n\r\n'),
     msg(b"hello"))
case("chunked trailer fields", chunked(b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: \t2\r\n\r\n"),
     msg(b"hello"))
case("transfer-encoding Chunked any case", post(b"Transfer-Encoding: Chunked",
                                                body=b"2\r\nhi\r\n0\r\n\r\n"), msg(b"hi"))
case("request hidden in a chunk", chunked(b"1e\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\n"
                                          b"0\r\n\r\n"),
     msg(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n\r\n"))
case("chunk data that looks like a chunk", chunked(b"5\r\n0\r\n\r\n\r\n0\r\n\r\n"),
     msg(b"0\r\n\r\n"))
case("two pipelined in one case", get() + post(b"Content-Length: 2", body=b"hi"),
     (msg(method="GET"), msg(b"hi", method="POST")))
case("chunked then content-length pipelined",
     chunked(b"1\r\na\r\n0\r\n\r\n") + post(b"Content-Length: 1", body=b"b"),
     (msg(b"a"), msg(b"b")))

# --- invalid: the request line (RFC 9112 3, 2.3) ----------------------------------------------
case("two spaces after method", head(b"GET  / HTTP/1.1", HOST), BAD)
case("two spaces before version", head(b"GET /  HTTP/1.1", HOST), BAD)
case("leading space", head(b" GET / HTTP/1.1", HOST), BAD)
case("trailing space", head(b"GET / HTTP/1.1 ", HOST), BAD)
case("tab as separator", head(b"GET\t/ HTTP/1.1", HOST), BAD)
case("\\x0b as separator", head(b"GET\x0b/ HTTP/1.1", HOST), BAD)
case("\\x0c as separator", head(b"GET /\x0cHTTP/1.1", HOST), BAD)
case("\\x1c as separator", head(b"GET\x1c/ HTTP/1.1", HOST), BAD)
case("\\x85 as separator", head(b"GET\x85/ HTTP/1.1", HOST), BAD)
case("\\xa0 as separator", head(b"GET /\xa0HTTP/1.1", HOST), BAD)
case("\\x85 in target", head(b"GET /a\x85 HTTP/1.1", HOST), BAD)
case("\\xa0 in target", head(b"GET /a\xa0b HTTP/1.1", HOST), BAD)
case("utf-8 in target", head(b"GET /caf\xc3\xa9 HTTP/1.1", HOST), BAD)
case("NUL in target", head(b"GET /a\x00 HTTP/1.1", HOST), BAD)
case("fragment in target", head(b"GET /a#frag HTTP/1.1", HOST), BAD)
# Leniency (see the parser's docstring): printable characters RFC 3986 calls unsafe are accepted.
case("angle brackets in target", head(b"GET /<script> HTTP/1.1", HOST),
     msg(target="/<script>"))
case("backslash in target", head(b"GET /a\\b HTTP/1.1", HOST), msg(target="/a\\b"))
case("braces pipe caret backtick in target", head(b"GET /{a}|^`q HTTP/1.1", HOST),
     msg(target="/{a}|^`q"))
case("space in target", head(b"GET /a b HTTP/1.1", HOST), BAD)
case("obs-text in target", head(b"GET /caf\xc3\xa9 HTTP/1.1", HOST), BAD)
case("tab in target", head(b"GET /a\tb HTTP/1.1", HOST), BAD)
case("invalid method character", head(b"GE(T / HTTP/1.1", HOST), BAD)
case("http/0.9 style", b"GET /\r\n\r\n", BAD)
case("no target", head(b"GET HTTP/1.1", HOST), BAD)
case("lower-case http", head(b"GET / http/1.1", HOST), BAD)
case("HTTP/1 without minor", head(b"GET / HTTP/1", HOST), BAD)
case("HTTP/11.1", head(b"GET / HTTP/11.1", HOST), BAD)
case("HTTP/1.1.1", head(b"GET / HTTP/1.1.1", HOST), BAD)
case("HTTP/1.x non-ascii digit", head(b"GET / HTTP/1.\xd9\xa1", HOST), BAD)
case("HTTP/0.9", head(b"GET / HTTP/0.9", HOST), BAD)
case("HTTP/2.0", head(b"GET / HTTP/2.0", HOST), VERSION)
case("HTTP/3.0", head(b"GET / HTTP/3.0", HOST), VERSION)
case("HTTP/9.9", head(b"GET / HTTP/9.9", HOST), VERSION)
case("asterisk with GET", head(b"GET * HTTP/1.1", HOST), BAD)
case("CONNECT with origin-form", head(b"CONNECT / HTTP/1.1", HOST), BAD)
case("CONNECT with absolute-form", head(b"CONNECT http://a:1/ HTTP/1.1", HOST), BAD)
case("CONNECT without port", head(b"CONNECT example.com HTTP/1.1", HOST), BAD)
case("authority-form with GET", head(b"GET example.com:80 HTTP/1.1", HOST), BAD)
case("relative target", head(b"GET index.html HTTP/1.1", HOST), BAD)
case("ftp scheme", head(b"GET ftp://example.com/ HTTP/1.1", HOST), BAD)
case("http with empty authority", head(b"GET http:///x HTTP/1.1", HOST), BAD)
case("request line too long", head(b"GET /" + b"a" * 8200 + b" HTTP/1.1", HOST), URI_TOO_LONG)
case("request line without end", b"GET /" + b"a" * 9000, URI_TOO_LONG)
case("bare LF line ends", b"GET / HTTP/1.1\nHost: example.com\n\n", BAD)
case("bare LF after request line", b"GET / HTTP/1.1\nHost: example.com\r\n\r\n", BAD)
case("bare LF before the final CRLF", b"GET / HTTP/1.1\r\nHost: example.com\n\r\n", BAD)
case("bare CR after request line", b"GET / HTTP/1.1\rHost: example.com\r\n\r\n", BAD)
case("leading bare LF", b"\n" + get(), BAD)
case("leading bare CR", b"\r" + get(), BAD)
case("nine leading empty lines", b"\r\n" * 9 + get(), BAD)
case("NUL request line", b"\x00" + get(), BAD)

# --- invalid: fields (RFC 9112 5, RFC 9110 5.5) -----------------------------------------------
case("obs-fold with SP", get(b"X-A: a", b" continued"), BAD)
case("obs-fold with HTAB", get(b"X-A: a", b"\tcontinued"), BAD)
case("obs-fold first line", head(b"GET / HTTP/1.1", b" X-A: a", HOST), BAD)
case("whitespace before colon", head(b"GET / HTTP/1.1", b"Host : example.com"), BAD)
case("tab before colon", get(b"X-A\t: a"), BAD)
case("field without colon", get(b"X-A a"), BAD)
case("known name without colon", get(b"Accept"), BAD)
case("empty field name", get(b": a"), BAD)
case("non-token field name", get(b"X(A): a"), BAD)
case("\\x85 in field name", get(b"X\x85A: a"), BAD)
case("\\xa0 in field name", get(b"X-A\xa0: a"), BAD)
case("NUL in value", get(b"X-A: a\x00b"), BAD)
case("\\x0b in value", get(b"X-A: a\x0bb"), BAD)
case("\\x0c in value", get(b"X-A: a\x0cb"), BAD)
case("\\x1c in value", get(b"X-A: a\x1cb"), BAD)
case("\\x1e in value", get(b"X-A: \x1e"), BAD)
case("DEL in value", get(b"X-A: a\x7f"), BAD)
case("bare CR in value", get(b"X-A: a\rb"), BAD)
case("bare LF in value", get(b"X-A: a\nb"), BAD)
case("bare CR ends a field", get(b"X-A: a\r", b"X-B: b"), BAD)
case("missing host in 1.1", head(b"GET / HTTP/1.1"), BAD)
case("two host fields", get(b"Host: other.example"), BAD)
case("two host fields in 1.0", head(b"GET / HTTP/1.0", HOST, b"host: x"), BAD)
case("host with space", head(b"GET / HTTP/1.1", b"Host: a b"), BAD)
case("host with slash", head(b"GET / HTTP/1.1", b"Host: a/b"), BAD)
case("host with userinfo", head(b"GET / HTTP/1.1", b"Host: user@a"), BAD)
case("host with query", head(b"GET / HTTP/1.1", b"Host: a?b"), BAD)
case("host with hash", head(b"GET / HTTP/1.1", b"Host: a#b"), BAD)
case("too many fields", get(*[b"X-%03d: v" % n for n in range(100)]), HEADERS_TOO_LARGE)
case("head too large", get(*[b"X-%02d: " % n + b"v" * 1000 for n in range(70)]),
     HEADERS_TOO_LARGE)
case("head too large and unfinished", get(*[b"X-%02d: " % n + b"v" * 1000
                                            for n in range(70)])[:-2], HEADERS_TOO_LARGE)
case("unknown expectation", get(b"Expect: 200-ok"), EXPECTATION)
case("expectation list", get(b"Expect: 100-continue, foo"), EXPECTATION)
case("expectation after an empty element", get(b"Expect: , foo"), EXPECTATION)
case("expectation with a parameter", get(b"Expect: 100-continue;a=b"), EXPECTATION)
case("expectation in a second field", get(b"Expect: 100-continue", b"Expect: foo"), EXPECTATION)

# --- invalid: framing and smuggling shapes (RFC 9112 6, 7; RFC 9110 8.6) -----------------------
case("CL and TE", post(b"Content-Length: 5", b"Transfer-Encoding: chunked",
                       body=b"0\r\n\r\n"), BAD)
case("TE and CL", post(b"Transfer-Encoding: chunked", b"Content-Length: 0",
                       body=b"0\r\n\r\n"), BAD)
case("TE chunked, identity", post(b"Transfer-Encoding: chunked, identity",
                                  body=b"0\r\n\r\n"), BAD)
case("TE identity, chunked", post(b"Transfer-Encoding: identity, chunked",
                                  body=b"0\r\n\r\n"), NOT_IMPLEMENTED)
case("TE gzip, chunked", post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
     NOT_IMPLEMENTED)
case("TE gzip alone", post(b"Transfer-Encoding: gzip", body=b"x"), NOT_IMPLEMENTED)
case("TE xchunked", post(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), NOT_IMPLEMENTED)
# RFC 9112 7: chunked defines no parameters; with one it is a coding we do not know (6.1).
case("TE chunked with a parameter", post(b"Transfer-Encoding: chunked;a=b", body=b"0\r\n\r\n"),
     NOT_IMPLEMENTED)
case("TE chunked with a quoted parameter", post(b'Transfer-Encoding: chunked ; a="b"',
                                                body=b"0\r\n\r\n"), NOT_IMPLEMENTED)
case("TE chunked twice in a list", post(b"Transfer-Encoding: chunked, chunked",
                                        body=b"0\r\n\r\n"), BAD)
case("TE chunked twice in fields", post(b"Transfer-Encoding: chunked",
                                        b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), BAD)
case("TE chunked then gzip fields", post(b"Transfer-Encoding: chunked",
                                         b"Transfer-Encoding: gzip", body=b"0\r\n\r\n"), BAD)
case("TE in HTTP/1.0", head(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked") + b"0\r\n\r\n",
     BAD)
case("TE empty", post(b"Transfer-Encoding:", body=b"0\r\n\r\n"), BAD)
case("TE leading comma", post(b"Transfer-Encoding: ,chunked", body=b"0\r\n\r\n"), BAD)
case("TE trailing comma", post(b"Transfer-Encoding: chunked,", body=b"0\r\n\r\n"), BAD)
case("TE \\x0b before chunked", post(b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"), BAD)
case("TE \\xa0 after chunked", post(b"Transfer-Encoding: chunked\xa0", body=b"0\r\n\r\n"), BAD)
case("TE \\x85 after chunked", post(b"Transfer-Encoding: chunked\x85", body=b"0\r\n\r\n"), BAD)
case("TE obs-folded", post(b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n"), BAD)
case("TE name with leading space", post(b" Transfer-Encoding: chunked", body=b"0\r\n\r\n"), BAD)
case("TE name with space before colon", post(b"Transfer-Encoding : chunked",
                                             body=b"0\r\n\r\n"), BAD)
case("TE name with \\x0b", post(b"Transfer-Encoding\x0b: chunked", body=b"0\r\n\r\n"), BAD)
case("CL plus sign", post(b"Content-Length: +5", body=b"hello"), BAD)
case("CL minus sign", post(b"Content-Length: -5", body=b"hello"), BAD)
case("CL underscore", post(b"Content-Length: 1_0", body=b"0123456789"), BAD)
case("CL inner space", post(b"Content-Length: 1 0", body=b"0123456789"), BAD)
case("CL hex", post(b"Content-Length: 0x10", body=b"0123456789abcdef"), BAD)
case("CL exponent", post(b"Content-Length: 1e1", body=b"0123456789"), BAD)
case("CL arabic-indic digit", post(b"Content-Length: \xd9\xa1", body=b"x"), BAD)
case("CL superscript", post(b"Content-Length: \xb9", body=b"x"), BAD)
case("CL \\x0b after", post(b"Content-Length: 5\x0b", body=b"hello"), BAD)
case("CL \\x0c before", post(b"Content-Length: \x0c5", body=b"hello"), BAD)
case("CL \\x1c after", post(b"Content-Length: 5\x1c", body=b"hello"), BAD)
case("CL \\xa0 after", post(b"Content-Length: 5\xa0", body=b"hello"), BAD)
case("CL \\x85 before", post(b"Content-Length: \x855", body=b"hello"), BAD)
case("CL empty", post(b"Content-Length:", body=b""), BAD)
case("CL different list", post(b"Content-Length: 5, 6", body=b"hello!"), BAD)
case("CL different fields", post(b"Content-Length: 5", b"Content-Length: 6",
                                 body=b"hello!"), BAD)
case("CL trailing comma", post(b"Content-Length: 5,", body=b"hello"), BAD)
case("CL empty list element", post(b"Content-Length: 5,,5", body=b"hello"), BAD)
case("CL too many digits", post(b"Content-Length: 1000000000000000005", body=b"hello"), BAD)
case("CL too many digits after zeros", post(b"Content-Length: 0001000000000000000005",
                                            body=b"hello"), BAD)
case("CL huge", post(b"Content-Length: 99999999999999999999999999", body=b""), BAD)
case("CL over max_body", post(b"Content-Length: 1048577", body=b""), TOO_LARGE)
case("CL name obs-folded", post(b"Content-Length:", b" 5", body=b"hello"), BAD)
case("chunk size 0x5", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk size -1", chunked(b"-1\r\nx\r\n0\r\n\r\n"), BAD)
case("chunk size +5", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk size trailing space", chunked(b"5 \r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk size leading space", chunked(b" 5\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk size underscore", chunked(b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"), BAD)
case("chunk size empty", chunked(b"\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk size non-ascii digit", chunked(b"\xd9\xa1\r\nx\r\n0\r\n\r\n"), BAD)
case("chunk size \\x0b", chunked(b"5\x0b\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk size seventeen digits", chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk size huge", chunked(b"ffffffffffffffff\r\nx"), TOO_LARGE)
case("chunked total over max_body", chunked(b"6\r\nabcdef\r\n5\r\nabcde\r\n0\r\n\r\n"),
     TOO_LARGE, SMALL_BODY)
case("chunked total at max_body", chunked(b"6\r\nabcdef\r\n4\r\nabcd\r\n0\r\n\r\n"),
     msg(b"abcdefabcd"), SMALL_BODY)
case("CL at small max_body", post(b"Content-Length: 10", body=b"0123456789"),
     msg(b"0123456789"), SMALL_BODY)
case("CL over small max_body", post(b"Content-Length: 11", body=b"0123456789a"), TOO_LARGE,
     SMALL_BODY)
case("chunk ext bare semicolon", chunked(b"5;\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk ext no name", chunked(b"5;=x\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk ext unterminated quote", chunked(b'5;a="x\r\nhello\r\n0\r\n\r\n'), BAD)
case("chunk ext space in value", chunked(b"5;a=b c\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk ext NUL", chunked(b"5;a=\x00\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk ext too long", chunked(b"5;a=" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), BAD)
case("chunk ext too long unfinished", chunked(b"5;a=" + b"x" * 5000), BAD)
case("LF-only chunk lines", chunked(b"5\nhello\n0\n\n"), BAD)
case("LF after chunk data", chunked(b"5\r\nhello\n0\r\n\r\n"), BAD)
case("chunk data too long", chunked(b"5\r\nhello!\r\n0\r\n\r\n"), BAD)
case("chunk data short then CRLF", chunked(b"5\r\nhell\r\n0\r\n\r\n"), BAD)
case("LF-only last chunk", chunked(b"5\r\nhello\r\n0\n\n"), BAD)
case("LF-only end of trailer", chunked(b"5\r\nhello\r\n0\r\n\n"), BAD)
case("trailer bare LF", chunked(b"0\r\nX-A: 1\n\n"), BAD)
case("trailer bare LF before CRLF", chunked(b"0\r\nX-A: 1\n\r\n"), BAD)
case("trailer obs-fold", chunked(b"0\r\nX-A: 1\r\n 2\r\n\r\n"), BAD)
case("request hidden in trailer", chunked(b"0\r\nGET /evil HTTP/1.1\r\nHost: x\r\n\r\n"), BAD)
case("trailer CTL", chunked(b"0\r\nX-A: \x0b\r\n\r\n"), BAD)
case("trailer too large", chunked(b"0\r\n" + b"X-A: " + b"v" * 17000 + b"\r\n\r\n"),
     HEADERS_TOO_LARGE)
case("trailer too large unfinished", chunked(b"0\r\n" + b"X-A: " + b"v" * 17000),
     HEADERS_TOO_LARGE)

# --- invalid: end of input in the middle (RFC 9112 8) -----------------------------------------
case("EOF in head", b"GET / HTTP/1.1\r\nHost: exa", BAD)
case("EOF after half CRLF", b"\r", BAD)
case("EOF in content-length body", post(b"Content-Length: 10", body=b"short"), BAD)
case("EOF in chunk size", chunked(b"5"), BAD)
case("EOF in chunk data", chunked(b"5\r\nhel"), BAD)
case("EOF before chunk CRLF", chunked(b"5\r\nhello\r"), BAD)
case("EOF in trailer", chunked(b"0\r\nX-A: 1\r\n"), BAD)
case("EOF before last CRLF", chunked(b"0\r\n"), BAD)
