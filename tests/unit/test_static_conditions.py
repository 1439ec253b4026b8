"""Conditional requests (RFC 9110 13) and ranges (RFC 9110 14): the pure rules and the handler."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from evserver.bodies import FileRegion, Response
from evserver.http.dates import format_http_date
from evserver.static import StaticHandler
from evserver.static.conditions import entity_tags_match, evaluate_preconditions, if_range_holds
from evserver.static.ranges import MAX_RANGES, parse_byte_ranges
from tests.support.static import LARGE, SMALL, body_of, field, fields_of, make_tree, request

ETAG = '"abc-14-1f"'
MTIME = 1_000_000_000  # Sun, 09 Sep 2001 01:46:40 GMT


@pytest.fixture
def root(tmp_path: Path) -> str:
    tree = make_tree(tmp_path)
    for name in ("small.txt", "large.bin", "empty.txt"):
        os.utime(tree / name, (MTIME, MTIME))  # whole seconds: dates compare exactly
    return str(tree)


@pytest.fixture
def handler(root: str) -> StaticHandler:
    return StaticHandler(root)


def etag_of(handler: StaticHandler, target: str = "/small.txt") -> str:
    return field(handler(request(target, "HEAD")), "etag")


# -- entity-tag lists ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "weak", "strong"),
    [
        (ETAG, True, True),
        ("*", True, True),
        (" * ", True, True),
        ("W/" + ETAG, True, False),
        ('"x", ' + ETAG, True, True),
        ('"x",W/"y" ,  ' + ETAG + " ,", True, True),
        (', , "x",' + ETAG, True, True),
        ('"x"', False, False),
        ('"abc-14-1F"', False, False),  # opaque tags compare octet by octet
        ("abc-14-1f", False, False),  # unquoted: malformed
        (ETAG + " junk", False, False),  # a malformed tail spoils the list
        (ETAG + ', "unterminated', False, False),
        ('w/"abc-14-1f"', False, False),  # the W is case-sensitive
        ('"a"b"', False, False),
        ("", False, False),
        ("*, " + ETAG, False, False),  # "*" is only valid alone
    ],
)
def test_entity_tags_match(value: str, weak: bool, strong: bool) -> None:
    assert entity_tags_match(value, ETAG, weak=True) is weak
    assert entity_tags_match(value, ETAG, weak=False) is strong


# -- the evaluation order of RFC 9110 13.2.2 -------------------------------------------------------

EARLIER = format_http_date(MTIME - 1)
SAME = format_http_date(MTIME)
LATER = format_http_date(MTIME + 1)


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, None),
        ({"if-match": ETAG}, None),
        ({"if-match": "*"}, None),
        ({"if-match": '"other"'}, 412),
        ({"if-match": "W/" + ETAG}, 412),  # strong comparison
        ({"if-match": "garbage"}, 412),
        ({"if-unmodified-since": SAME}, None),
        ({"if-unmodified-since": LATER}, None),
        ({"if-unmodified-since": EARLIER}, 412),
        ({"if-unmodified-since": "yesterday"}, None),  # invalid date: ignored
        ({"if-match": ETAG, "if-unmodified-since": EARLIER}, None),  # step 2 skipped
        ({"if-match": '"other"', "if-none-match": ETAG}, 412),  # step 1 first
        ({"if-none-match": ETAG}, 304),
        ({"if-none-match": "W/" + ETAG}, 304),  # weak comparison
        ({"if-none-match": '"x", ' + ETAG}, 304),
        ({"if-none-match": "*"}, 304),
        ({"if-none-match": '"other"'}, None),
        ({"if-none-match": "garbage"}, None),
        ({"if-modified-since": SAME}, 304),
        ({"if-modified-since": LATER}, 304),
        ({"if-modified-since": EARLIER}, None),
        ({"if-modified-since": "Sun, 06 Nov 1994 08:49:37 GMT, x"}, None),
        ({"if-modified-since": "Sunday, 09-Sep-01 01:46:40 GMT"}, 304),  # RFC 850 form
        ({"if-modified-since": "Sun Sep  9 01:46:40 2001"}, 304),  # asctime form
        ({"if-none-match": '"other"', "if-modified-since": LATER}, None),  # IMS ignored
        ({"if-none-match": ETAG, "if-modified-since": EARLIER}, 304),
        ({"if-unmodified-since": EARLIER, "if-none-match": ETAG}, 412),  # step 2 before 3
    ],
)
def test_preconditions(headers: dict[str, str], outcome: int | None) -> None:
    assert evaluate_preconditions(headers, ETAG, MTIME, safe_method=True) == outcome


def test_none_match_for_unsafe_methods_is_412() -> None:
    assert evaluate_preconditions({"if-none-match": ETAG}, ETAG, MTIME, safe_method=False) == 412
    since = {"if-modified-since": SAME}
    assert evaluate_preconditions(since, ETAG, MTIME, safe_method=False) is None


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        (ETAG, True),
        (" " + ETAG + " ", True),
        ("W/" + ETAG, False),
        ('"other"', False),
        (SAME, True),
        (EARLIER, False),
        (LATER, False),
        ("not a date", False),
        ("", False),
    ],
)
def test_if_range_holds(value: str, holds: bool) -> None:
    assert if_range_holds(value, ETAG, MTIME) is holds


# -- range parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size", "ranges"),
    [
        ("bytes=0-9", 100, [(0, 9)]),
        ("bytes=10-", 100, [(10, 99)]),
        ("bytes=-10", 100, [(90, 99)]),
        ("bytes=0-0", 100, [(0, 0)]),
        ("bytes=99-99", 100, [(99, 99)]),
        ("bytes=0-999", 100, [(0, 99)]),  # clipped at the end
        ("bytes=-1000", 100, [(0, 99)]),  # a suffix longer than the file: all of it
        ("BYTES=0-9", 100, [(0, 9)]),  # the unit is case-insensitive
        ("Bytes=0-1, 5-6", 100, [(0, 1), (5, 6)]),
        ("bytes=0-1,2-3", 100, [(0, 1), (2, 3)]),  # adjacent is not overlapping
        ("bytes=0-1,,5-6,", 100, [(0, 1), (5, 6)]),  # empty list elements
        ("bytes=0-9, 200-300", 100, [(0, 9)]),  # unsatisfiable parts are dropped
        ("bytes=0-" + "9" * 40, 100, [(0, 99)]),  # huge numbers clip
        ("bytes=100-", 100, []),  # first-pos at the end: unsatisfiable
        ("bytes=100-200", 100, []),
        ("bytes=" + "9" * 40 + "-", 100, []),
        ("bytes=-0", 100, []),
        ("bytes=-0,-0", 100, []),
        ("bytes=0-", 0, []),  # an empty file has no int-range
        ("bytes=-5", 0, None),  # suffix of an empty file: ignored, 200
        ("bytes=9-0", 100, None),  # last < first: invalid, ignored
        ("bytes=0-9, 9-0", 100, None),
        ("bytes=abc", 100, None),
        ("bytes=-", 100, None),
        ("bytes=", 100, None),
        ("bytes=,", 100, None),
        ("bytes=1-2-3", 100, None),
        ("bytes=+1-2", 100, None),
        ("bytes=1_0-20", 100, None),
        ("bytes=\u0661-\u0662", 100, None),  # non-ASCII (Arabic-Indic) digits
        ("bytes 0-9", 100, None),
        ("bytes =0-9", 100, None),
        ("items=0-9", 100, None),  # another unit
        ("0-9", 100, None),
        ("bytes=0-10,5-20", 100, None),  # overlapping
        ("bytes=50-60,0-10", 100, None),  # not ascending
        ("bytes=-10,0-5", 100, None),  # suffix lands after: not ascending
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2 * MAX_RANGES, 2)), 100, "all"),
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(0, 2 * MAX_RANGES + 2, 2)), 100, None),
    ],
)
def test_parse_byte_ranges(value: str, size: int, ranges: object) -> None:
    result = parse_byte_ranges(value, size)
    if ranges == "all":
        assert result is not None and len(result) == MAX_RANGES
    else:
        assert result == ranges


# -- the handler: conditional responses ----------------------------------------------------------


@pytest.mark.parametrize("target", ["/small.txt", "/large.bin"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_304_has_validators_and_no_body(handler: StaticHandler, target: str, method: str) -> None:
    etag = etag_of(handler, target)
    response = handler(request(target, method, if_none_match=etag))
    assert response.status == 304
    assert fields_of(response) == {"etag": etag, "last-modified": SAME}
    assert response.body == () and response.body_length == 0


def test_if_modified_since_gives_304(handler: StaticHandler) -> None:
    assert handler(request("/small.txt", if_modified_since=SAME)).status == 304
    assert handler(request("/small.txt", if_modified_since=EARLIER)).status == 200


def test_failed_precondition_is_412_with_a_page(handler: StaticHandler) -> None:
    response = handler(request("/small.txt", if_match='"nope"'))
    assert response.status == 412
    assert field(response, "content-type") == "text/html; charset=utf-8"
    assert b"412" in body_of(response)
    response = handler(request("/large.bin", if_unmodified_since=EARLIER))
    assert response.status == 412


def test_matching_if_match_serves_the_file(handler: StaticHandler) -> None:
    etag = etag_of(handler)
    assert body_of(handler(request("/small.txt", if_match=etag))) == SMALL


def test_conditions_apply_to_index_files(handler: StaticHandler) -> None:
    etag = etag_of(handler, "/sub/")
    assert handler(request("/sub/", if_none_match=etag)).status == 304


# -- the handler: ranges -------------------------------------------------------------------------


def test_single_range_of_a_small_file(handler: StaticHandler) -> None:
    response = handler(request("/small.txt", range="bytes=0-4"))
    assert response.status == 206
    fields = fields_of(response)
    assert fields["content-range"] == f"bytes 0-4/{len(SMALL)}"
    assert fields["content-length"] == "5"
    assert fields["content-type"] == "text/plain; charset=utf-8"
    assert "etag" in fields and "last-modified" in fields
    assert body_of(response) == SMALL[:5]


@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [("0-9", 0, 9), ("100000-", 100000, len(LARGE) - 1), ("-10", len(LARGE) - 10, len(LARGE) - 1),
     ("5-99999999", 5, len(LARGE) - 1)],
)
def test_single_range_of_a_large_file_is_a_region(
    handler: StaticHandler, spec: str, first: int, last: int
) -> None:
    response = handler(request("/large.bin", range="bytes=" + spec))
    assert response.status == 206
    assert field(response, "content-range") == f"bytes {first}-{last}/{len(LARGE)}"
    (region,) = response.body
    assert isinstance(region, FileRegion)
    assert (region.offset, region.count, region.close_after) == (first, last - first + 1, True)
    assert body_of(response) == LARGE[first : last + 1]


def parse_multipart(response: Response) -> list[tuple[str, str, bytes]]:
    """``(content-type, content-range, data)`` of each part, checking the framing."""
    boundary = re.fullmatch(
        r"multipart/byteranges; boundary=([0-9a-f]+)", field(response, "content-type")
    )
    assert boundary is not None
    body = body_of(response)
    assert int(field(response, "content-length")) == len(body)
    delimiter = b"\r\n--" + boundary.group(1).encode()
    assert body.endswith(delimiter + b"--\r\n")
    parts = []
    for chunk in body[: -len(delimiter + b"--\r\n")].split(delimiter)[1:]:
        head, _, data = chunk.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == ""
        part_fields = dict(line.split(": ", 1) for line in lines[1:])
        parts.append((part_fields["Content-Type"], part_fields["Content-Range"], data))
    return parts


@pytest.mark.parametrize("target", ["/small.txt", "/large.bin"])
def test_several_ranges_are_multipart(handler: StaticHandler, target: str) -> None:
    content = SMALL if target == "/small.txt" else LARGE
    size = len(content)
    response = handler(request(target, range="bytes=0-1, 5-7, -3"))
    assert response.status == 206
    assert "content-range" not in fields_of(response)
    parts = parse_multipart(response)
    assert [p[1] for p in parts] == [
        f"bytes 0-1/{size}", f"bytes 5-7/{size}", f"bytes {size - 3}-{size - 1}/{size}"
    ]
    assert [p[2] for p in parts] == [content[0:2], content[5:8], content[-3:]]


def test_multipart_regions_share_one_descriptor_owned_by_the_last(handler: StaticHandler) -> None:
    response = handler(request("/large.bin", range="bytes=0-1,10-11,20-21"))
    regions = [item for item in response.body if isinstance(item, FileRegion)]
    assert len(regions) == 3
    assert len({region.fd for region in regions}) == 1
    assert [region.close_after for region in regions] == [False, False, True]
    response.release()


def test_boundaries_differ_between_responses(handler: StaticHandler) -> None:
    first = field(handler(request("/small.txt", range="bytes=0-1,3-4")), "content-type")
    second = field(handler(request("/small.txt", range="bytes=0-1,3-4")), "content-type")
    assert first != second


@pytest.mark.parametrize("target", ["/small.txt", "/large.bin", "/empty.txt"])
@pytest.mark.parametrize("spec", ["bytes=99999999-", "bytes=-0", "bytes=99999999-99999999"])
def test_unsatisfiable_range_is_416(handler: StaticHandler, target: str, spec: str) -> None:
    size = len({"/small.txt": SMALL, "/large.bin": LARGE, "/empty.txt": b""}[target])
    response = handler(request(target, range=spec))
    assert response.status == 416
    assert field(response, "content-range") == f"bytes */{size}"
    assert b"416" in body_of(response)


@pytest.mark.parametrize(
    "spec",
    ["bytes=5-1", "items=0-1", "bytes=x-y", "bytes=0-1,1-2", "bytes=3-4,0-1",
     "bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1))],
)
@pytest.mark.parametrize("target", ["/small.txt", "/large.bin"])
def test_ignored_range_sends_the_whole_file(handler: StaticHandler, target: str, spec: str) -> None:
    response = handler(request(target, range=spec))
    assert response.status == 200
    assert body_of(response) == (SMALL if target == "/small.txt" else LARGE)


def test_suffix_range_of_an_empty_file_is_200(handler: StaticHandler) -> None:
    response = handler(request("/empty.txt", range="bytes=-5"))
    assert response.status == 200 and response.body == ()


def test_head_ignores_range(handler: StaticHandler) -> None:
    response = handler(request("/large.bin", "HEAD", range="bytes=0-9"))
    assert response.status == 200
    assert field(response, "content-length") == str(len(LARGE))
    assert response.body == ()


@pytest.mark.parametrize(
    ("if_range", "status"),
    [("ETAG", 206), ("W/ETAG", 200), ('"stale"', 200), (SAME, 206), (EARLIER, 200),
     (LATER, 200), ("garbage", 200)],
)
def test_if_range_in_the_handler(handler: StaticHandler, if_range: str, status: int) -> None:
    etag = etag_of(handler, "/large.bin")
    value = if_range.replace("ETAG", etag)
    response = handler(request("/large.bin", range="bytes=0-9", if_range=value))
    assert response.status == status
    assert body_of(response) == (LARGE[:10] if status == 206 else LARGE)


def test_preconditions_come_before_ranges(handler: StaticHandler) -> None:
    etag = etag_of(handler, "/large.bin")
    assert handler(request("/large.bin", range="bytes=0-9", if_none_match=etag)).status == 304
    assert handler(request("/large.bin", range="bytes=0-9", if_match='"x"')).status == 412
    assert handler(request("/large.bin", range="bytes=999999999-", if_match='"x"')).status == 412
