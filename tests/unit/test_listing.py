"""Directory listings: order, sizes, the query string, JSON, validators, escaping, the bound.

The module's pieces on their own (``natural_key``, ``human_size``, ``ListingOrder``), then the
handler's listings of a temporary tree: what a client gets for each query and ``Accept``.
"""

from __future__ import annotations

import contextlib
import html
import html.parser
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from evserver.static import StaticHandler
from evserver.static import listing as listing_module
from evserver.static.listing import ListingOrder, human_size, natural_key
from tests.support.static import body_of, field, fields_of, make_tree, request


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(make_tree(tmp_path))


@pytest.fixture
def handler(root: str) -> StaticHandler:
    return StaticHandler(root)


@pytest.fixture
def sized(tmp_path: Path) -> StaticHandler:
    """A folder whose names sort differently by name, size and date."""
    folder = tmp_path / "sized"
    folder.mkdir()
    for name, size, mtime in (("b10.txt", 300, 3000), ("B2.txt", 20, 1000),
                              ("a.txt", 4000, 2000), ("c.bin", 20, 4000)):
        (folder / name).write_bytes(b"x" * size)
        os.utime(folder / name, (mtime, mtime))
    for name, mtime in (("Zeta", 5000), ("alpha", 100)):
        (folder / name).mkdir()
        os.utime(folder / name, (mtime, mtime))
    return StaticHandler(str(folder))


