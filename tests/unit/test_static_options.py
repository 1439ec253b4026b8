"""What an operator serving a folder sets: added fields, CORS, error pages, a fallback, dotfiles.

The handler on the standard test tree (``tests/support/static.py``), built with each option.
Content codings are in ``test_static_encodings.py``.
"""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

import pytest

from evserver.static import StaticHandler
from evserver.static.handler import ERROR_PAGE_MAX_BYTES, load_error_page
from evserver.static.headers import OperatorFields, parse_header_option
from evserver.static.paths import has_hidden_name, hidden_name
from tests.support.static import SMALL, body_of, fields_of, make_tree, request

SPA_PAGE = b"<!DOCTYPE html><title>app</title><div id=app></div>\n"
NOT_FOUND_PAGE = b"<!DOCTYPE html><h1>Nothing here</h1>\n"


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(make_tree(tmp_path))


@pytest.fixture(autouse=True)
def unreadable_even_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """``unreadable.txt`` (mode 000) refuses to open even when the tests run as root."""
    real_open = os.open

    def refusing_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if str(path).endswith("unreadable.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)


def settled(handler: StaticHandler) -> StaticHandler:
    handler.clock = lambda: time.time() + 3600  # type: ignore[method-assign]
    return handler


# -- operator fields: -H and --cache-control ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("X-Frame-Options: DENY", ("X-Frame-Options", "DENY")),
        ("Cache-Control:max-age=60 ", ("Cache-Control", "max-age=60")),
        ("Content-Security-Policy: default-src 'self'; img-src *",
         ("Content-Security-Policy", "default-src 'self'; img-src *")),
        ("X-Odd: a:b:c", ("X-Odd", "a:b:c")),
    ],
)
def test_header_options_are_parsed(text: str, parsed: tuple[str, str]) -> None:
    assert parse_header_option(text) == parsed


@pytest.mark.parametrize(
    "text",
    ["X-Empty:", "no colon", ": value", "X Space: v", "X-Bad\r\nInjected: 1", "X-Ctl: a\x01b",
     "X-Uni: \u2603", "Content-Length: 5", "transfer-encoding: chunked", "ETag: \"x\"",
     "Connection: close", "Content-Encoding: gzip", "Date: now", "Server: nginx"],
)
def test_bad_header_options_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_header_option(text)


def test_conflicting_options_are_refused() -> None:
    with pytest.raises(ValueError, match="Cache-Control"):
        OperatorFields((("Cache-Control", "no-store"),), cache_control="max-age=1")
    with pytest.raises(ValueError, match="Access-Control-Allow-Origin: --cors"):
        OperatorFields((("Access-Control-Allow-Origin", "https://a.example"),), cors=True)
    with pytest.raises(ValueError):
        OperatorFields(cache_control="max-age=1\r\nX: y")
    OperatorFields((("Access-Control-Allow-Origin", "https://a.example"),))  # fine without --cors


def test_no_option_adds_nothing(root: str) -> None:
    fields = OperatorFields()
    assert fields.success == fields.error == b""
    assert fields.preflight({"origin": "x", "access-control-request-method": "GET"}) is None


@pytest.fixture
def decorated(root: str) -> StaticHandler:
    return settled(StaticHandler(root, headers=(("X-Frame-Options", "DENY"),
                                                ("X-Content-Type-Options", "nosniff")),
                                 cache_control="max-age=3600"))


