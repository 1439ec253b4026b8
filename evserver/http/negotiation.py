"""Proactive negotiation on ``Accept`` (RFC 9110 12.5.1): which offered media type to send.

What this module knows: the grammar of the ``Accept`` field and the rules that rank media ranges
(quality values, RFC 9110 12.4.2; the more specific range wins, 12.5.1). What it must not know:
what the offered types are for, files, responses. A server resource that has several
representations (a folder's listing as HTML or JSON, the stats page as a dashboard or JSON)
hands in the field's value and its offers, most preferred first, and gets one offer back.

Decisions (RFC 9110 leaves them to the server):

- Never 406. When nothing offered is acceptable (every match has ``q=0``), the first offer is
  sent, as RFC 9110 12.5.1 allows ("disregard the header field"); an ``Accept`` that does not
  parse at all is treated as absent. Bad syntax is never an error: an element that does not parse
  (no ``/``, a ``q`` out of range or with four decimals) is skipped, the others still count.
- Media-type parameters other than ``q`` are ignored when matching: ``application/json;
  charset=utf-8`` asks for JSON. (Strictly, a range with parameters matches only a type with the
  same parameters; the offers here have none, and a client that names the type wants it.)
- Ties: the higher ``q`` wins; at equal ``q``, the offer matched by the more specific range
  (``type/subtype`` over ``type/*`` over ``*/*``); then the server's order. So
  ``application/json, */*`` gets JSON from a resource that prefers HTML, and a browser's
  ``text/html, ..., */*;q=0.8`` gets HTML from one that prefers JSON.

Only the few requests that reach a negotiated resource pay for this; the file path never calls it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from evserver.http.grammar import QVALUE, TCHAR

# RFC 9110 5.6.2 token; 12.5.1 media-range; 5.6.6 parameters (quoted-string values allowed);
# 12.4.2 qvalue. One element of the comma list, parsed from its start.
_TOKEN: Final = rf"[{TCHAR}]+"
_MEDIA_RANGE: Final = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*")
_PARAMETER: Final = re.compile(
    rf';[ \t]*({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*'
)
_QVALUE: Final = re.compile(QVALUE)

_ANY: Final = "*"


def parse_accept(field_value: str) -> list[tuple[str, str, float]]:
    """The valid elements of an ``Accept`` value as ``(type, subtype, q)``, lower-cased.

    Elements that do not parse are left out (see the module's decisions); an empty list means
    "as if absent".
    """
    ranges = []
    for element in _split_elements(field_value):
        match = _MEDIA_RANGE.match(element)
        if match is None:
            continue
        media_type, subtype = match.group(1).lower(), match.group(2).lower()
        if media_type == _ANY and subtype != _ANY:
            continue  # "*/html" is not a media range
        quality = 1.0
        position = match.end()
        valid = True
        while position < len(element):
            parameter = _PARAMETER.match(element, position)
            if parameter is None:
                valid = False
                break
            if parameter.group(1).lower() == "q":
                if _QVALUE.fullmatch(parameter.group(2)) is None:
                    valid = False
                    break
                quality = float(parameter.group(2))
            position = parameter.end()
        if valid:
            ranges.append((media_type, subtype, quality))
    return ranges


def negotiate_media_type(field_value: str | None, offers: Sequence[str]) -> str:
    """The offer to send for a request whose ``Accept`` value is ``field_value`` (``None`` when
    the request has none). ``offers`` are ``type/subtype`` in lower case, preferred first."""
    if not field_value:
        return offers[0]
    ranges = parse_accept(field_value)
    if not ranges:
        return offers[0]
    best = offers[0]
    best_rank = (0.0, 0)
    for offer in offers:
        rank = _rank(offer, ranges)
        if rank > best_rank:  # strictly better: at a tie the earlier offer stays
            best, best_rank = offer, rank
    return best


def _rank(offer: str, ranges: list[tuple[str, str, float]]) -> tuple[float, int]:
    """``(q, specificity)`` of the most specific range matching ``offer`` (RFC 9110 12.5.1);
    ``(0.0, 0)`` when none matches. Among equally specific ranges the highest ``q`` counts."""
    offer_type, _, offer_subtype = offer.partition("/")
    quality, specificity = 0.0, 0
    for media_type, subtype, q in ranges:
        if media_type == _ANY:
            level = 1
        elif media_type != offer_type:
            continue
        elif subtype == _ANY:
            level = 2
        elif subtype == offer_subtype:
            level = 3
        else:
            continue
        if level > specificity or (level == specificity and q > quality):
            quality, specificity = q, level
    return (quality, specificity) if quality > 0 else (0.0, 0)


def _split_elements(field_value: str) -> list[str]:
    """The comma-separated elements, commas inside quoted parameter values kept (RFC 9110
    5.6.1 lists; 5.6.4 quoted-string)."""
    if '"' not in field_value:
        return field_value.split(",")
    elements, start, quoted, escaped = [], 0, False, False
    for index, char in enumerate(field_value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            elements.append(field_value[start:index])
            start = index + 1
    elements.append(field_value[start:])
    return elements
