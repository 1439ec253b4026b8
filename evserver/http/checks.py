"""The cold checks behind the request parser: the request line, the target, Host, the framing
fields, and the messages that say exactly what was wrong with a malformed head.

What this module knows: what the fields and the request line of RFC 9112 and RFC 9110 mean
beyond their grammar (a version, a target form tied to its method, a list of Content-Length
values, the order of transfer codings), and which ``HTTPError`` each violation earns. What it
must not know: the parser's state or buffer; every function here is pure, except that two of
them fill the memos below.

Why apart from the parser: these run for a request line or Host not seen before, for a request
with a body, or on the error path only, never for the common bodiless request whose line and
Host were seen before; ``evserver.http.parser`` keeps the per-request work and calls in here
only when its fast paths miss.

Decisions taken where the RFCs leave a choice (the parser's docstring lists the others; each
makes us stricter, never looser):

- ``Transfer-Encoding`` lists are parsed strictly (no empty list elements); only ``chunked`` is
  implemented, so any other coding is 501; ``chunked`` twice or not last is 400 (RFC 9112 6.1).
  ``chunked`` with parameters is 501: the coding defines none (RFC 9112 7), so ``chunked;a=b``
  is a coding we do not know, and a front proxy may frame it differently.
- ``Content-Length`` is ``1*DIGIT`` (ASCII 0-9 only) with at most
  :data:`MAX_CONTENT_LENGTH_DIGITS` significant digits (leading zeros are not counted); a list
  of values, or repeated fields, is folded when the values are equal as numbers (``5, 05`` is 5,
  RFC 9110 8.6).
- ``Expect`` is a list (RFC 9110 10.1.1): empty elements are ignored (RFC 9110 5.6.1.2), so an
  empty value expects nothing; ``100-continue`` repeated is that one expectation; any other
  element is 417.
- ``Host`` syntax is checked loosely: no whitespace, CTL, ``/``, ``?``, ``#`` or ``@``.

Invariants:

- ``int()`` is only ever called on text a pattern proved to be ASCII digits: on its own it
  accepts ``+1``, ``1_0``, surrounding whitespace and non-ASCII digits.
- :data:`VALID_HOSTS` and :data:`VALID_REQUEST_LINES` hold only values that passed the full
  check, are bounded, and are mutated in place, never rebound: the parser binds them to globals
  of its own and reads them on every request.
"""

from __future__ import annotations

from typing import Final

from evserver.http import grammar
from evserver.http.errors import (
    BadRequest,
    ExpectationFailed,
    NotImplementedCoding,
    VersionNotSupported,
)

# The patterns, bound by assignment rather than imported by name: on an imported name CPython
# 3.11 compiles ``name.method(...)`` as an attribute load plus a call (see evserver.http.parser),
# and a Content-Length or Transfer-Encoding check runs for every request with a body.
_ABSOLUTE_FORM: Final = grammar.ABSOLUTE_FORM
_AUTHORITY_FORM: Final = grammar.AUTHORITY_FORM
_CONTENT_LENGTH_LIST: Final = grammar.CONTENT_LENGTH_LIST
_DIGITS: Final = grammar.DIGITS
_FIELD_LINE: Final = grammar.FIELD_LINE
_HOST: Final = grammar.HOST
_ORIGIN_FORM: Final = grammar.ORIGIN_FORM
_REQUEST_LINE: Final = grammar.REQUEST_LINE
_TOKEN: Final = grammar.TOKEN
_TRANSFER_CODING: Final = grammar.TRANSFER_CODING

MAX_CONTENT_LENGTH_DIGITS: Final = 18
"""[400] 18 significant decimal digits stay below 2**63; more is an overflow attempt (leading
zeros are not counted: they change nothing, and the head limit bounds them)."""

VALID_HOSTS: Final[set[str]] = set()
"""Host values already proven valid: a memo of :func:`check_host` (the check is a pattern match;
a set lookup is several times cheaper, and most requests repeat a few hosts)."""