@pytest.mark.parametrize(
    ("target", "method", "fields", "status"),
    [
        ("/small.txt", "GET", {}, 200),
        ("/small.txt", "HEAD", {}, 200),
        ("/large.bin", "GET", {}, 200),
        ("/small.txt", "GET", {"range": "bytes=0-3"}, 206),
        ("/large.bin", "GET", {"range": "bytes=0-3,10-12"}, 206),
        ("/small.txt", "GET", {"if_none_match": "*"}, 304),
        ("/", "GET", {}, 200),  # a listing
        ("/sub/", "GET", {}, 200),  # an index file
        ("/sub", "GET", {}, 301),
        ("*", "OPTIONS", {}, 204),
    ],
)
def test_operator_fields_go_on_every_answer_below_400(
    decorated: StaticHandler, target: str, method: str, fields: dict[str, str], status: int
) -> None:
    for _ in range(2):  # made, then from the cache
        response = decorated(request(target, method, **fields))
        assert response.status == status
        got = fields_of(response)
        assert got["x-frame-options"] == "DENY"
        assert got["x-content-type-options"] == "nosniff"
        assert got["cache-control"] == "max-age=3600"
        body_of(response)


@pytest.mark.parametrize(
    ("target", "method", "fields"),
    [("/missing", "GET", {}), ("/unreadable.txt", "GET", {}), ("/small.txt", "POST", {}),
     ("/small.txt", "GET", {"range": "bytes=999-"}), ("/small.txt", "GET", {"if_match": '"x"'}),
     ("/%zz", "GET", {}), ("/missing", "HEAD", {})],
)
def test_operator_fields_stay_off_errors(
    decorated: StaticHandler, target: str, method: str, fields: dict[str, str]
) -> None:
    response = decorated(request(target, method, **fields))
    assert response.status >= 400
    got = fields_of(response)
    assert "cache-control" not in got and "x-frame-options" not in got
    body_of(response)


# -- CORS ------------------------------------------------------------------------------------------


@pytest.fixture
def cors(root: str) -> StaticHandler:
    return settled(StaticHandler(root, cors=True))


def test_cors_on_files_and_on_errors(cors: StaticHandler) -> None:
    for target, status in (("/small.txt", 200), ("/small.txt", 200), ("/missing", 404),
                           ("/large.bin", 200)):
        response = cors(request(target, origin="https://app.example"))
        assert response.status == status
        fields = fields_of(response)
        assert fields["access-control-allow-origin"] == "*"
        assert "ETag" in fields["access-control-expose-headers"]
        assert "Content-Range" in fields["access-control-expose-headers"]
        body_of(response)
    response = cors(request("/small.txt", "POST"))
    assert response.status == 405 and fields_of(response)["access-control-allow-origin"] == "*"
    body_of(response)


