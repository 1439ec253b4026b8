"""HTTP dates (RFC 9110 5.6.7): the three formats parse to the same instant; bad input is None."""

from __future__ import annotations

import pytest

from evserver.http.dates import format_http_date, parse_http_date

INSTANT = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example


def test_format_imf_fixdate() -> None:
    assert format_http_date(INSTANT) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(INSTANT + 0.9) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime
    ],
)
def test_parse_three_formats(text: str) -> None:
    assert parse_http_date(text) == INSTANT


def test_round_trip() -> None:
    for timestamp in (0, 1, INSTANT, 1700000000, 2147483647, 4102444800):
        assert parse_http_date(format_http_date(timestamp)) == timestamp


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # Arabic-Indic digits: not ASCII
        "Sun, 06 Nov +994 08:49:37 GMT",
        "Sun,\xa006 Nov 1994 08:49:37 GMT",
        "784111777",
    ],
)
def test_invalid_dates_are_none(text: str) -> None:
    assert parse_http_date(text) is None