MAX_REMEMBERED_HOSTS: Final = 256
"""Bound on VALID_HOSTS so a client sending many distinct hosts cannot grow it."""

VALID_REQUEST_LINES: Final[dict[str, tuple[str, str, str]]] = {}
"""Request lines already proven valid -> (method, target, version): a memo of
:func:`parse_request_line`, like ``VALID_HOSTS`` (a keep-alive client repeats its lines, and a
dictionary hit is an order of magnitude cheaper than the pattern match and checks)."""

MAX_REMEMBERED_REQUEST_LINES: Final = 256
"""Bound on VALID_REQUEST_LINES so a client sending many distinct targets cannot grow it."""


# -- the request line and its target (RFC 9112 3) ----------------------------------------------


def parse_request_line(request_line: str) -> tuple[str, str, str]:
    """RFC 9112 3: (method, target, version) of a request line, or an ``HTTPError``."""
    match = _REQUEST_LINE.fullmatch(request_line)
    if match is None:
        raise BadRequest(describe_bad_request_line(request_line))
    method, target, major, minor = match.groups()
    # RFC 9112 2.3 and RFC 9110 6.2: same major version, any minor; 2+ is another protocol.
    if major != "1":
        if major == "0":
            raise BadRequest("unsupported HTTP version")
        raise VersionNotSupported(f"HTTP/{major}.{minor} is not supported")
    version = "1.0" if minor == "0" else "1.1"
    if target[0] != "/" or method == "CONNECT":  # origin-form is proven by REQUEST_LINE
        check_target(method, target)
    known = (method, target, version)
    if len(VALID_REQUEST_LINES) < MAX_REMEMBERED_REQUEST_LINES:
        VALID_REQUEST_LINES[request_line] = known
    return known


def check_target(method: str, target: str) -> None:
    """RFC 9112 3.2: the four request-target forms, each tied to its methods."""
    if target[0] == "/":
        if method == "CONNECT":  # RFC 9112 3.2.3: CONNECT takes authority-form only
            raise BadRequest("CONNECT needs an authority-form target")
        if _ORIGIN_FORM.fullmatch(target) is None:  # RFC 9112 3.2.1
            raise BadRequest("invalid origin-form target")
    elif target == "*":
        if method != "OPTIONS":  # RFC 9112 3.2.4: asterisk-form only for OPTIONS
            raise BadRequest("asterisk-form target is only for OPTIONS")
    elif method == "CONNECT":
        if _AUTHORITY_FORM.fullmatch(target) is None:  # RFC 9112 3.2.3
            raise BadRequest("invalid authority-form target")
    elif _ABSOLUTE_FORM.fullmatch(target) is None:  # RFC 9112 3.2.2, any method
        raise BadRequest("invalid request target")


# -- field semantics (RFC 9110 5, 7.2, 8.6; RFC 9112 6) ----------------------------------------


def check_host(host: str) -> None:
    """RFC 9112 3.2: an invalid Host value -> 400 (checked loosely, see the module docstring)."""
    if _HOST.fullmatch(host) is None:
        raise BadRequest("invalid Host field")
    if len(VALID_HOSTS) < MAX_REMEMBERED_HOSTS:
        VALID_HOSTS.add(host)


def combine_repeated_fields(raw_headers: list[tuple[str, str]]) -> dict[str, str]:
    """The headers dict when some field name repeats (the uncommon case, kept off the loop)."""
    headers: dict[str, str] = {}
    for name, value in raw_headers:
        key = name.lower()
        if key in headers:
            if key == "host":  # RFC 9112 3.2: more than one Host field line -> 400
                raise BadRequest("more than one Host field")
            # RFC 9110 5.3: a repeated field is one comma-separated list, in order.
            headers[key] = headers[key] + ", " + value
        else:
            headers[key] = value
    return headers


