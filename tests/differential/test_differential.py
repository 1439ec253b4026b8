"""evserver's parser against llhttp (httptools) and h11: every difference must be known.

A bounded run with a fixed seed (the seed corpus once, then mutations) so CI is repeatable; a
longer run by hand is ``python -m tests.differential.run --seconds 120 --seed N``.
"""

from __future__ import annotations

from tests.differential.compare import Difference, compare
from tests.differential.known import KNOWN, explain
from tests.differential.run import run
from tests.differential.verdicts import PARSERS, evserver_verdict

CI_SEED = 20
CI_INPUTS = 30_000
"""A few seconds on a loaded CI machine; the seed corpus is the first few hundred of them."""


def test_every_difference_is_known() -> None:
    report = run(CI_SEED, count=CI_INPUTS)
    assert report.inputs == CI_INPUTS
    assert not report.unexplained, "\n".join(report.lines())
    assert not report.split_mismatches, "\n".join(report.lines())


def test_agreement_is_the_rule() -> None:
    """Most inputs read the same everywhere, and no judge differs in framing where it accepts."""
    report = run(CI_SEED, count=1000)
    assert report.agreed > report.inputs // 3
    assert not any(kind.endswith(("reading:body", "reading:end")) for kind in report.kinds)


def test_every_row_has_a_reason_and_is_reachable() -> None:
    assert all(row.reason and row.judges for row in KNOWN)
    assert len({row.name for row in KNOWN}) == len(KNOWN)


def _difference(raw: bytes, judge: str) -> Difference | None:
    return compare(judge, raw, evserver_verdict(raw), PARSERS[judge](raw))


def test_an_unlisted_difference_is_unexplained() -> None:
    """The table is narrow: a framing difference it does not list is caught."""
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    ours = evserver_verdict(raw)
    theirs = evserver_verdict(raw[:-1] + b"d")
    difference = compare("h11", raw, ours, theirs)
    assert difference is not None and difference.kind == "reading:body"
    assert explain(difference) is None


def test_the_fixed_deviations_now_agree() -> None:
    """Empty and repeated Expect elements, and zeros before a Content-Length, read as the judges
    read them; chunked with a parameter is refused by all three."""
    for raw in (
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect:\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue,\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000003\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;a=b\r\n\r\n0\r\n\r\n",
    ):
        for judge in PARSERS:
            assert _difference(raw, judge) is None, (judge, raw)
