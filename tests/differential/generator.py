"""Requests to feed the three parsers: a seed corpus and its mutations.

What this module knows: where the seeds come from (the parser corpus of the unit tests, every
valid and invalid case, plus a few framing-field lines) and how to mutate them the ways parsers
break: a flipped bit; an inserted CR, LF, CRLF, NUL, SP, HTAB or high byte; a deleted byte; a
duplicated, split or truncated line; a framing field spliced in; two requests pipelined. What it
must not know: any parser. Everything is drawn from one ``random.Random``, so a seed replays.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from tests.unit.corpus.parser_corpus import CASES

MAX_SEED_SIZE = 2048
"""Longer corpus cases exercise limits, not readings; they would only slow the run down."""

MAX_MUTATIONS = 3
"""Mutations applied to one seed: enough to combine two traps, few enough to stay near a request."""

INSERTED_BYTES = (b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b"\x80", b"\xff", b"\x85", b"\xa0",
                  b"\x0b", b"\x0c", b",", b";", b":", b"0")
"""What a mutation inserts: line breaks, whitespace RFC 9110 does and does not call whitespace,
NUL, obs-text, and the separators of lists, parameters, fields and digits."""

SPLICED_FIELDS = (
    b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: 5, 5", b"Content-Length: 05",
    b"Content-Length: 0000000000000000005", b"Content-Length: 5\r\nContent-Length: 5",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked;a=b", b"Expect: 100-continue", b"Expect:",
    b"Expect: 100-continue,", b"Connection: close", b"Connection: keep-alive", b"Host: a",
)
"""Field lines that decide framing, expectations and persistence, spliced into a head."""

SEEDS: tuple[bytes, ...] = tuple(
    case.raw for case in CASES if len(case.raw) <= MAX_SEED_SIZE
)


def _flip(rng: random.Random, raw: bytes) -> bytes:
    if not raw:
        return raw
    at = rng.randrange(len(raw))
    return raw[:at] + bytes([raw[at] ^ (1 << rng.randrange(8))]) + raw[at + 1 :]


def _insert(rng: random.Random, raw: bytes) -> bytes:
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + rng.choice(INSERTED_BYTES) + raw[at:]


def _delete(rng: random.Random, raw: bytes) -> bytes:
    if not raw:
        return raw
    at = rng.randrange(len(raw))
    return raw[:at] + raw[at + 1 :]


def _lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n")


def _duplicate_line(rng: random.Random, raw: bytes) -> bytes:
    lines = _lines(raw)
    at = rng.randrange(len(lines))
    return b"\r\n".join(lines[: at + 1] + lines[at:])


def _split_line(rng: random.Random, raw: bytes) -> bytes:
    lines = _lines(raw)
    at = rng.randrange(len(lines))
    cut = rng.randrange(len(lines[at]) + 1)
    lines[at : at + 1] = [lines[at][:cut], lines[at][cut:]]
    return b"\r\n".join(lines)


def _truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[: rng.randrange(len(raw) + 1)]


def _splice_field(rng: random.Random, raw: bytes) -> bytes:
    lines = _lines(raw)
    at = rng.randrange(1, len(lines) + 1)
    lines.insert(at, rng.choice(SPLICED_FIELDS))
    return b"\r\n".join(lines)


def _pipeline(rng: random.Random, raw: bytes) -> bytes:
    return raw + rng.choice(SEEDS)


MUTATIONS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    _flip, _insert, _insert, _delete, _duplicate_line, _split_line, _truncate, _splice_field,
    _splice_field, _pipeline,
)


def inputs(rng: random.Random) -> Iterator[bytes]:
    """Endless inputs: each seed once as it is, then mutated seeds forever."""
    yield from SEEDS
    while True:
        raw = rng.choice(SEEDS)
        for _ in range(rng.randint(1, MAX_MUTATIONS)):
            raw = rng.choice(MUTATIONS)(rng, raw)
        yield raw
