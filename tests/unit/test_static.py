"""The static-file handler on a temporary tree: mapping, safety, headers, listings, descriptors.

Conditional requests and ranges are in ``test_static_conditions.py``, the cache and the
descriptor count in ``test_static_cache.py``; the tree and helpers in ``tests/support/static.py``.
"""

from __future__ import annotations

import errno
import html
import logging
import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from evserver.bodies import FileRegion
from evserver.static import (
    SMALL_FILE_CACHE_LIMIT,
    StaticHandler,
    content_type_for,
)
from evserver.static.paths import decode_path, split_absolute_form
from evserver.static.refusals import Refusal
from tests.support.procfs import open_fds
from tests.support.static import (
    LARGE,
    SMALL,
    body_of,
    field,
    fields_of,
    make_tree,
    request,
)


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(make_tree(tmp_path))


@pytest.fixture
def handler(root: str) -> StaticHandler:
    return StaticHandler(root)

# -- plain files ---------------------------------------------------------------------------------


def test_small_file_has_every_header_and_its_bytes(handler: StaticHandler) -> None:
    response = handler(request("/small.txt"))
    assert response.status == 200
    fields = fields_of(response)
    assert fields["content-type"] == "text/plain; charset=utf-8"
    assert fields["content-length"] == str(len(SMALL))
    assert fields["accept-ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"', fields["etag"])
    assert fields["last-modified"].endswith(" GMT")
    assert "date" not in fields and "server" not in fields and "connection" not in fields
    assert response.body == (SMALL,)
    assert response.body_length == len(SMALL)


def test_etag_is_derived_from_inode_size_and_mtime(handler: StaticHandler, root: str) -> None:
    st = os.stat(os.path.join(root, "small.txt"))
    etag = field(handler(request("/small.txt")), "etag")
    assert etag == f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def test_large_file_is_a_region_that_owns_its_descriptor(handler: StaticHandler) -> None:
    response = handler(request("/large.bin"))
    assert response.status == 200
    assert field(response, "content-length") == str(len(LARGE))
    assert field(response, "content-type") == "application/octet-stream"
    (region,) = response.body
    assert isinstance(region, FileRegion)
    assert (region.offset, region.count, region.close_after) == (0, len(LARGE), True)
    assert body_of(response) == LARGE  # reads and releases


def test_small_limit_is_the_boundary_between_bytes_and_regions(
    handler: StaticHandler, root: str
) -> None:
    with open(os.path.join(root, "at"), "wb") as f:
        f.write(b"a" * SMALL_FILE_CACHE_LIMIT)
    with open(os.path.join(root, "over"), "wb") as f:
        f.write(b"a" * (SMALL_FILE_CACHE_LIMIT + 1))
    assert isinstance(handler(request("/at")).body[0], bytes)
    over = handler(request("/over"))
    assert isinstance(over.body[0], FileRegion)
    over.release()


def test_empty_file_has_no_body(handler: StaticHandler) -> None:
    response = handler(request("/empty.txt"))
    assert response.status == 200
    assert field(response, "content-length") == "0"
    assert response.body == () and response.body_length == 0


@pytest.mark.parametrize("target", ["/small.txt", "/large.bin", "/empty.txt", "/sub/", "/"])
def test_head_has_the_fields_of_get_and_no_body(handler: StaticHandler, target: str) -> None:
    before = open_fds()
    get = handler(request(target))
    head = handler(request(target, "HEAD"))
    assert head.status == get.status == 200
    assert head.fields == get.fields
    assert head.body == () and head.body_length == 0
    get.release()
    assert open_fds() == before


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.html", "text/html; charset=utf-8"),
        ("a.TXT", "text/plain; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.js", "application/javascript; charset=utf-8"),
        ("a.json", "application/json; charset=utf-8"),
        ("a.png", "image/png"),
        ("a.jpg", "image/jpeg"),
        ("a.tar.gz", "application/gzip"),
        ("a.unknownext", "application/octet-stream"),
        ("Makefile", "application/octet-stream"),
        (".bashrc", "application/octet-stream"),
    ],
)
def test_content_type(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


# -- methods and target forms ---------------------------------------------------------------------


@pytest.mark.parametrize("target", ["*", "/", "/small.txt", "/missing"])
def test_options_is_204_with_allow_and_no_content_length(
    handler: StaticHandler, target: str
) -> None:
    response = handler(request(target, "OPTIONS"))
    assert response.status == 204
    assert fields_of(response) == {"allow": "GET, HEAD, OPTIONS"}
    assert response.body == ()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "get", "BREW"])
