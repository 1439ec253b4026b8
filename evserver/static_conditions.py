"""Conditional requests and byte ranges for the static handler: pure functions on header values.

What this module knows: the grammar and evaluation rules of RFC 9110 section 13 (preconditions:
``If-Match``, ``If-Unmodified-Since``, ``If-None-Match``, ``If-Modified-Since``, ``If-Range``)
and section 14 (``Range: bytes=...``). What it must not know: files, descriptors, responses. It
is handed a representation's validators (its strong entity-tag, its modification time in whole
seconds, its size) and the request's header values, and answers with numbers. That keeps every
rule testable without a filesystem, and keeps ``evserver.static`` about files.

Decisions (the RFCs leave them to the server):

- A malformed entity-tag list matches nothing. So a malformed ``If-Match`` fails (412), a
  malformed ``If-None-Match`` never gives 304 (and, being present, still disables
  ``If-Modified-Since``, RFC 9110 13.1.3), a malformed ``If-Range`` fails (the whole file is sent).
- Dates that do not parse are ignored, as RFC 9110 13.1.3 and 13.1.4 require. Dates compare at
  one-second resolution: ``Last-Modified`` carries whole seconds, so that is all a client can
  echo back.
- ``If-Range`` with a date matches only the exact ``Last-Modified`` second (RFC 9110 13.1.5).
  The "strong date" refinement (a date at least one second before the response's ``Date``) is not
  applied; an ETag is the reliable validator and clients prefer it.
- Ranges: the unit is ``bytes`` (case-insensitive, RFC 9110 14.1); anything else, or any syntax
  error, means "ignore the header" (RFC 9110 14.2 allows it) and the whole file is sent.
  More than :data:`MAX_RANGES` ranges, or satisfiable ranges that overlap or are not in ascending
  order, are also ignored (RFC 9110 14.3 and 17.15 allow refusing such abuse); they are not
  coalesced, because a client that asks for that is either broken or hostile.
- A zero-length file has no satisfiable ``first-last`` or ``first-`` range (416); a suffix range
  ``-N`` (N > 0) is "satisfiable" by RFC 9110 14.1.1 but selects nothing, and no
  ``Content-Range`` can express an empty range, so the header is ignored and the empty file is
  sent with 200.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Final

from evserver.http.dates import parse_http_date

MAX_RANGES: Final = 16
"""More ranges than this is answered with the whole file: real clients ask for one or a few."""

MAX_POSITION_DIGITS: Final = 19
"""Longer digit strings exceed any file size (int64); they are clipped instead of parsed, so a
huge number cannot hit Python's int-parsing limit or cost quadratic time."""

_HUGE_POSITION: Final = 10**MAX_POSITION_DIGITS
"""What an over-long digit string stands for: more than any file holds."""

NOT_MODIFIED: Final = 304
PRECONDITION_FAILED: Final = 412

# RFC 9110 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text.
# One element of a comma list, with the optional whitespace around it (RFC 9110 5.6.1).
_ENTITY_TAG_ELEMENT = re.compile(r'[ \t]*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*"))?[ \t]*(,|$)')

# RFC 9110 14.1.1: int-range = first-pos "-" [ last-pos ] ; suffix-range = "-" suffix-length.
_RANGE_SPEC = re.compile(r"[ \t]*([0-9]*)-([0-9]*)[ \t]*")

_BYTES_UNIT_PREFIX_LENGTH: Final = len("bytes=")


def entity_tags_match(field_value: str, etag: str, *, weak: bool) -> bool:
    """Does the list ``field_value`` (``*`` or entity-tags) match our strong ``etag``?

    ``weak=True`` is the weak comparison of If-None-Match (RFC 9110 8.8.3.2: opaque tags equal,
    ``W/`` ignored); ``weak=False`` is the strong comparison of If-Match (neither may be weak).
    ``*`` matches because the representation exists (RFC 9110 13.1.1, 13.1.2). A malformed list
    matches nothing.
    """
    if field_value.strip(" \t") == "*":
        return True
    found = False
    position = 0
    end = len(field_value)
    while position < end:
        element = _ENTITY_TAG_ELEMENT.match(field_value, position)
        if element is None or element.end() == position:
            return False  # malformed: nothing matches
        weak_prefix, tag, _ = element.groups()
        if tag is not None and tag == etag and (weak or weak_prefix is None):
            found = True  # keep scanning: a malformed tail still makes the whole list malformed
        position = element.end()
    return found


