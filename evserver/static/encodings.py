"""Content codings for the file handler: ``Accept-Encoding`` negotiation, and gzip made in memory.

What this module knows: content codings (RFC 9110 8.4), the ``Accept-Encoding`` field with its
q-values (RFC 9110 12.5.3, the weight of 12.4.2), the names a precompressed copy of a file goes
by (``app.js.br``, ``app.js.zst``, ``app.js.gz``: its *sidecars*) and how to gzip bytes with
``zlib``. What it must not know: files, the cache, requests and responses. It is handed a field
value and the codings one file is offered in, and answers with a coding, or ``None`` for the
file as it is (the ``identity`` coding).

Decisions (RFC 9110 leaves them to the server):

- No ``Accept-Encoding`` field: identity. RFC 9110 12.5.3 lets a client without the field accept
  any coding, but the clients that send none (curl without ``--compressed``, wrk, scripts) expect
  the bytes as they are on disk, and every common server sends them that.
- A field that does not parse (a token that is not one, a weight that is not ``q=`` with a
  q-value of RFC 9110 12.4.2, a parameter) is ignored as a whole: identity, never an error.
- Identity is always acceptable, even after ``identity;q=0`` or ``*;q=0``: the alternative, a
  406, helps no client, and RFC 9110 12.5.3 lets the server send identity. Identity is chosen
  over a coding only when its q-value is strictly higher.
- A coding the field does not name is acceptable only through ``*``. Among the acceptable
  codings the file is offered in, the highest q-value wins, and a tie goes to the server's order,
  :data:`PREFERENCE` (smallest output first). ``x-gzip`` is ``gzip`` (RFC 9110 8.4.1.3); names
  are case-insensitive; a coding named twice keeps its first weight.
- zstd is offered only as a sidecar: the standard library of Python 3.11 cannot compress it.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

from evserver.http.grammar import QVALUE, TCHAR

PREFERENCE: Final = ("br", "zstd", "gzip")
"""The codings a file can be sent in, in the server's order on a tie (smallest output first)."""

SIDECAR_SUFFIXES: Final = {"br": ".br", "zstd": ".zst", "gzip": ".gz"}
"""Coding -> the suffix of the file that holds a precompressed copy (``app.js`` -> ``app.js.br``),
the names ``brotli -k``, ``zstd`` and ``gzip -k`` give their output."""

GZIP_LEVEL: Final = 6
"""zlib's default balance. A file is compressed again whenever its cache entry is rebuilt (it
changed, or it was evicted), so a slower level would make a flood of distinct URLs costlier."""

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
"""A gzip wrapper (RFC 1952) around the deflate stream, with a zero timestamp, so the same file
always compresses to the same bytes."""

_Q_SCALE: Final = 1000
"""q-values have at most three decimals (RFC 9110 12.4.2): kept as whole thousandths."""

# RFC 9110 12.5.3: codings [ weight ]; codings = content-coding / "identity" / "*" (tokens);
# weight = OWS ";" OWS "q=" qvalue; qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
# ABNF strings are case-insensitive, so "Q=" is a weight too.
_ELEMENT = re.compile(
    rf"[ \t]*([{TCHAR}]+)[ \t]*"
    rf"(?:;[ \t]*[qQ]=({QVALUE}))?[ \t]*"
)


def parse_accept_encoding(value: str) -> dict[str, int] | None:
    """Coding (lower case) -> q-value in thousandths, or ``None`` when the field is malformed.

    An empty field (or one of empty elements only) gives ``{}``: no coding is wanted.
    """
    weights: dict[str, int] = {}
    for element in value.split(","):
        if not element.strip(" \t"):
            continue  # RFC 9110 5.6.1: empty list elements are allowed and ignored
        match = _ELEMENT.fullmatch(element)
        if match is None:
            return None
        coding, qvalue = match.groups()
        coding = coding.lower()
        if coding == "x-gzip":
            coding = "gzip"
        if qvalue is None:
            weight = _Q_SCALE
        else:
            whole, _, fraction = qvalue.partition(".")
            weight = int(whole) * _Q_SCALE + int((fraction + "000")[:3])
        weights.setdefault(coding, weight)
    return weights


def negotiate(accept_encoding: str, offered: tuple[str, ...]) -> str | None:
    """The coding of ``offered`` (in :data:`PREFERENCE` order) to send, or ``None`` for identity."""
    weights = parse_accept_encoding(accept_encoding)
    if not weights:
        return None
    star = weights.get("*")
    identity_weight = weights.get("identity", _Q_SCALE if star is None else star)
    unnamed_weight = 0 if star is None else star
    best = None
    best_weight = 0
    for coding in offered:
        weight = weights.get(coding, unnamed_weight)
        if weight > best_weight:
            best, best_weight = coding, weight
    if best is None or best_weight < identity_weight:
        return None
    return best


def gzip_compress(data: bytes) -> bytes:
    """``data`` in the gzip format (RFC 1952), the same bytes for the same input every time."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    return compressor.compress(data) + compressor.flush()