def test_other_methods_are_405_with_allow(handler: StaticHandler, method: str) -> None:
    response = handler(request("/small.txt", method))
    assert response.status == 405
    assert field(response, "allow") == "GET, HEAD, OPTIONS"
    assert field(response, "content-type") == "text/html; charset=utf-8"
    assert b"405" in body_of(response)


def test_connect_with_authority_form_is_405(handler: StaticHandler) -> None:
    assert handler(request("example.com:443", "CONNECT")).status == 405


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("http://example.com/small.txt", 200),
        ("HTTPS://example.com:8443/small.txt?x=1", 200),
        ("http://example.com", 200),  # empty path: the root
        ("http://example.com?q", 200),
        ("http:///small.txt", 400),  # RFC 9110 4.2.1: empty host
        ("ftp://example.com/small.txt", 400),
        ("example.com:80", 400),  # authority-form is only for CONNECT
        ("*", 400),  # asterisk-form is only for OPTIONS
        ("small.txt", 400),
    ],
)
def test_request_target_forms(handler: StaticHandler, target: str, status: int) -> None:
    response = handler(request(target))
    assert response.status == status
    response.release()


def test_query_is_ignored_for_files(handler: StaticHandler) -> None:
    assert body_of(handler(request("/small.txt?v=1&x=%zz"))) == SMALL


# -- names that need care ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("/with%20space.txt", "with space.txt"),
        ("/%C3%A9t%C3%A9.txt", "été.txt"),
        ("/quo%22te.txt", 'quo"te.txt'),
        ("/lt%3Cgt%3E.txt", "lt<gt>.txt"),
        ("/hash%23.txt", "hash#.txt"),
        ("/%25literal", "%literal"),
        ("/.hidden", ".hidden"),
        ("/...", "..."),
        ("/trailing.", "trailing."),
    ],
)
def test_special_names_are_served(root: str, target: str, name: str) -> None:
    handler = StaticHandler(root, dotfiles=True)  # dot names too (hidden by default)
    with open(os.path.join(root, name), "rb") as f:
        expected = f.read()
    assert body_of(handler(request(target))) == expected


def test_name_with_cr_lf_is_served(handler: StaticHandler, root: str) -> None:
    if not os.path.exists(os.path.join(root, "cr\r\nlf.txt")):
        pytest.skip("the filesystem refuses CR/LF in names")
    assert body_of(handler(request("/cr%0D%0Alf.txt"))) == b"crlf\n"


def test_directory_with_cr_lf_redirects_without_injection(handler: StaticHandler) -> None:
    response = handler(request("/dir%0D%0ASet-Cookie:%20x=1?a=b"))
    assert response.status == 301
    location = field(response, "location")
    assert location == "/dir%0D%0ASet-Cookie%3A%20x%3D1/?a=b"
    assert b"Set-Cookie" not in response.fields.replace(b"Location: /dir%0D%0ASet-Cookie", b"")
    assert response.fields.count(b"\r\n") == 3


# -- traversal and malformed paths --------------------------------------------------------------

TRAVERSALS = [
    # (target, status): 400 for malformed, 404 for names that are never served
    ("/../outside/secret.txt", 404),
    ("/../../../../etc/passwd", 404),
    ("/sub/../../outside/secret.txt", 404),
    ("/sub/../small.txt", 404),  # never normalised, even when it would stay inside
    ("/%2e%2e/outside/secret.txt", 404),
    ("/%2E%2e/outside/secret.txt", 404),
    ("/.%2e/outside/secret.txt", 404),
    ("/%2e./outside/secret.txt", 404),
    ("/%2e%2e%2foutside%2fsecret.txt", 404),  # encoded slashes
    ("/..%2foutside/secret.txt", 404),
    ("/sub%2findex.html", 404),
    ("/sub%2Findex.html", 404),
    ("/%252e%252e/outside/secret.txt", 404),  # double-encoded: the literal name "%2e%2e"
    ("/%c0%ae%c0%ae/outside/secret.txt", 400),  # overlong UTF-8 for "."
    ("/%c0%af", 400),  # overlong UTF-8 for "/"
    ("/%e0%80%ae", 400),  # 3-byte overlong "."
    ("/..\\outside\\secret.txt", 404),  # raw backslashes
    ("/..%5coutside%5csecret.txt", 404),
    ("/sub\\index.html", 404),
    ("/small.txt%00.html", 400),
    ("/%00", 400),
    ("/small.txt%", 400),  # truncated escape
    ("/small.txt%2", 400),
    ("/%zz", 400),
    ("/%ff", 400),  # not UTF-8
    ("/%ed%a0%80", 400),  # an encoded surrogate
    ("/./small.txt", 404),
    ("/%2e/small.txt", 404),
    ("/sub/.", 404),
    ("/sub/..", 404),
    ("/..", 404),
    ("//etc/passwd", 404),
    ("//small.txt", 404),
    ("/sub//index.html", 404),
    ("http://example.com/../outside/secret.txt", 404),
    ("http://example.com/%2e%2e/outside/secret.txt", 404),
    ("http://example.com//etc/passwd", 404),
    ("http://..//outside/secret.txt", 404),  # the authority is not part of the path
    ("/link_out", 404),  # symlink to a file outside
    ("/dirlink_out/secret.txt", 404),  # symlink to a directory outside
    ("/dirlink_out/", 404),
    ("/dirlink_out", 404),
    ("/small.txt#frag", 400),
    ("/small.txt/", 404),
    ("/small.txt/..", 404),
    ("/" + "a" * 300, 404),  # ENAMETOOLONG
    ("/" + "a/" * 3000, 404),
]