def evaluate_preconditions(
    headers: dict[str, str], etag: str, modified_second: int, *, safe_method: bool
) -> int | None:
    """RFC 9110 13.2.2 steps 1 to 4: 412, 304, or ``None`` ("go on and answer normally").

    ``safe_method`` is true for GET and HEAD: only they get a 304; other methods get 412 where a
    GET would get 304 (RFC 9110 13.1.2).
    """
    if_match = headers.get("if-match")
    if if_match is not None:  # step 1 (RFC 9110 13.1.1, strong comparison)
        if not entity_tags_match(if_match, etag, weak=False):
            return PRECONDITION_FAILED
    else:  # step 2 (RFC 9110 13.1.4), only when If-Match is absent
        if_unmodified_since = headers.get("if-unmodified-since")
        if if_unmodified_since is not None:
            limit = parse_http_date(if_unmodified_since)
            if limit is not None and modified_second > limit:
                return PRECONDITION_FAILED
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:  # step 3 (RFC 9110 13.1.2, weak comparison)
        if entity_tags_match(if_none_match, etag, weak=True):
            return NOT_MODIFIED if safe_method else PRECONDITION_FAILED
    elif safe_method:  # step 4 (RFC 9110 13.1.3): only GET/HEAD, only without If-None-Match
        if_modified_since = headers.get("if-modified-since")
        if if_modified_since is not None:
            since = parse_http_date(if_modified_since)
            if since is not None and modified_second <= since:
                return NOT_MODIFIED
    return None


def if_range_holds(field_value: str, etag: str, modified_second: int) -> bool:
    """RFC 9110 13.1.5: may the Range header be honoured? (step 5 of 13.2.2)

    An entity-tag must match strongly (a weak tag never does); a date must equal the
    ``Last-Modified`` second exactly. Anything else (malformed) fails: the whole file is sent.
    """
    value = field_value.strip(" \t")
    if value.startswith('"'):
        return value == etag
    if value.startswith("W/"):
        return False
    date = parse_http_date(value)
    return date is not None and date == modified_second


def parse_byte_ranges(field_value: str, size: int) -> list[tuple[int, int]] | None:
    """The satisfiable ranges of a Range header, as ``(first, last)`` inclusive byte positions.

    - ``None``: ignore the header and send the whole representation (bad syntax, another unit,
      too many ranges, overlapping or unordered ranges, a suffix range of an empty file);
    - ``[]``: nothing is satisfiable, answer 416 (RFC 9110 15.5.17);
    - otherwise one or more ranges clipped to the size, in ascending order, not overlapping.
    """
    if field_value[:_BYTES_UNIT_PREFIX_LENGTH].lower() != "bytes=":
        return None  # RFC 9110 14.1: range-unit "=" range-set; an unknown unit is ignored
    specs = field_value[_BYTES_UNIT_PREFIX_LENGTH:].split(",")
    if len(specs) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    saw_spec = False
    empty_suffix_range = False
    for spec in specs:
        if not spec.strip(" \t"):
            continue  # RFC 9110 5.6.1: empty list elements are allowed and ignored
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        saw_spec = True
        first_text, last_text = match.groups()
        if first_text:
            first = _position(first_text)
            if last_text:
                last = _position(last_text)
                if last < first:
                    return None  # RFC 9110 14.1.1: an invalid int-range makes the set invalid
            else:
                last = size - 1
            if first < size:  # RFC 9110 14.1.1: satisfiable when first-pos < length
                ranges.append((first, min(last, size - 1)))
        elif last_text:
            suffix_length = _position(last_text)
            if suffix_length == 0:
                continue  # "-0" selects nothing: unsatisfiable
            if size == 0:
                empty_suffix_range = True
                continue
            ranges.append((max(0, size - suffix_length), size - 1))
        else:
            return None  # "-" alone
    if not saw_spec:
        return None
    if empty_suffix_range and not ranges:
        return None
    for previous, current in pairwise(ranges):
        if current[0] <= previous[1]:
            return None  # overlapping or unordered: refuse the multipart, send the whole file
    return ranges


def _position(digits: str) -> int:
    if len(digits) > MAX_POSITION_DIGITS:
        return _HUGE_POSITION
    return int(digits)
