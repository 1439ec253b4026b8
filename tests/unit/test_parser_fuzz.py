"""Fuzzing the request parser with hypothesis (bounded so the suite stays fast).

Invariant (h11's fuzz idea): whatever bytes arrive, in whatever pieces, the parser returns events
or raises its own ``HTTPError``; never another exception, never a hang (``feeding.parse_pieces``
asserts no NEED_DATA after end of input), and the events do not depend on how input was split.
A differential test also checks the fast field-line loop against the plain grammar pattern.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evserver.http.grammar import FIELD_BLOCK, FIELD_LINE
from tests.unit.corpus.feeding import parse_pieces
from tests.unit.corpus.parser_corpus import CASES

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes that matter to an HTTP parser, so mutations hit interesting shapes often.
SPECIAL = b"\r\n\x00\t \x0b\x0c\x1c\x85\xa0\xff:;,=\"0159aAfFxX-+_/?#@%"
SMALL_CASES = [c for c in CASES if len(c.raw) < 2000 and c.limits.max_body > 10]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return [piece for piece in pieces if piece]


def same_whatever_the_split(data: bytes, cuts: list[int]) -> None:
    whole = parse_pieces([data])
    split = parse_pieces(split_at(data, cuts))
    whole_heads, whole_status = whole.summary()
    split_heads, split_status = split.summary()
    assert whole_heads == split_heads
    # Which limit or rule fires first may differ with the split, never whether one fires.
    assert (whole_status is None) == (split_status is None)


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(min_value=0), max_size=8))
def test_any_bytes(data: bytes, cuts: list[int]) -> None:
    same_whatever_the_split(data, cuts)


@FUZZ
@given(
    st.binary(max_size=300),
    st.lists(st.integers(min_value=0), max_size=8),
)
def test_any_bytes_after_a_valid_head(tail: bytes, cuts: list[int]) -> None:
    same_whatever_the_split(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                            + tail, cuts)


mutation = st.tuples(
    st.sampled_from(["insert", "replace", "delete"]),
    st.integers(min_value=0),
    st.sampled_from(list(SPECIAL)) | st.integers(min_value=0, max_value=255),
)


@FUZZ
@given(
    st.sampled_from(SMALL_CASES),
    st.lists(mutation, min_size=1, max_size=4),
    st.lists(st.integers(min_value=0), max_size=6),
)
def test_mutated_corpus_entries(case, mutations, cuts) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(case.raw)
    for kind, position, byte in mutations:
        position %= len(data) + 1
        if kind == "insert":
            data[position:position] = bytes([byte])
        elif kind == "replace" and position < len(data):
            data[position] = byte
        elif kind == "delete" and position < len(data):
            del data[position]
    same_whatever_the_split(bytes(data), cuts)


# --- the fast field loop agrees with the grammar ------------------------------------------------

name_bytes = st.binary(min_size=0, max_size=6).map(
    lambda b: bytes(SPECIAL[x % len(SPECIAL)] if x % 3 == 0 else b"xY-"[x % 3] for x in b)
)
value_bytes = st.lists(st.sampled_from([b" ", b"\t", b"a", b"\xa0", b"\x85", b"\x00", b"\x0b",
                                        b"\r", b"\n", b":", b"\x7f", b"\xff", b"z"]),
                       max_size=8).map(b"".join)
field_line = st.tuples(name_bytes, st.sampled_from([b":", b" :", b""]), value_bytes).map(
    lambda parts: b"".join(parts)
)
RESERVED_NAMES = re.compile(rb"(?i)host|content-length|transfer-encoding|expect|connection")


@settings(max_examples=500, deadline=None)
@given(st.lists(field_line, max_size=5))
def test_field_lines_agree_with_the_grammar(lines: list[bytes]) -> None:
    block = b"".join(line + b"\r\n" for line in lines)
    if RESERVED_NAMES.search(block) or b"\r\n\r\n" in b"\r\n" + block:
        return  # those names have their own rules; an empty line would end the head early
    outcome = parse_pieces([b"GET / HTTP/1.0\r\n" + block + b"\r\n"])
    text = block.decode("latin-1")
    grammar_ok = FIELD_BLOCK.fullmatch(text) is not None
    assert (outcome.error is None) == grammar_ok, (block, outcome.error)
    if grammar_ok:
        expected = [tuple(pair) for pair in FIELD_LINE.findall(text)]
        assert outcome.messages[0].request.raw_headers == expected