@pytest.mark.parametrize(("target", "status"), TRAVERSALS)
def test_traversal_shapes(handler: StaticHandler, target: str, status: int) -> None:
    for method in ("GET", "HEAD"):
        response = handler(request(target, method))
        assert response.status == status, (method, target)
        body = body_of(response)
        assert b"TOP SECRET" not in body
        if method == "GET":
            assert f"<h1>{status} ".encode() in body


def test_there_are_enough_traversal_shapes() -> None:
    assert len(TRAVERSALS) >= 25


@pytest.mark.parametrize(
    ("raw_path", "status"),
    [("/%zz", 400), ("/a#b", 400), ("/%00", 400), ("/%c0%ae", 400), ("/%ff", 400),
     ("/..", 404), ("/%2e", 404), ("//small.txt", 404), ("/a%2fb", 404), ("/a%5cb", 404)],
)
def test_path_decoding_refuses_with_the_status(raw_path: str, status: int) -> None:
    with pytest.raises(Refusal) as refused:
        decode_path(raw_path)
    assert refused.value.status == status


def test_path_decoding_gives_the_names_once_decoded() -> None:
    assert decode_path("/sub/%C3%A9t%C3%A9.txt") == ["sub", "été.txt"]
    assert decode_path("/sub/") == ["sub", ""]
    assert decode_path("/%252e%252e") == ["%2e%2e"]


@pytest.mark.parametrize("target", ["*", "example.com:80", "ftp://h/x", "http:///x", "http://?q"])
def test_absolute_form_split_refuses_other_forms(target: str) -> None:
    with pytest.raises(Refusal) as refused:
        split_absolute_form(target)
    assert refused.value.status == 400


def test_absolute_form_split_gives_path_and_query() -> None:
    assert split_absolute_form("HTTP://example.com?q=1") == ("/", "q=1")
    assert split_absolute_form("https://h:8443/a/b?c?d") == ("/a/b", "c?d")


def test_double_encoded_name_is_the_literal_name(handler: StaticHandler, root: str) -> None:
    os.mkdir(os.path.join(root, "%2e%2e"))
    with open(os.path.join(root, "%2e%2e", "x.txt"), "wb") as f:
        f.write(b"literal\n")
    assert body_of(handler(request("/%252e%252e/x.txt"))) == b"literal\n"


# -- symlinks and special files ------------------------------------------------------------------


def test_symlinks_inside_the_root_are_served(handler: StaticHandler) -> None:
    assert body_of(handler(request("/link_in"))) == SMALL
    assert body_of(handler(request("/dirlink_in/index.html"))) == b"<p>sub index</p>\n"
    assert handler(request("/dirlink_in")).status == 301
    assert body_of(handler(request("/dirlink_in/"))) == b"<p>sub index</p>\n"


def test_follow_symlinks_serves_links_out_of_the_root(root: str) -> None:
    following = StaticHandler(root, follow_symlinks=True)
    assert body_of(following(request("/link_out"))) == b"TOP SECRET\n"
    assert body_of(following(request("/dirlink_out/secret.txt"))) == b"TOP SECRET\n"
    assert following(request("/../outside/secret.txt")).status == 404  # still no dot-dot