class _Rows(html.parser.HTMLParser):
    """The names a listing page shows, in order (the links of its name cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self._in_name = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td":
            self._in_name = ("class", "name") in attrs
        elif tag == "a" and self._in_name:
            self.names.append(unquote(dict(attrs)["href"] or ""))


def names_in(page: bytes) -> list[str]:
    rows = _Rows()
    rows.feed(page.decode("utf-8"))
    return [name for name in rows.names if name != "../"]


# -- the pieces ----------------------------------------------------------------------------------


def test_natural_order_is_case_insensitive_and_numeric() -> None:
    names = ["file10.txt", "File2.txt", "file1.txt", "a", "B", "img007", "img7", "img08", "_x", "Ä"]
    ordered = sorted(names, key=natural_key)
    assert ordered == ["_x", "a", "B", "file1.txt", "File2.txt", "file10.txt", "img007", "img7",
                       "img08", "Ä"]
    assert sorted(["a", "A"], key=natural_key) == ["A", "a"]  # a tie broken by the name itself


def test_natural_key_compares_long_digit_runs() -> None:
    assert natural_key("x" + "9" * 200) > natural_key("x" + "1" + "0" * 199)


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, ("0", "B")), (20, ("20", "B")), (999, ("999", "B")), (1000, ("1.0", "KiB")),
     (1536, ("1.5", "KiB")), (10 * 1024, ("10", "KiB")), (1023 * 1024 + 1000, ("1.0", "MiB")),
     (300 * 1024**2, ("300", "MiB")), (5 * 1024**4, ("5.0", "TiB")),
     (2**70, ("1024", "EiB"))],
)
def test_human_size(size: int, shown: tuple[str, str]) -> None:
    assert human_size(size) == shown


@pytest.mark.parametrize(
    ("query", "key", "descending"),
    [("", "name", False), ("sort=size", "size", True), ("sort=date", "date", True),
     ("sort=size&order=asc", "size", False), ("sort=name&order=desc", "name", True),
     ("order=desc", "name", True), ("sort=nonsense&order=sideways", "name", False),
     ("sort=date&sort=size", "date", True), ("sort=%73ize", "name", False),
     ("a=1&sort=size&order=desc&b", "size", True), ("&&&=", "name", False)],
)
def test_order_from_query(query: str, key: str, descending: bool) -> None:
    assert ListingOrder.from_query(query) == ListingOrder(key, descending)


# -- pages ---------------------------------------------------------------------------------------


def test_folders_first_then_files_in_natural_order(sized: StaticHandler) -> None:
    page = body_of(sized(request("/")))
    assert names_in(page) == ["alpha/", "Zeta/", "a.txt", "B2.txt", "b10.txt", "c.bin"]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("?sort=name&order=desc", ["Zeta/", "alpha/", "c.bin", "b10.txt", "B2.txt", "a.txt"]),
        ("?sort=size&order=desc", ["alpha/", "Zeta/", "a.txt", "b10.txt", "B2.txt", "c.bin"]),
        ("?sort=size&order=asc", ["alpha/", "Zeta/", "B2.txt", "c.bin", "b10.txt", "a.txt"]),
        ("?sort=date&order=desc", ["Zeta/", "alpha/", "c.bin", "b10.txt", "a.txt", "B2.txt"]),
        ("?sort=date&order=asc", ["alpha/", "Zeta/", "B2.txt", "a.txt", "b10.txt", "c.bin"]),
        ("?sort=size", ["alpha/", "Zeta/", "a.txt", "b10.txt", "B2.txt", "c.bin"]),
    ],
)
def test_the_query_string_sorts(sized: StaticHandler, query: str, names: list[str]) -> None:
    assert names_in(body_of(sized(request("/" + query)))) == names


def test_column_links_sort_without_javascript(sized: StaticHandler) -> None:
    page = body_of(sized(request("/"))).decode()
    links = re.findall(r'<th[^>]*><a href="([^"]*)">([^<]*)</a></th>', page)
    assert links == [("?sort=name&amp;order=desc", "Name \u2191"),
                     ("?sort=date&amp;order=desc", "Last modified (UTC)"),
                     ("?sort=size&amp;order=desc", "Size")]
    assert '<th aria-sort="ascending">' in page
    page = body_of(sized(request("/?sort=size&order=desc"))).decode()
    assert '<th class="size" aria-sort="descending"><a href="?sort=size&amp;order=asc">' in page
    assert "<script" not in page


def test_sizes_are_human_with_the_exact_count_in_a_title(sized: StaticHandler) -> None:
    page = body_of(sized(request("/"))).decode()
    assert 'title="4,000 bytes">3.9<span class="unit">KiB</span>' in page
    assert 'title="20 bytes">20<span class="unit">B</span>' in page
    assert "2 folders, 4 files (4.2 KiB)." in page


def test_page_is_readable_on_a_phone_and_in_dark_mode(handler: StaticHandler) -> None:
    response = handler(request("/"))
    page = body_of(response).decode()
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "prefers-color-scheme:dark" in page and "color-scheme:light dark" in page
    assert "@media (max-width:" in page


def test_the_stylesheet_is_what_the_policy_allows(handler: StaticHandler) -> None:
    import base64
    import hashlib

    response = handler(request("/"))
    style = re.search(r"<style>(.*?)</style>", body_of(response).decode(), re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    policy = field(response, "content-security-policy")
    assert policy.startswith("default-src 'none';") and f"'sha256-{digest}'" in policy
    assert "script-src" not in policy  # none: default-src 'none' covers it


def test_breadcrumbs_link_every_level_relatively(handler: StaticHandler, root: str) -> None:
    os.makedirs(os.path.join(root, "noindex", "nested", "deep <&>"))
    page = body_of(handler(request("/noindex/nested/deep%20%3C%26%3E/"))).decode()
    crumbs = re.search(r'<span class="crumbs">(.*?)</span>', page)
    assert crumbs is not None
    assert crumbs.group(1) == ('<a href="../../../">/</a><a href="../../">noindex</a>/'
                               '<a href="../">nested</a>/<a href="./">deep &lt;&amp;&gt;</a>/')
    assert "<title>Index of /noindex/nested/deep &lt;&amp;&gt;/</title>" in page


@pytest.mark.parametrize(
    "name", ['q"uote', "<b>bold<b>", "a&amp;b", "100%", "%41", "two  spaces", "it's", "#frag",
             "?query", "x\ty"],
)
def test_every_name_is_escaped_in_text_and_links(handler: StaticHandler, root: str,
                                                 name: str) -> None:
    os.mkdir(os.path.join(root, "names"))
    with open(os.path.join(root, "names", name), "wb") as f:
        f.write(b"x")
    page = body_of(handler(request("/names/"))).decode()
    row = next(line for line in page.splitlines() if "<td class=\"name\">" in line
               and "../" not in line)
    href = re.search(r'href="([^"]*)"', row)
    assert href is not None
    assert re.fullmatch(r"[A-Za-z0-9%._~-]*", href.group(1))  # percent-encoded, nothing else
    assert unquote(href.group(1)) == name
    assert f">{html.escape(name)}</a>" in row
    # and the JSON carries the name itself
    document = json.loads(body_of(handler(request("/names/", accept="application/json"))))
    assert [entry["name"] for entry in document["entries"]] == [name]


def test_names_that_are_not_utf8_are_left_out_of_page_and_json(handler: StaticHandler,
                                                               root: str) -> None:
    with open(os.path.join(os.fsencode(root), b"noindex", b"latin1-\xe9.txt"), "wb") as f:
        f.write(b"x")
    assert b"latin1" not in body_of(handler(request("/noindex/")))
    assert b"latin1" not in body_of(handler(request("/noindex/", accept="application/json")))


# -- JSON ----------------------------------------------------------------------------------------


def test_json_when_accept_prefers_it(sized: StaticHandler) -> None:
    response = sized(request("/?sort=size", accept="application/json"))
    assert response.status == 200
    assert field(response, "content-type") == "application/json"
    assert field(response, "vary") == "Accept"
    assert "content-security-policy" not in fields_of(response)
    document = json.loads(body_of(response))
    assert document["path"] == "/" and document["omitted"] == 0 and document["omitted_exact"]
    entries = document["entries"]
    assert [entry["name"] for entry in entries] == ["alpha", "Zeta", "a.txt", "b10.txt",
                                                    "B2.txt", "c.bin"]
    assert entries[0] == {"name": "alpha", "type": "directory", "size": None,
                          "mtime": "1970-01-01T00:01:40Z"}
    assert entries[2] == {"name": "a.txt", "type": "file", "size": 4000,
                          "mtime": "1970-01-01T00:33:20Z"}


@pytest.mark.parametrize("accept", [None, "*/*", "text/html", "application/json;q=0.5, */*",
                                    "application/xml", "bogus;;"])
def test_html_for_everything_else(sized: StaticHandler, accept: str | None) -> None:
    fields = {} if accept is None else {"accept": accept}
    response = sized(request("/", **fields))
    assert field(response, "content-type") == "text/html; charset=utf-8"
    assert field(response, "vary") == "Accept"


# -- validators ----------------------------------------------------------------------------------


def test_each_representation_has_its_own_etag(sized: StaticHandler) -> None:
    tags = {
        field(sized(request(target, **fields)), "etag")
        for target, fields in (("/", {}), ("/?sort=size", {}), ("/?sort=size&order=asc", {}),
                               ("/", {"accept": "application/json"}))
    }
    assert len(tags) == 4
    assert field(sized(request("/")), "etag") == field(sized(request("/")), "etag")


def test_if_none_match_gives_304_until_the_folder_changes(handler: StaticHandler,
                                                          root: str) -> None:
    first = handler(request("/noindex/"))
    etag = field(first, "etag")
    not_modified = handler(request("/noindex/", if_none_match=etag))
    assert not_modified.status == 304 and not_modified.body == ()
    assert fields_of(not_modified) == {"etag": etag, "vary": "Accept"}
    assert handler(request("/noindex/", "HEAD", if_none_match=etag)).status == 304
    # a file in it grows: the folder's own mtime does not move, the listing's tag does
    with open(os.path.join(root, "noindex", "file.txt"), "ab") as f:
        f.write(b"more")
    assert handler(request("/noindex/", if_none_match=etag)).status == 200
    # the JSON's tag is not the page's
    assert handler(request("/noindex/", accept="application/json",
                           if_none_match=etag)).status == 200


def test_if_match_and_dates_on_a_listing(handler: StaticHandler) -> None:
    etag = field(handler(request("/noindex/")), "etag")
    assert handler(request("/noindex/", if_match=etag)).status == 200
    assert handler(request("/noindex/", if_match='"other"')).status == 412
    assert handler(request("/noindex/", if_match="*")).status == 200
    # no Last-Modified, so the date conditions are ignored (RFC 9110 13.1.3, 13.1.4)
    late = "Fri, 01 Jan 2100 00:00:00 GMT"
    early = "Thu, 01 Jan 1970 00:00:00 GMT"
    assert handler(request("/noindex/", if_modified_since=late)).status == 200
    assert handler(request("/noindex/", if_unmodified_since=early)).status == 200
    assert "last-modified" not in fields_of(handler(request("/noindex/")))


def test_head_has_the_fields_of_get(handler: StaticHandler) -> None:
    get = handler(request("/noindex/?sort=date", accept="application/json"))
    head = handler(request("/noindex/?sort=date", "HEAD", accept="application/json"))
    assert head.status == 200 and head.body == () and head.fields == get.fields
    get.release()


def test_range_is_ignored_on_a_listing(handler: StaticHandler) -> None:
    response = handler(request("/noindex/", range="bytes=0-3"))
    assert response.status == 200 and "accept-ranges" not in fields_of(response)
    assert body_of(response).startswith(b"<!DOCTYPE html>")


# -- the bound -----------------------------------------------------------------------------------


def test_a_huge_folder_is_cut_short_and_says_so(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing_module, "MAX_LISTED_ENTRIES", 5)
    monkeypatch.setattr(listing_module, "MAX_COUNTED_ENTRIES", 8)
    folder = tmp_path / "huge"
    folder.mkdir()
    for n in range(12):
        (folder / f"f{n}").write_bytes(b"x")
    (folder / os.fsdecode(b"bad-\xff")).write_bytes(b"x")  # never listed, never counted
    statted = count_stats(monkeypatch)
    handler = StaticHandler(str(folder))
    page = body_of(handler(request("/"))).decode()
    assert len(names_in(page.encode())) == 5
    assert len(statted) == 5  # the names past the bound were only counted
    assert "Not listed: 7 further entries. A listing shows at most 5 entries" in page
    document = json.loads(body_of(handler(request("/", accept="application/json"))))
    assert len(document["entries"]) == 5
    assert (document["omitted"], document["omitted_exact"]) == (7, True)
    (folder / "f12").write_bytes(b"x")
    (folder / "f13").write_bytes(b"x")
    document = json.loads(body_of(handler(request("/", accept="application/json"))))
    assert (document["omitted"], document["omitted_exact"]) == (8, False)
    page = body_of(handler(request("/"))).decode()
    assert "Not listed: more than 8 further entries." in page


def count_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``os.scandir`` record each entry's ``stat`` (``DirEntry`` itself cannot be patched)."""
    statted: list[str] = []
    real_scandir = os.scandir

    class CountingEntry:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self._entry, self.name, self.path = entry, entry.name, entry.path

        def is_symlink(self) -> bool:
            return self._entry.is_symlink()

        def stat(self) -> os.stat_result:
            statted.append(self.name)
            return self._entry.stat()

    @contextlib.contextmanager
    def counting_scandir(path: str) -> Iterator[Iterator[CountingEntry]]:
        with real_scandir(path) as entries:
            yield (CountingEntry(entry) for entry in entries)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    return statted


