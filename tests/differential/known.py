"""The known differences between evserver's parser and the two judges, each with its reason.

What this module knows: every way evserver's reading of an input may differ from llhttp's or
h11's without anyone being wrong, as one table (:data:`KNOWN`), each row with the RFC section or
README decision behind it. What it must not know: how verdicts are made or inputs generated.

A difference not matched by a row is unexplained, and the differential test fails on it. Rows are
matched on what evserver said (its error text names the rule it applied) or on a narrow property
of the input, never on "anything the judge refuses", so a new kind of disagreement shows up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tests.differential.compare import Difference
from tests.differential.verdicts import REFUSED, evserver_verdict

LLHTTP = "llhttp"
H11 = "h11"
BOTH = (LLHTTP, H11)


@dataclass(frozen=True)
class Known:
    name: str
    judges: tuple[str, ...]
    reason: str
    matches: Callable[[Difference], bool]


def _we_refuse(*details: str) -> Callable[[Difference], bool]:
    """evserver refused (where the judge read on or waited) with one of these error texts."""
    def matches(difference: Difference) -> bool:
        return difference.kind.startswith("refused/") and any(
            difference.ours.detail.endswith(detail) for detail in details)
    return matches


def _they_refuse(*details: str) -> Callable[[Difference], bool]:
    """The judge refused what evserver read, or waits to read, for a rule evserver does not
    share (the row says why)."""
    def matches(difference: Difference) -> bool:
        return difference.kind.endswith("/refused") and any(
            detail in difference.theirs.detail for detail in details)
    return matches


def _refused_once_the_head_ends(difference: Difference) -> bool:
    """The judge refused mid-head while evserver waits for the head to end: appending an empty
    line makes evserver refuse too, before reading any further message."""
    if difference.kind != "incomplete/refused":
        return False
    completed = evserver_verdict(difference.raw + b"\r\n\r\n")
    return completed.outcome == REFUSED and len(completed.messages) == difference.index


def _message(difference: Difference) -> tuple[tuple[str, str], ...]:
    return difference.ours.messages[difference.index].headers


FRAMING_FIELDS = ("content-length", "transfer-encoding")


def _framing_fields_normalised(difference: Difference) -> bool:
    """h11 reports framing fields as it normalised them (one folded Content-Length, a
    lower-case Transfer-Encoding); every other field is the same."""
    if difference.kind != "reading:headers":
        return False
    ours = [pair for pair in _message(difference) if pair[0] not in FRAMING_FIELDS]
    theirs = difference.theirs.messages[difference.index].headers
    return ours == [pair for pair in theirs if pair[0] not in FRAMING_FIELDS]


def _trailer_fields_reported(difference: Difference) -> bool:
    """llhttp reports trailer fields after the head's fields; evserver discards them."""
    if difference.kind != "reading:headers":
        return False
    ours, theirs = _message(difference), difference.theirs.messages[difference.index].headers
    return ("transfer-encoding", "chunked") in [(n, v.lower()) for n, v in ours] and (
        theirs[: len(ours)] == ours)


def _minor_version_above_one(difference: Difference) -> bool:
    if difference.kind != "reading:version":
        return False
    return difference.theirs.messages[difference.index].version.startswith("1.")


def _line_breaks_before_a_request(difference: Difference) -> bool:
    """h11 refuses empty lines before a request line (and a lone CR as the start of one)."""
    end = difference.ours.messages[difference.index - 1].end if difference.index else 0
    return difference.kind.endswith("/refused") and difference.raw[end:end + 1] in (b"\r", b"\n")


_CHUNKED_FIELD = re.compile(rb"(?im)^transfer-encoding:[ \t]*chunked[ \t]*\r?$")


def _in_a_trailer(difference: Difference) -> bool:
    """The judge applies head-only field rules (framing fields, their syntax) to trailer fields;
    evserver checks trailer fields' syntax and discards them. Matched when the message's head
    is complete and chunked, so the judge's complaint is about what follows it."""
    if not difference.kind.endswith("/refused"):
        return False
    start = difference.ours.messages[difference.index - 1].end if difference.index else 0
    head, separator, _ = difference.raw[start:].partition(b"\r\n\r\n")
    chunked = _CHUNKED_FIELD.search(head) is not None
    return bool(separator) and chunked and any(
        word in difference.theirs.detail for word in ("Transfer-Encoding", "Content-Length"))


