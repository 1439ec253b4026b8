"""The HTTP/1.1 request grammar as character classes and compiled patterns (RFC 9110, RFC 9112).

What this module knows: which characters and sequences the ABNF of RFC 9110 (tokens, field
values, lists), RFC 9112 (request line, request-target forms, field lines, chunked framing) and
RFC 3986 (URI characters) allow, each rule with its section. What it must not know: what a match
means (which status a mismatch earns, what a field does), or any state: the parser and the
checks (``evserver.http.parser``, ``evserver.http.checks``) decide that.

Invariants:

- Every pattern works on text decoded as ISO-8859-1 (one character per byte) or on the bytes
  themselves, and uses explicit character classes only: never ``\\s``, ``\\d`` or ``\\w``,
  which accept ``\\x85``, ``\\xa0``, ``\\x1c`` or non-ASCII digits.
- Every text pattern is compiled with ``re.ASCII``, so case-insensitive matching cannot fold a
  non-ASCII letter onto an ASCII one (a bytes pattern is ASCII already).
- The patterns are built once, at import. A module that calls their methods on a hot path binds
  them to globals of its own by assignment (``evserver.http.parser`` says why).

Decision taken where the RFCs leave a choice (the parser and the checks state the others):
request-target characters are those RFC 3986 allows in a URI (unreserved, gen-delims except
``#``, sub-delims) plus ``%``, plus the printable ones RFC 3986 calls unsafe (``"``, ``<``,
``>``, ``\\``, ``^``, backtick, ``{``, ``|``, ``}``). Real browsers and tools send those raw
(Chrome leaves ``{``, ``|``, ``}`` and ``^`` unencoded), nginx accepts them, they cannot shift
framing (no SP, CTL or obs-text), and the handler percent-decodes and judges the path anyway.
SP, CTLs, bytes >= 0x80 and ``#`` (a fragment is never sent, RFC 9112 3.2) are 400.
"""

from __future__ import annotations

import re
from typing import Final

from evserver.http.limits import MAX_CHUNK_SIZE_DIGITS

# -- character classes (the inside of a [...] class) ------------------------------------------

TCHAR: Final = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
"""RFC 9110 5.6.2: tchar, the characters of a token."""

QVALUE: Final = r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?"
"""RFC 9110 12.4.2 qvalue (a weight of Accept and Accept-Encoding), as pattern text to embed:
"0" with up to three decimals, or "1" with up to three zeros."""

VCHAR_OBS: Final = r"\x21-\x7e\x80-\xff"
"""RFC 9110 5.5: field-vchar = VCHAR / obs-text."""

TARGET_CHAR: Final = r"A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%\"<>\\^`{|}"
"""RFC 3986 2.2/2.3: unreserved, gen-delims without ``#``, sub-delims; ``%`` (pct-encoded); and
the unsafe printable characters browsers send raw (see the module docstring)."""

AUTHORITY_CHAR: Final = r"A-Za-z0-9\-._~:\[\]@!$&'()*+,;=%"
""":data:`TARGET_CHAR` without ``/`` and ``?`` (and the unsafe ones): an absolute-form authority."""

QUOTED_STRING: Final = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
"""RFC 9110 5.6.4: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE."""

FIELD_VALUE: Final = rf"(?:[{VCHAR_OBS}](?:[ \t{VCHAR_OBS}]*[{VCHAR_OBS}])?)?"
"""RFC 9110 5.5: field-value without leading or trailing whitespace; HTAB and SP only inside."""

ORDINARY_HEAD_BYTES: Final = bytes(
    byte for byte in range(256) if byte == 0x09 or 0x20 <= byte <= 0x7E or byte >= 0x80
)
"""Bytes allowed anywhere in a head line: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5). As a
``bytes.translate`` deletion table it leaves only the CTLs, CR and LF among them."""

# -- the request line (RFC 9112 3) -------------------------------------------------------------

REQUEST_LINE: Final = re.compile(
    rf"([{TCHAR}]+) ([{TARGET_CHAR}]+) HTTP/([0-9])\.([0-9])", re.ASCII
)
"""RFC 9112 3: request-line = method SP request-target SP HTTP-version, exactly one SP each;
RFC 9112 2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT (case-sensitive). Groups: method, target,
major, minor."""