def test_a_preflight_is_answered(cors: StaticHandler) -> None:
    response = cors(request("/small.txt", "OPTIONS", origin="https://app.example",
                            access_control_request_method="GET",
                            access_control_request_headers="Range, X-Requested-With"))
    assert response.status == 204 and response.body == ()
    fields = fields_of(response)
    assert fields["access-control-allow-origin"] == "*"
    assert fields["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert fields["access-control-allow-headers"] == "range, x-requested-with"
    assert fields["access-control-max-age"] == "86400"
    assert fields["allow"] == "GET, HEAD, OPTIONS"
    assert "content-length" not in fields


@pytest.mark.parametrize("asked", [None, "", "bad header, x", "a,,b", "x\ty"])
def test_a_preflight_without_a_token_list_gets_the_default_fields(
    cors: StaticHandler, asked: str | None
) -> None:
    extra = {} if asked is None else {"access_control_request_headers": asked}
    response = cors(request("/", "OPTIONS", origin="null", access_control_request_method="GET",
                            **extra))
    allowed = fields_of(response)["access-control-allow-headers"]
    assert allowed.startswith("Range, If-Match")


def test_options_without_a_preflight_is_as_before(root: str, cors: StaticHandler) -> None:
    plain = StaticHandler(root)
    preflight = {"origin": "https://a.example", "access_control_request_method": "GET"}
    assert fields_of(plain(request("/", "OPTIONS", **preflight))) == {
        "allow": "GET, HEAD, OPTIONS"}
    fields = fields_of(cors(request("/", "OPTIONS", origin="https://a.example")))
    assert fields["access-control-allow-origin"] == "*"
    assert "access-control-allow-methods" not in fields


# -- error pages -----------------------------------------------------------------------------------


def test_an_error_page_keeps_its_status(root: str, tmp_path: Path) -> None:
    page = tmp_path / "404.html"
    page.write_bytes(NOT_FOUND_PAGE)
    handler = StaticHandler(root, error_pages={404: str(page)}, cors=True)
    for target in ("/missing", "/.hidden", "/fifo", "/small.txt/"):
        response = handler(request(target))
        assert response.status == 404
        fields = fields_of(response)
        assert fields["content-type"] == "text/html; charset=utf-8"
        assert fields["content-length"] == str(len(NOT_FOUND_PAGE))
        assert fields["access-control-allow-origin"] == "*"
        assert body_of(response) == NOT_FOUND_PAGE
    head = handler(request("/missing", "HEAD"))
    assert head.status == 404 and head.body == ()
    assert fields_of(head)["content-length"] == str(len(NOT_FOUND_PAGE))
    forbidden = handler(request("/unreadable.txt"))  # another status keeps the built-in page
    assert forbidden.status == 403 and b"403 Forbidden" in body_of(forbidden)
    page.write_bytes(b"changed")  # read at start-up, kept
    assert body_of(handler(request("/missing"))) == NOT_FOUND_PAGE


def test_an_error_page_is_typed_by_its_name(root: str, tmp_path: Path) -> None:
    page = tmp_path / "gone.txt"
    page.write_bytes(b"gone\n")
    handler = StaticHandler(root, error_pages={404: str(page), 405: str(page)})
    assert fields_of(handler(request("/nope")))["content-type"] == "text/plain; charset=utf-8"
    response = handler(request("/", "DELETE"))
    assert response.status == 405 and fields_of(response)["allow"] == "GET, HEAD, OPTIONS"
    assert body_of(response) == b"gone\n"


def test_error_pages_that_cannot_be_used_are_refused(root: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_error_page(str(tmp_path / "missing.html"))
    with pytest.raises(ValueError, match="regular"):
        load_error_page(str(tmp_path))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="regular"):
        load_error_page(str(tmp_path / "fifo"))  # O_NONBLOCK: no writer needed to fail
    big = tmp_path / "big.html"
    big.write_bytes(b"x" * (ERROR_PAGE_MAX_BYTES + 1))
    with pytest.raises(ValueError, match="larger"):
        load_error_page(str(big))
    page = tmp_path / "p.html"
    page.write_bytes(b"p")
    with pytest.raises(ValueError, match="status 413"):
        StaticHandler(root, error_pages={413: str(page)})


# -- fallback --------------------------------------------------------------------------------------


@pytest.fixture
def spa(root: str) -> StaticHandler:
    page = Path(root) / "noindex" / "app.html"
    page.write_bytes(SPA_PAGE)
    return settled(StaticHandler(root, fallback=str(page)))


@pytest.mark.parametrize(
    "target", ["/missing", "/users/42/profile", "/deep/route/", "/small.txt/child",
               "/link_out", "/dirlink_out/secret.txt", "/missing?q=1"],
)
def test_a_path_that_names_nothing_gets_the_fallback(spa: StaticHandler, target: str) -> None:
    for _ in range(2):
        response = spa(request(target))
        assert response.status == 200
        assert fields_of(response)["content-type"] == "text/html; charset=utf-8"
        assert body_of(response) == SPA_PAGE
    head = spa(request(target, "HEAD"))
    assert head.status == 200 and head.body == ()


@pytest.mark.parametrize(
    ("target", "status"),
    [("/unreadable.txt", 403), ("/fifo", 404), ("/.hidden", 404), ("/sub/.git/config", 404),
     ("/small.txt/", 404), ("/%zz", 400), ("/a/../b", 404), ("/loop", 403)],
)
def test_a_path_that_exists_and_is_refused_stays_refused(
    spa: StaticHandler, target: str, status: int
) -> None:
    response = spa(request(target))
    # a symlink loop: 403 (ELOOP), or 404 where realpath gives up on it (test_static.py)
    assert response.status == status or (target == "/loop" and response.status == 404)
    assert SPA_PAGE not in body_of(response)


def test_the_fallback_answers_only_get_and_head(spa: StaticHandler) -> None:
    assert spa(request("/missing", "POST")).status == 405
    assert spa(request("/missing", "OPTIONS")).status == 204
    assert body_of(spa(request("/small.txt"))) == SMALL  # what exists is served as ever


def test_the_fallback_is_a_file_like_any_other(spa: StaticHandler, root: str) -> None:
    etag = fields_of(spa(request("/route")))["etag"]
    assert spa(request("/other/route", if_none_match=etag)).status == 304
    response = spa(request("/route", range="bytes=0-8"))
    assert response.status == 206 and body_of(response) == SPA_PAGE[:9]
    new_page = SPA_PAGE.replace(b"app", b"new")
    page = Path(root) / "noindex" / "app.html"
    page.write_bytes(new_page)  # a rebuilt app is seen at once
    os.utime(page, ns=(time.time_ns() + 10**9,) * 2)
    assert body_of(spa(request("/route"))) == new_page
    page.unlink()
    response = spa(request("/route"))
    assert response.status == 404 and b"404 Not Found" in body_of(response)


def test_the_fallback_may_live_outside_the_root(root: str, tmp_path: Path) -> None:
    page = tmp_path / "outside" / "spa.html"
    page.write_bytes(SPA_PAGE)
    (tmp_path / "outside" / "spa.html.gz").write_bytes(b"must never be sent")
    handler = settled(StaticHandler(root, fallback=str(page)))
    response = handler(request("/route", accept_encoding="gzip"))
    assert response.status == 200 and body_of(response) == SPA_PAGE


# -- dotfiles --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "hidden"),
    [(["a", "b"], False), ([".git", "config"], True), (["a", ".env"], True),
     ([".well-known", "x"], False), (["a", ".well-known", "x"], True),
     ([".well-known", ".x"], True), (["...", ""], True), (["a.b", ""], False), ([""], False)],
)
def test_hidden_names(names: list[str], hidden: bool) -> None:
    assert has_hidden_name(names) is hidden