KNOWN: tuple[Known, ...] = (
    # -- evserver is stricter: each is a rule it applies and the judges leave to the application.
    Known("Host checked", BOTH, "RFC 9112 3.2: 400 for a missing (HTTP/1.1), repeated or invalid"
          " Host; the judges leave Host to the application",
          _we_refuse("missing Host field", "more than one Host field", "invalid Host field")),
    Known("expectation", BOTH, "RFC 9110 10.1.1: 417 for an expectation other than 100-continue;"
          " the judges do not evaluate Expect", _we_refuse("unsupported expectation")),
    Known("target form", BOTH, "RFC 9112 3.2: each target form with its method; README: absolute"
          " form http and https only; no fragment (RFC 9112 3.2, 3.2.1)",
          _we_refuse("invalid request target", "asterisk-form target is only for OPTIONS",
                     "CONNECT needs an authority-form target", "invalid authority-form target",
                     "invalid origin-form target", "invalid request line")),
    Known("versions", BOTH, "README Versions: HTTP/2+ is 505, HTTP/0.x is 400; the request line"
          " is exactly method SP target SP version (RFC 9112 3)",
          _we_refuse("is not supported", "unsupported HTTP version",
                     "more than one space between request-line parts",
                     "request line without an HTTP version")),
    Known("line breaks", BOTH, "README Bare LF: a bare LF or CR is 400 (RFC 9112 2.2); more than"
          " 8 empty lines before a request line is 400",
          _we_refuse("bare LF in the request head", "bare LF before the request line",
                     "bare CR before the request line", "bare CR in the request head",
                     "bare LF in a chunk-size line", "bare LF in the trailer section",
                     "bare CR or LF in the request line",
                     "too many empty lines before the request line")),
    Known("field syntax", BOTH, "RFC 9112 5.1, 5.2: obs-fold and space before the colon are 400;"
          " RFC 9110 5.5: no CTL but HTAB in a value (the judges allow some, or in trailers)",
          _we_refuse("obs-fold (field line starting with whitespace)",
                     "control character in the request head", "field line without a colon",
                     "invalid field name", "whitespace between field name and colon",
                     "invalid character or line break in a field value")),
    Known("framing fields", BOTH, "README Framing: TE with CL, TE in HTTP/1.0, chunked twice or"
          " not last, an empty list element are 400; other codings and chunked;a=b are 501"
          " (RFC 9112 6.1, 7)",
          _we_refuse("both Transfer-Encoding and Content-Length",
                     "Transfer-Encoding in an HTTP/1.0 request", "chunked applied more than once",
                     "chunked is not the final transfer coding", "invalid Transfer-Encoding",
                     "unsupported transfer coding", "chunked takes no parameters")),
    Known("limits", BOTH, "README table: 413 over --max-body, 431 over 100 fields or 64 KiB,"
          " 18 significant Content-Length digits, 16 chunk-size digits, chunk line 4 KiB",
          _we_refuse("request body too large", "too many header fields",
                     "request head too large", "Content-Length has too many digits",
                     "chunk-size line too long", "trailer section too large")),
    Known("chunk line", BOTH, "RFC 9112 7.1: chunk-size = 1*HEXDIG (README: at most 16) and no"
          " whitespace after it without an extension", _we_refuse("invalid chunk-size line")),
    # -- evserver waits where a judge refuses early: the verdict is the same once the head ends.
    Known("refused when complete", BOTH, "Parser docstring: a head is validated once it is"
          " complete, in one pass; evserver refuses the same input when the head ends."
          " Request-line cases become prompt with the request-line rejection change",
          _refused_once_the_head_ends),
    # -- the judges are stricter, or read differently, where evserver follows the RFC.
    Known("method list", (LLHTTP,), "RFC 9110 9.1: a method is any token, case-sensitive; llhttp"
          " knows a fixed list", _they_refuse("Invalid method encountered",
                                              "Expected space after method")),
    Known("Content-Length list", BOTH, "RFC 9110 8.6 and README Framing: a list or repeats of"
          " one value (equal as numbers) is that value; llhttp refuses lists and repeats, h11"
          " compares the text", _they_refuse("Invalid character in Content-Length",
                                             "Duplicate Content-Length",
                                             "conflicting Content-Length headers",
                                             "bad Content-Length")),
    Known("framing fields normalised", (H11,), "RFC 9110 8.6, 10.1.4: h11 reports a folded"
          " Content-Length and a lower-case coding in place of the fields as sent; evserver"
          " reports fields as received", _framing_fields_normalised),
    Known("trailer fields", (LLHTTP,), "RFC 9112 7.1.2: trailer fields may be discarded;"
          " llhttp reports them with the head's fields", _trailer_fields_reported),
    Known("trailer rules", BOTH, "RFC 9112 7.1.2: trailer fields are not framing; evserver checks"
          " their syntax only and discards them", _in_a_trailer),
    Known("minor version", (H11,), "README Versions: HTTP/1.2 to 1.9 are read as 1.1 (RFC 9110"
          " 6.2: same major version)", _minor_version_above_one),
    Known("higher minor version", (LLHTTP,), "README Versions, RFC 9110 6.2: a higher minor"
          " version is answered as 1.1; llhttp refuses it", _they_refuse("Invalid HTTP version")),
    Known("empty lines first", (H11,), "RFC 9112 2.2: a server SHOULD ignore at least one empty"
          " line before a request line; h11 refuses them", _line_breaks_before_a_request),
    Known("upgrade", (LLHTTP,), "RFC 9110 7.8, 9.3.6: llhttp hands the connection over on"
          " CONNECT or Upgrade; evserver answers them as requests",
          _they_refuse("upgrade")),
    Known("chunk extension whitespace", BOTH, "RFC 9112 7.1.1: BWS is allowed around ';' and"
          " '=' in a chunk extension; the judges refuse it",
          _they_refuse("Invalid character in chunk size", "illegal chunk header",
                       "Invalid character in chunk extensions")),
    Known("transfer coding whitespace", (LLHTTP,), "RFC 9112 5: trailing OWS (HTAB) is not part"
          " of the Transfer-Encoding value", _they_refuse("Request has invalid `Transfer-Enc")),
)


def explain(difference: Difference) -> Known | None:
    """The row explaining ``difference``, or None: unexplained."""
    for known in KNOWN:
        if difference.judge in known.judges and known.matches(difference):
            return known
    return None