ORIGIN_FORM: Final = re.compile(rf"/[{TARGET_CHAR}]*", re.ASCII)
"""RFC 9112 3.2.1: origin-form = absolute-path [ "?" query ]."""

ABSOLUTE_FORM: Final = re.compile(
    rf"(?i:https?)://[{AUTHORITY_CHAR}]+(?:[/?][{TARGET_CHAR}]*)?", re.ASCII
)
"""RFC 9112 3.2.2: absolute-form = absolute-URI; the http and https schemes, with a non-empty
authority (RFC 9110 4.2.1: an http URI with an empty host is invalid)."""

AUTHORITY_FORM: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+):[0-9]+", re.ASCII
)
"""RFC 9112 3.2.3: authority-form = uri-host ":" port (CONNECT only)."""

# -- field lines (RFC 9112 5, RFC 9110 5) ------------------------------------------------------

FIELD_LINE: Final = re.compile(rf"([{TCHAR}]+):[ \t]*({FIELD_VALUE})[ \t]*\r\n", re.ASCII)
"""RFC 9112 5: field-line = field-name ":" OWS field-value OWS, then CRLF. No whitespace before
the colon (5.1), no obs-fold (5.2: a line starting with SP/HTAB is not a field name), no CTL but
HTAB inside the value (RFC 9110 5.5), OWS = SP / HTAB. Groups: name, value. One line."""

FIELD_BLOCK: Final = re.compile(rf"(?:[{TCHAR}]+:[ \t]*{FIELD_VALUE}[ \t]*\r\n)*", re.ASCII)
"""Any number of :data:`FIELD_LINE`, without groups: a whole trailer section (RFC 9112 7.1.2),
and the reference the parser's fast field loop is tested against."""

TOKEN: Final = re.compile(rf"[{TCHAR}]+", re.ASCII)
"""RFC 9110 5.6.2: token = 1*tchar (field names, methods, list elements such as Connection's)."""

HOST: Final = re.compile(r"[^ \t/?#@]*", re.ASCII)
"""RFC 9112 3.2 ``Host``, loosely: no whitespace, ``/``, ``?``, ``#`` or ``@`` (CTLs are refused
for the whole head before this runs)."""

DIGITS: Final = re.compile(r"[0-9]+", re.ASCII)
"""RFC 9112 6.2: Content-Length = 1*DIGIT, ASCII digits only."""

CONTENT_LENGTH_LIST: Final = re.compile(r"[0-9]+(?:[ \t]*,[ \t]*[0-9]+)*", re.ASCII)
"""RFC 9110 8.6 with 5.6.1 lists: identical values may arrive as ``5, 5`` (or two fields)."""

TRANSFER_CODING: Final = re.compile(
    rf"([{TCHAR}]+)(?:[ \t]*;[ \t]*[{TCHAR}]+[ \t]*=[ \t]*(?:[{TCHAR}]+|{QUOTED_STRING}))*"
    r"(?:[ \t]*,[ \t]*|\Z)",
    re.ASCII,
)
"""RFC 9112 6.1 / RFC 9110 10.1.4: transfer-coding = token *( OWS ";" OWS transfer-parameter ),
transfer-parameter = token BWS "=" BWS ( token / quoted-string ); one list element plus its
separator (or the end). Group: the coding's name."""

# -- chunked framing (RFC 9112 7.1) ------------------------------------------------------------

CHUNK_LINE: Final = re.compile(
    (
        rf"([0-9A-Fa-f]{{1,{MAX_CHUNK_SIZE_DIGITS}}})"
        rf"(?:[ \t]*;[ \t]*[{TCHAR}]+(?:[ \t]*=[ \t]*(?:[{TCHAR}]+|{QUOTED_STRING}))?)*"
    ).encode("ascii")
)
"""RFC 9112 7.1: chunk-size = 1*HEXDIG, chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS
ext-val ] ), ext-val = token / quoted-string; no trailing whitespace without an extension. On
bytes, without the CRLF. Group: the size, at most ``MAX_CHUNK_SIZE_DIGITS`` hex digits."""