def test_the_listing_predicate() -> None:
    assert hidden_name(".env", True) and hidden_name(".well-known", False)
    assert not hidden_name(".well-known", True) and not hidden_name("a.b", True)


@pytest.mark.parametrize("target", ["/.hidden", "/...", "/.git/config", "/sub/.hidden",
                                    "/.missing", "/%2Ehidden", "/.well-known/.secret"])
def test_dotfiles_are_404_whether_or_not_they_exist(root: str, target: str) -> None:
    handler = StaticHandler(root)
    response = handler(request(target))
    assert response.status == 404
    assert body_of(response) == body_of(handler(request("/no-such-name")))


def test_well_known_is_always_served(root: str) -> None:
    well_known = Path(root) / ".well-known"
    well_known.mkdir()
    (well_known / "security.txt").write_bytes(b"Contact: mailto:x@example.com\n")
    handler = StaticHandler(root)
    assert body_of(handler(request("/.well-known/security.txt"))).startswith(b"Contact")
    assert handler(request("/.well-known")).status == 301
    assert 'href=".well-known/"' in body_of(handler(request("/"))).decode()


def test_dotfiles_on_serves_and_lists_them(root: str) -> None:
    handler = StaticHandler(root, dotfiles=True)
    assert body_of(handler(request("/.hidden"))) == b"content of .hidden\n"
    assert 'href=".hidden"' in body_of(handler(request("/"))).decode()


def test_the_listing_leaves_dotfiles_out(root: str) -> None:
    page = body_of(StaticHandler(root)(request("/"))).decode()
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert ".hidden" not in hrefs and "..." not in hrefs
    assert "small.txt" in hrefs
