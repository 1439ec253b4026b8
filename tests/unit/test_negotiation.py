"""``Accept`` negotiation (RFC 9110 12.5.1): which representation a request gets, and bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evserver.http.negotiation import negotiate_media_type, parse_accept

PAGE_FIRST = ("text/html", "application/json")  # a listing: HTML unless JSON is preferred
JSON_FIRST = ("application/json", "text/html")  # the stats path: JSON unless HTML is preferred

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "page_first", "json_first"),
    [
        (None, "text/html", "application/json"),  # no field: the server's choice
        ("", "text/html", "application/json"),
        ("*/*", "text/html", "application/json"),  # curl, fetch(): a tie, the server's choice
        (BROWSER, "text/html", "text/html"),
        ("application/json", "application/json", "application/json"),
        ("application/json, */*", "application/json", "application/json"),  # more specific
        ("text/html, application/json", "text/html", "application/json"),  # a full tie
        ("text/*", "text/html", "text/html"),
        ("application/*;q=0.5, text/html;q=0.4", "application/json", "application/json"),
        ("text/html;q=0, */*", "application/json", "application/json"),  # html refused
        ("application/json;q=0", "text/html", "application/json"),  # nothing acceptable: first
        ("TEXT/HTML", "text/html", "text/html"),  # types are case-insensitive
        ("application/json; charset=utf-8", "application/json", "application/json"),
        ('text/html;level="1,2";q=0.2, application/json;q=0.1', "text/html", "text/html"),
        ("*/*;q=0.1, text/html;q=0.2", "text/html", "text/html"),
        ("*/*, text/html;q=0.5", "application/json", "application/json"),  # html at 0.5
    ],
)
def test_negotiation_picks_the_preferred_offer(accept: str | None, page_first: str,
                                               json_first: str) -> None:
    assert negotiate_media_type(accept, PAGE_FIRST) == page_first
    assert negotiate_media_type(accept, JSON_FIRST) == json_first


@pytest.mark.parametrize(
    "accept",
    [
        "garbage",
        "text",
        "*/html",  # not a media range
        "text/html;q=2",
        "text/html;q=0.1234",  # four decimals
        "text/html;q=",
        "text/html;q",
        "text/html;;",
        "text/html;q=1.5",
        "text/html extra",
        ",,,",
        "text/html;q=abc, application/xml",
        "\x00",
    ],
)
def test_bad_syntax_is_never_an_error_and_never_chooses(accept: str) -> None:
    # Each bad element is skipped: the server's first offer is sent, nothing raises.
    assert negotiate_media_type(accept, JSON_FIRST) == "application/json"
    assert negotiate_media_type(accept, PAGE_FIRST) == "text/html"


def test_a_bad_element_does_not_spoil_the_good_ones() -> None:
    assert negotiate_media_type("text/html;q=9, application/json", PAGE_FIRST) == (
        "application/json")
    assert parse_accept("nonsense, text/html;q=0.5, */*;q=bad") == [("text", "html", 0.5)]


def test_parse_accept_keeps_quoted_commas_inside_parameters() -> None:
    assert parse_accept('a/b;x="1,2";q=0.3, c/d') == [("a", "b", 0.3), ("c", "d", 1.0)]


@given(st.text(max_size=200))
def test_any_field_value_gives_one_of_the_offers(accept: str) -> None:
    assert negotiate_media_type(accept, PAGE_FIRST) in PAGE_FIRST
    assert negotiate_media_type(accept, JSON_FIRST) in JSON_FIRST