def test_root_given_through_a_symlink_works(tmp_path: Path, root: str) -> None:
    alias = str(tmp_path / "alias")
    os.symlink(root, alias)
    assert body_of(StaticHandler(alias)(request("/small.txt"))) == SMALL


def test_fifo_is_404_and_never_blocks(handler: StaticHandler, root: str) -> None:
    if not os.path.exists(os.path.join(root, "fifo")):
        pytest.skip("mkfifo is not available")
    before = open_fds()
    assert handler(request("/fifo")).status == 404  # would hang forever if opened blocking
    assert handler(request("/fifo", "HEAD")).status == 404
    assert open_fds() == before


def test_dangling_symlink_is_404(handler: StaticHandler) -> None:
    assert handler(request("/dangling")).status == 404


def test_symlink_loop_is_refused(handler: StaticHandler) -> None:
    assert handler(request("/loop")).status in (403, 404)
    assert StaticHandler(handler.root, follow_symlinks=True)(request("/loop")).status == 403


# -- the errno table -----------------------------------------------------------------------------


def test_unreadable_file_is_403(handler: StaticHandler, root: str) -> None:
    path = os.path.join(root, "unreadable.txt")
    try:
        with open(path, "rb"):
            pytest.skip("running as root: chmod 000 does not stop reads (see the errno tests)")
    except PermissionError:
        pass
    assert handler(request("/unreadable.txt")).status == 403


@pytest.mark.parametrize(
    ("error_number", "status"),
    [
        (errno.ENOENT, 404),
        (errno.ENOTDIR, 404),
        (errno.ENAMETOOLONG, 404),
        (errno.EACCES, 403),
        (errno.EPERM, 403),
        (errno.ELOOP, 403),
        (errno.EIO, 500),
        (errno.EMFILE, 503),
        (errno.ENFILE, 503),
    ],
)
def test_errno_table(
    handler: StaticHandler,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error_number: int,
    status: int,
) -> None:
    def failing_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        raise OSError(error_number, os.strerror(error_number), path)

    monkeypatch.setattr(os, "open", failing_open)
    with caplog.at_level(logging.ERROR, logger="evserver.static"):
        response = handler(request("/small.txt"))
    assert response.status == status
    assert f"<h1>{status} ".encode() in body_of(response)
    logged = [r for r in caplog.records if r.name == "evserver.static"]
    assert len(logged) == (1 if status == 500 else 0)


