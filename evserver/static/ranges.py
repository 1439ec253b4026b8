"""Byte ranges for the file handler: the Range header parsed, and the 206 that answers it.

What this module knows: RFC 9110 section 14 (``Range: bytes=...``, ``Content-Range``, 206 and
416) and the ``multipart/byteranges`` body of several ranges (RFC 9110 14.6). What it must not
know: paths, the filesystem, the cache's rules. It is handed a :class:`FileEntry` (size,
validators, content type, the bytes when they are in memory) and, for a file that is not, an open
descriptor that its response takes over as :class:`~evserver.bodies.FileRegion` pieces; it never
reads, opens or closes one. :func:`parse_byte_ranges` is a pure function on the header value.

Decisions (the RFCs leave them to the server):

- The unit is ``bytes`` (case-insensitive, RFC 9110 14.1); anything else, or any syntax error,
  means "ignore the header" (RFC 9110 14.2 allows it) and the whole file is sent.
  More than :data:`MAX_RANGES` ranges, or satisfiable ranges that overlap or are not in ascending
  order, are also ignored (RFC 9110 14.3 and 17.15 allow refusing such abuse); they are not
  coalesced, because a client that asks for that is either broken or hostile.
- A zero-length file has no satisfiable ``first-last`` or ``first-`` range (416); a suffix range
  ``-N`` (N > 0) is "satisfiable" by RFC 9110 14.1.1 but selects nothing, and no
  ``Content-Range`` can express an empty range, so the header is ignored and the empty file is
  sent with 200.
- ``If-Range`` (RFC 9110 13.1.5, evaluated by ``evserver.static.conditions``) that fails also
  means the whole file.
- A representation in a content coding (a precompressed sidecar) is ranged over its encoded
  bytes, as RFC 9110 14 defines ranges on the selected representation; the 206 carries its
  ``Content-Encoding``. Several ranges of such a representation are ignored (the whole of it is
  sent): a ``multipart/byteranges`` body has no agreed place for the parts' coding.
"""

from __future__ import annotations

import re
import secrets
from itertools import pairwise
from typing import Final

from evserver.bodies import FileRegion, Item, Response
from evserver.http.response import serialize_fields
from evserver.static.cache import FileEntry
from evserver.static.conditions import if_range_holds
from evserver.static.refusals import Refusal

MAX_RANGES: Final = 16
"""More ranges than this is answered with the whole file: real clients ask for one or a few."""

MAX_POSITION_DIGITS: Final = 19
"""Longer digit strings exceed any file size (int64); they are clipped instead of parsed, so a
huge number cannot hit Python's int-parsing limit or cost quadratic time."""

_HUGE_POSITION: Final = 10**MAX_POSITION_DIGITS
"""What an over-long digit string stands for: more than any file holds."""

RANGE_NOT_SATISFIABLE: Final = 416

# RFC 9110 14.1.1: int-range = first-pos "-" [ last-pos ] ; suffix-range = "-" suffix-length.
_RANGE_SPEC = re.compile(r"[ \t]*([0-9]*)-([0-9]*)[ \t]*")

_BYTES_UNIT_PREFIX_LENGTH: Final = len("bytes=")


def ranged_response(headers: dict[str, str], entry: FileEntry, fd: int | None) -> Response | None:
    """The 206 for a GET's Range header, or ``None`` to send the whole file.

    ``fd`` (``None`` when the bytes are in ``entry.data``) is taken over by the 206 it returns;
    with ``None`` returned, or the 416 refusal raised (RFC 9110 15.5.17, with the
    ``Content-Range`` it requires), it stays the caller's to close.
    """
    if_range = headers.get("if-range")
    if if_range is not None and not if_range_holds(if_range, entry.etag, entry.modified_second):
        return None  # RFC 9110 13.1.5: the validator failed, send the whole representation
    ranges = parse_byte_ranges(headers["range"], entry.size)
    if ranges is None:
        return None
    if not ranges:
        content_range = serialize_fields([("Content-Range", f"bytes */{entry.size}")])
        raise Refusal(RANGE_NOT_SATISFIABLE, content_range)
    if len(ranges) == 1:
        first, last = ranges[0]
        count = last - first + 1
        fields = serialize_fields(
            [
                ("Content-Type", entry.content_type),
                ("Content-Length", str(count)),
                ("Content-Range", f"bytes {first}-{last}/{entry.size}"),
                ("Accept-Ranges", "bytes"),
                *entry.validator_fields(),
            ]
        ) + entry.representation_fields
        piece = _piece(entry, fd, first, count, owns_fd=True)
        return Response(206, fields, (piece,), count)
    if entry.coding is not None:
        return None  # the parts of a multipart body could not say their coding
    return _multipart_response(entry, fd, ranges)


def _piece(entry: FileEntry, fd: int | None, first: int, count: int, *, owns_fd: bool) -> Item:
    if entry.data is not None:
        return entry.data[first : first + count]
    assert fd is not None
    return FileRegion(fd, first, count, close_after=owns_fd)


def _multipart_response(
    entry: FileEntry, fd: int | None, ranges: list[tuple[int, int]]
) -> Response:
    """RFC 9110 14.6: ``multipart/byteranges``; parts share ``fd``, only the last one owns it."""
    # A random boundary per response cannot occur in the file by accident (RFC 2046 5.1.1).
    boundary = secrets.token_hex(16)
    body: list[Item] = []
    length = 0
    last_index = len(ranges) - 1
    for index, (first, last) in enumerate(ranges):
        part_head = (
            f"\r\n--{boundary}\r\nContent-Type: {entry.content_type}\r\n"
            f"Content-Range: bytes {first}-{last}/{entry.size}\r\n\r\n"
        ).encode("ascii")
        count = last - first + 1
        body.append(part_head)
        body.append(_piece(entry, fd, first, count, owns_fd=index == last_index))
        length += len(part_head) + count
    closing = f"\r\n--{boundary}--\r\n".encode("ascii")
    body.append(closing)
    length += len(closing)
    fields = serialize_fields(
        [
            ("Content-Type", f"multipart/byteranges; boundary={boundary}"),
            ("Content-Length", str(length)),
            ("Accept-Ranges", "bytes"),
            *entry.validator_fields(),
        ]
    ) + entry.representation_fields
    return Response(206, fields, tuple(body), length)


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
