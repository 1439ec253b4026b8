"""Conditional requests for the file handler: pure functions on header values.

What this module knows: the grammar and evaluation rules of RFC 9110 section 13 (preconditions:
``If-Match``, ``If-Unmodified-Since``, ``If-None-Match``, ``If-Modified-Since``, ``If-Range``).
What it must not know: files, descriptors, responses. It is handed a representation's validators
(its strong entity-tag, its modification time in whole seconds) and the request's header values,
and answers with numbers. That keeps every rule testable without a filesystem, and keeps
``evserver.static.handler`` about files. Byte ranges themselves are ``evserver.static.ranges``.

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
"""

from __future__ import annotations

import re
from typing import Final

from evserver.http.dates import parse_http_date

NOT_MODIFIED: Final = 304
PRECONDITION_FAILED: Final = 412

# RFC 9110 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text.
# One element of a comma list, with the optional whitespace around it (RFC 9110 5.6.1).
_ENTITY_TAG_ELEMENT = re.compile(r'[ \t]*(?:(W/)?("[\x21\x23-\x7e\x80-\xff]*"))?[ \t]*(,|$)')


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