def test_unreadable_index_is_403(
    handler: StaticHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def open_refusing_index(path: str, flags: int, *args: object, **kwargs: object) -> int:
        if path.endswith("index.html"):
            raise PermissionError(errno.EACCES, "denied", path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", open_refusing_index)
    assert handler(request("/sub/")).status == 403


def test_unreadable_directory_listing_is_403(
    handler: StaticHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refusing_scandir(path: str) -> object:
        raise PermissionError(errno.EACCES, "denied", path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    assert handler(request("/noindex/")).status == 403


# -- directories ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/sub", "/sub/"),
        ("/sub?a=1&b=%20", "/sub/?a=1&b=%20"),
        ("/noindex/nested", "/noindex/nested/"),
        ("/dirlink_in", "/dirlink_in/"),
        ("http://example.com/sub?x", "/sub/?x"),
        ("/no%69ndex", "/noindex/"),  # re-encoded from the decoded name
    ],
)
def test_directory_without_slash_redirects(
    handler: StaticHandler, target: str, location: str
) -> None:
    response = handler(request(target))
    assert response.status == 301
    assert field(response, "location") == location
    assert field(response, "content-type") == "text/html; charset=utf-8"
    assert html.escape(location).encode() in body_of(response)
    head = handler(request(target, "HEAD"))
    assert head.status == 301 and head.fields == response.fields and head.body == ()


def test_directory_with_unicode_and_space_redirects_percent_encoded(
    handler: StaticHandler, root: str
) -> None:
    os.mkdir(os.path.join(root, "dé j<à>"))
    response = handler(request("/d%C3%A9%20j%3C%C3%A0%3E"))
    assert field(response, "location") == "/d%C3%A9%20j%3C%C3%A0%3E/"


def test_index_file_is_served(handler: StaticHandler) -> None:
    response = handler(request("/sub/"))
    assert response.status == 200
    assert field(response, "content-type") == "text/html; charset=utf-8"
    assert "etag" in fields_of(response)
    assert body_of(response) == b"<p>sub index</p>\n"


def test_first_existing_index_name_wins(root: str) -> None:
    with open(os.path.join(root, "sub", "default.txt"), "wb") as f:
        f.write(b"default\n")
    configured = StaticHandler(root, index_names=("missing.html", "default.txt", "index.html"))
    response = configured(request("/sub/"))
    assert field(response, "content-type") == "text/plain; charset=utf-8"
    assert body_of(response) == b"default\n"


def test_index_that_is_a_directory_is_skipped(root: str) -> None:
    os.mkdir(os.path.join(root, "noindex", "index.html"))
    response = StaticHandler(root)(request("/noindex/"))
    assert b"Index of /noindex/" in body_of(response)


def test_no_index_and_listing_off_is_403(root: str) -> None:
    quiet = StaticHandler(root, listing=False)
    assert quiet(request("/noindex/")).status == 403
    assert quiet(request("/")).status == 403
    assert body_of(quiet(request("/sub/"))) == b"<p>sub index</p>\n"  # an index still works


def test_listing_of_the_root(root: str) -> None:
    handler = StaticHandler(root, dotfiles=True)  # dotfiles listed (hidden by default)
    response = handler(request("/"))
    assert response.status == 200
    assert field(response, "content-type") == "text/html; charset=utf-8"
    page = body_of(response).decode("utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Index of /</title>" in page
    assert 'href="../"' not in page  # no parent link at the root
    hrefs = re.findall(r'href="([^"]*)"', page)
    # directories first, then files, each by name; dotfiles listed
    assert hrefs.index("dirlink_in/") < hrefs.index("noindex/") < hrefs.index("sub/")
    assert hrefs.index("sub/") < hrefs.index(".hidden") < hrefs.index("empty.txt")
    files = [unquote(h) for h in hrefs if not h.endswith("/")]
    assert files == sorted(files) and len(files) > 10
    # names escaped in text, percent-encoded in links
    assert "lt&lt;gt&gt;.txt" in page and 'href="lt%3Cgt%3E.txt"' in page
    assert "quo&quot;te.txt" in page and 'href="quo%22te.txt"' in page
    assert 'href="with%20space.txt"' in page and ">été.txt<" in page
    assert "<gt>" not in page
    # what is never served is never listed
    for hidden in ("link_out", "dirlink_out", "dangling", "loop", "fifo"):
        assert f'href="{hidden}' not in page
    assert 'href="link_in"' in page and 'href="dirlink_in/"' in page
    assert f">{len(SMALL)}<" in page  # sizes


def test_listing_has_a_parent_link_and_mtimes_in_utc(handler: StaticHandler, root: str) -> None:
    os.utime(os.path.join(root, "noindex", "file.txt"), (0, 86400 + 3661))
    page = body_of(handler(request("/noindex/"))).decode()
    assert '<a href="../">../</a>' in page
    assert "<title>Index of /noindex/</title>" in page
    assert "1970-01-02 01:01:01" in page
    assert page.index('href="nested/"') < page.index('href="file.txt"')


def test_listing_with_cr_lf_names_stays_one_line_per_link(
    handler: StaticHandler, root: str
) -> None:
    if not os.path.exists(os.path.join(root, "cr\r\nlf.txt")):
        pytest.skip("the filesystem refuses CR/LF in names")
    page = body_of(handler(request("/"))).decode()
    assert 'href="cr%0D%0Alf.txt"' in page


def test_listing_skips_names_that_are_not_utf8(handler: StaticHandler, root: str) -> None:
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9.txt"), "wb") as f:
        f.write(b"x")
    page = body_of(handler(request("/"))).decode("utf-8")
    assert "latin1-" not in page
    assert handler(request("/latin1-%E9.txt")).status == 400  # cannot be requested either


def test_listing_escapes_a_script_name(handler: StaticHandler, root: str) -> None:
    os.mkdir(os.path.join(root, "x"))
    with open(os.path.join(root, "x", "<script>alert(1)<"), "wb") as f:
        f.write(b"x")
    with open(os.path.join(root, "x", "javascript:alert(1)"), "wb") as f:
        f.write(b"x")
    page = body_of(handler(request("/x/"))).decode()
    assert "<script>" not in page
    assert 'href="javascript%3Aalert%281%29"' in page


def test_listing_off_with_follow_symlinks_lists_links_out(root: str) -> None:
    page = body_of(StaticHandler(root, follow_symlinks=True)(request("/"))).decode()
    assert 'href="link_out"' in page and 'href="dirlink_out/"' in page