def parse_content_length(value: str) -> int:
    """RFC 9112 6.2 / RFC 9110 8.6: 1*DIGIT, or a list of identical values."""
    if _DIGITS.fullmatch(value) is None:
        if _CONTENT_LENGTH_LIST.fullmatch(value) is None:
            raise BadRequest("invalid Content-Length")
        values = _DIGITS.findall(value)
    else:
        values = [value]
    if any(len(digits) > MAX_CONTENT_LENGTH_DIGITS for digits in values):
        # Only now strip leading zeros (the common short value skips this); stripping also keeps
        # int() below its limit on the length of a decimal string.
        values = [digits.lstrip("0") or "0" for digits in values]
        if any(len(digits) > MAX_CONTENT_LENGTH_DIGITS for digits in values):
            raise BadRequest("Content-Length has too many digits")
    lengths = {int(digits) for digits in values}  # proven ASCII digits by the patterns above
    if len(lengths) != 1:
        raise BadRequest("different Content-Length values")
    return lengths.pop()


def check_transfer_coding(value: str) -> None:
    """RFC 9112 6.1 and 6.3: the codings must end with exactly one ``chunked``."""
    codings = []
    position = 0
    while position < len(value):
        match = _TRANSFER_CODING.match(value, position)
        if match is None or match.end() == position:
            raise BadRequest("invalid Transfer-Encoding")
        codings.append(match.group(1).lower())
        position = match.end()
    if not codings or value[-1] in ", \t":
        raise BadRequest("invalid Transfer-Encoding")
    if codings.count("chunked") > 1:
        raise BadRequest("chunked applied more than once")
    if "chunked" in codings and codings[-1] != "chunked":
        raise BadRequest("chunked is not the final transfer coding")
    if codings != ["chunked"]:
        raise NotImplementedCoding("unsupported transfer coding")
    if ";" in value:  # one element, so any ";" starts a parameter (quoted strings come after)
        raise NotImplementedCoding("chunked takes no parameters")  # RFC 9112 7, 6.1


def expects_continue(value: str) -> bool:
    """RFC 9110 10.1.1: whether an ``Expect`` value asks for ``100 Continue``; 417 for any other
    expectation. Empty list elements are ignored (RFC 9110 5.6.1.2), so an empty value or
    ``100-continue,`` is no error, and a repeated ``100-continue`` is still that one."""
    elements = {element.strip(" \t").lower() for element in value.split(",")}
    elements.discard("")
    if elements - {"100-continue"}:
        raise ExpectationFailed("unsupported expectation")
    return bool(elements)


# -- what exactly was wrong (error path only) -------------------------------------------------


def describe_bad_head(head: str) -> str:
    """A precise message for a head holding a stray control character (error path only)."""
    if "\n" in head.replace("\r\n", ""):
        return "bare LF in the request head"
    if "\r" in head.replace("\r\n", ""):
        return "bare CR in the request head"
    return "control character in the request head"


def describe_bad_request_line(line: str) -> str:
    """A precise message for a request line that failed the pattern (error path only)."""
    if "\n" in line or "\r" in line:
        return "bare CR or LF in the request line"
    if line.count(" ") < 2:
        return "request line without an HTTP version"
    if "  " in line:
        return "more than one space between request-line parts"
    return "invalid request line"


def describe_bad_fields(block: str) -> str:
    """A precise message for the first bad field line (error path only)."""
    position = 0
    while True:
        match = _FIELD_LINE.match(block, position)
        if match is None:
            break
        position = match.end()
    rest = block[position:]
    if rest[:1] in (" ", "\t"):
        return "obs-fold (field line starting with whitespace)"  # RFC 9112 5.2
    colon = rest.find(":")
    line_end = rest.find("\r\n")
    if colon < 0 or (line_end >= 0 and colon > line_end):
        return "field line without a colon"
    if rest[colon - 1 : colon] in (" ", "\t"):
        return "whitespace between field name and colon"  # RFC 9112 5.1
    if _TOKEN.fullmatch(rest[:colon]) is None:
        return "invalid field name"
    return "invalid character or line break in a field value"  # RFC 9110 5.5, RFC 9112 2.2