# -- hidden names --------------------------------------------------------------------------------


def test_dotfiles_are_left_out_of_the_page_the_json_and_the_count(
        root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkdir(os.path.join(root, ".well-known"))  # served and listed at the root only
    os.makedirs(os.path.join(root, "noindex", ".well-known"))
    with open(os.path.join(root, "noindex", ".env"), "wb") as f:
        f.write(b"SECRET=1")
    hiding, showing = StaticHandler(root), StaticHandler(root, dotfiles=True)
    root_names = names_in(body_of(hiding(request("/"))))
    assert ".hidden" not in root_names and ".well-known/" in root_names
    listed = json.loads(body_of(hiding(request("/noindex/", accept="application/json"))))
    assert [entry["name"] for entry in listed["entries"]] == ["nested", "file.txt"]
    assert names_in(body_of(showing(request("/noindex/")))) == [".well-known/", "nested/",
                                                                 ".env", "file.txt"]
    # past the bound, a hidden name is not even counted as omitted
    monkeypatch.setattr(listing_module, "MAX_LISTED_ENTRIES", 1)
    listed = json.loads(body_of(hiding(request("/noindex/", accept="application/json"))))
    assert (len(listed["entries"]), listed["omitted"]) == (1, 1)
    listed = json.loads(body_of(showing(request("/noindex/", accept="application/json"))))
    assert (len(listed["entries"]), listed["omitted"]) == (1, 3)
