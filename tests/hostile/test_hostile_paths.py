"""Hostile paths: no byte outside the document root, no header or markup injected by a name.

The tree under test is the standard document root plus traps around it: a
secret file and folder *next to* the root, symlinks from inside pointing out (to a file, to a
folder, absolute and relative, one in a subfolder), symlinks that stay inside (served), a symlink
loop, and names holding CR/LF, quotes, ``<script>`` and ``&``. Every request-target below is sent
raw to every model; whatever the status, the secret must not appear in any response.

Statuses follow the decisions in the docstrings of ``evserver.static.paths`` and
``evserver.static.handler``: malformed (bad escape, invalid or overlong UTF-8, NUL) -> 400; a
name that cannot be served (``.``, ``..``, ``%2F``, backslash, empty segment, a symlink out of the
root) -> 404; unreadable -> 403.

Files without read permission need a server that is not root (root reads everything): when the
tests run as root, that server is a child process without the capabilities that bypass them.
"""

from __future__ import annotations

import html.parser
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.support.processes import ServerProcess
from tests.support.responses import HTTPResponse, exchange
from tests.support.servers import RunningServer

SECRET = b"TOP-SECRET-7f3a9c outside the root\n"
CLIENT_TIMEOUT = 8.0


def _build_traps(root: Path) -> None:
    outside = root.parent
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "secret-dir").mkdir(exist_ok=True)
    (outside / "secret-dir" / "x.txt").write_bytes(SECRET)
    (root / "out-file").symlink_to("../secret.txt")
    (root / "out-dir").symlink_to("../secret-dir")
    (root / "out-abs").symlink_to(outside / "secret.txt")
    (root / "sub" / "out-deep").symlink_to("../../secret.txt")
    (root / "sub" / "out-deep-dir").symlink_to("../../secret-dir")
    (root / "sub" / "up-link").symlink_to("../small.txt")
    (root / "sub" / "up-dir-link").symlink_to("../noindex")
    (root / "out-root").symlink_to("/")
    (root / "in-link").symlink_to("small.txt")
    (root / "in-dir-link").symlink_to("sub")
    (root / "loop").symlink_to("loop")


@pytest.fixture
def trap_root(docroot: Path) -> Path:
    _build_traps(docroot)
    return docroot


@pytest.fixture
def trap_server(start_server: Callable[..., RunningServer], model_name: tuple[str, str],
                trap_root: Path) -> RunningServer:
    model, selector = model_name
    return start_server(model=model, selector=selector, header_timeout=2, idle_timeout=2)


def get(server: RunningServer | tuple[str, int], target: str | bytes,
        method: bytes = b"GET") -> HTTPResponse:
    address = server if isinstance(server, tuple) else server.address
    raw_target = target.encode("latin-1") if isinstance(target, str) else target
    request = method + b" " + raw_target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    responses, _ = exchange(address, request, timeout=CLIENT_TIMEOUT,
                            head_requests=(method == b"HEAD",))
    assert len(responses) == 1, responses
    return responses[0]


TRAVERSALS = [
    # raw and percent-encoded dot segments (RFC 3986 2.3: %2E is ".")
    ("/../secret.txt", 404),
    ("/../../../../../../etc/passwd", 404),
    ("/%2e%2e/secret.txt", 404),
    ("/%2E%2E/secret.txt", 404),
    ("/.%2e/secret.txt", 404),
    ("/%2e./secret.txt", 404),
    ("/sub/../../secret.txt", 404),
    ("/sub/%2e%2e/%2e%2e/secret.txt", 404),
    ("/sub/..", 404),
    ("/./small.txt", 404),
    ("/%2e/small.txt", 404),
    ("/sub/.", 404),
    # encoded separators: a name never holds "/" (so %2F is 404), backslash is refused
    ("/..%2fsecret.txt", 404),
    ("/%2e%2e%2fsecret.txt", 404),
    ("/sub%2f..%2f..%2fsecret.txt", 404),
    ("/..%5csecret.txt", 404),
    ("/sub/..%5c..%5csecret.txt", 404),
    ("/%5c..%5c..%5csecret.txt", 404),
    ("/..\\secret.txt", 404),  # a raw backslash (accepted as browsers send it) names nothing
    # double encoding stays literal: a file named "%2e%2e" does not exist
    ("/%252e%252e/secret.txt", 404),
    ("/%252e%252e%252fsecret.txt", 404),
    # overlong and invalid UTF-8 (RFC 3629 forbids overlong forms)
    ("/%c0%ae%c0%ae/secret.txt", 400),
    ("/%e0%80%ae%e0%80%ae/secret.txt", 400),
    ("/%c0%af..%c0%afsecret.txt", 400),
    ("/%c1%9c", 400),
    ("/%ed%a0%80", 400),  # a UTF-16 surrogate encoded in UTF-8
    ("/%ff", 400),
    # NUL, raw or encoded, and broken escapes
    ("/small.txt%00.html", 400),
    ("/%00", 400),
    ("/%u002e%u002e/secret.txt", 400),
    ("/%2", 400),
    ("/%zz", 400),
    # empty segments and absolute-form targets
    ("//secret.txt", 404),
    ("//etc/passwd", 404),
    ("///etc/passwd", 404),
    ("/sub//a.txt", 404),
    ("http://t/../secret.txt", 404),
    ("http://t//etc/passwd", 404),
    ("http://t/%2e%2e/secret.txt", 404),
    ("HTTP://t/%2E%2E/%2E%2E/etc/passwd", 404),
    ("http://t", 200),  # the root's index
    ("http://../secret.txt", 404),  # ".." as a host: still a path of "/secret.txt"
    ("/..;/secret.txt", 404),
    ("/...", 404),
    ("/secret.txt", 404),
    ("/etc/passwd", 404),
    # symlinks out of the root, as if absent; symlinks inside are served
    ("/out-file", 404),
    ("/out-abs", 404),
    ("/out-dir", 404),
    ("/out-dir/", 404),
    ("/out-dir/x.txt", 404),
    ("/sub/out-deep", 404),
    ("/out-root/etc/passwd", 404),
    ("/out-root/", 404),
    ("/in-link", 200),
    ("/in-dir-link/a.txt", 200),
]


@pytest.mark.parametrize(("target", "status"), TRAVERSALS, ids=[t for t, _ in TRAVERSALS])
def test_traversal_never_leaves_the_root(trap_server: RunningServer, target: str,
                                         status: int) -> None:
    response = get(trap_server, target)
    assert response.status == status, (target, response.status)
    assert SECRET not in response.body
    assert b"root:x:0:0" not in response.body
    assert b"secret-dir" not in response.body


def test_symlink_loop_is_refused(trap_server: RunningServer) -> None:
    response = get(trap_server, "/loop")
    assert response.status in (403, 404)  # ELOOP (403) or "resolves nowhere" (404)


def test_listing_hides_links_that_leave_the_root(trap_server: RunningServer) -> None:
    response = get(trap_server, "/sub/")  # the root has an index.html; /sub/ has none
    assert response.status == 200
    page = response.body
    links = _links(page)
    assert "up-link" in links and "up-dir-link/" in links and "a.txt" in links
    for name in ("out-deep", "out-deep-dir/", "out-deep-dir"):
        assert name not in links, name
    assert b"secret" not in page


def test_head_and_range_obey_the_same_checks(trap_server: RunningServer) -> None:
    assert get(trap_server, "/out-file", method=b"HEAD").status == 404
    request = (b"GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-5\r\n"
               b"Connection: close\r\n\r\n")
    responses, _ = exchange(trap_server.address, request, timeout=CLIENT_TIMEOUT)
    assert [r.status for r in responses] == [404]
    assert SECRET[:6] not in responses[0].body


def test_a_link_redirected_outside_after_caching_is_refused(trap_server: RunningServer,
                                                            trap_root: Path) -> None:
    # A symlink served (and maybe cached) while it points inside must stop being served the
    # moment it points outside: the cache must not keep a path that no longer passes the check.
    link = trap_root / "moving"
    link.symlink_to("kib.bin")
    assert get(trap_server, "/moving").status == 200
    link.unlink()
    link.symlink_to("../secret.txt")
    response = get(trap_server, "/moving")
    assert response.status == 404 and SECRET not in response.body


# -- names that try to inject headers or markup -------------------------------------------------

EVIL_NAMES = [
    "evil\r\nX-Injected: 1",
    'quote"and<angle>.txt',
    "<img src=x onerror=alert(1)>.txt",
    "<script>alert(1)<!--.txt",
    "apos'&amp.txt",
    "tab\tname.txt",
    "javascript:alert(1)",
]


@pytest.fixture
def evil_root(docroot: Path) -> Path:
    folder = docroot / "evil"
    folder.mkdir()
    for name in EVIL_NAMES:
        (folder / name).write_text(f"content of {name!r}\n")
    (folder / "dir\r\nSet-Cookie: a=b").mkdir()
    (folder / 'dir"<b>').mkdir()
    return docroot


class _PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs += [value or "" for name, value in attrs if name == "href"]


def _links(page: bytes) -> list[str]:
    parser = _PageParser()
    parser.feed(page.decode("utf-8"))
    return [unquote(href) for href in parser.hrefs]


def test_listing_escapes_every_name(start_server: Callable[..., RunningServer],
                                    model_name: tuple[str, str], evil_root: Path) -> None:
    model, selector = model_name
    server = start_server(model=model, selector=selector)
    response = get(server, "/evil/")
    assert response.status == 200
    page = response.body
    parser = _PageParser()
    parser.feed(page.decode("utf-8"))
    assert not {"script", "img", "b", "angle"} & set(parser.tags), parser.tags
    raw_hrefs = re.findall(rb'href="([^"]*)"', page)
    for href in raw_hrefs:  # links are percent-encoded: no quote, angle, space, CR/LF, colon
        if href.startswith(b"?"):  # the column headings' sort links, which hold no name
            assert re.fullmatch(rb"\?sort=(name|size|date)&amp;order=(asc|desc)", href), href
            continue
        assert re.fullmatch(rb"[A-Za-z0-9%._~/-]*", href), href
    links = _links(page)
    for name in EVIL_NAMES:
        assert name in links, name
        # and the link leads to that very file
        target = "/evil/" + "".join(f"%{b:02X}" for b in name.encode())
        file_response = get(server, target)
        assert file_response.status == 200
        assert file_response.body == f"content of {name!r}\n".encode()
    assert "dir\r\nSet-Cookie: a=b/" in links and 'dir"<b>/' in links


def test_redirect_location_cannot_inject_a_header(start_server: Callable[..., RunningServer],
                                                  model_name: tuple[str, str],
                                                  evil_root: Path) -> None:
    model, selector = model_name
    server = start_server(model=model, selector=selector)
    for target, name in (("/evil/dir%0D%0ASet-Cookie:%20a=b", "dir\r\nSet-Cookie: a=b"),
                         ("/evil/dir%22%3Cb%3E?q=%0d%0a%22", 'dir"<b>')):
        response = get(server, target)
        assert response.status == 301, target
        assert "set-cookie" not in response.headers
        location = response.headers["location"]
        assert re.fullmatch(r"[\x21-\x7e]+", location), location
        assert unquote(location.partition("?")[0]) == f"/evil/{name}/"
        assert b"<b>" not in response.body and b"\r\nSet-Cookie" not in response.head
        follow = get(server, location)
        assert follow.status == 200  # the Location leads to the listing of that folder


# -- permissions ---------------------------------------------------------------------------------

@pytest.fixture
def unprivileged_address(start_server: Callable[..., RunningServer],
                         start_process: Callable[..., ServerProcess | None], docroot: Path
                         ) -> tuple[str, int]:
    """A server that file permissions apply to.

    Not root: an in-process server. Root: a child ``python -m evserver`` started through
    ``setpriv`` with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH removed from its bounding set, so
    it is still uid 0 (it can reach the test's private temporary folder, which it owns) but
    permission bits bind it like anyone else.
    """
    _make_unreadable(docroot)
    if os.geteuid() != 0:
        return start_server(root=docroot).address
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits cannot be tested")
    server = start_process("-q", wrapper=(setpriv, "--bounding-set",
                                          "-dac_override,-dac_read_search"), required=False)
    if server is None:
        pytest.skip("cannot start a server without DAC override")
    return server.address


def _make_unreadable(root: Path) -> None:
    (root / "noread.txt").write_text("you cannot read me\n")
    (root / "noread.txt").chmod(0o000)
    (root / "noread-big.bin").write_bytes(b"x" * 200_000)
    (root / "noread-big.bin").chmod(0o000)
    (root / "locked").mkdir()
    (root / "locked" / "inside.txt").write_text("behind a locked door\n")
    (root / "locked").chmod(0o000)
    (root / "nolist").mkdir()
    (root / "nolist" / "file.txt").write_text("listed nowhere\n")
    (root / "nolist").chmod(0o311)  # can enter, cannot read the names
    (root / "badindex").mkdir()
    (root / "badindex" / "index.html").write_text("<p>secret index\n")
    (root / "badindex" / "index.html").chmod(0o000)


def test_unreadable_files_and_folders_are_403(unprivileged_address: tuple[str, int]) -> None:
    address = unprivileged_address
    expectations = [("/noread.txt", 403), ("/noread-big.bin", 403), ("/locked/inside.txt", 403),
                    ("/locked/", 403), ("/nolist/", 403), ("/nolist/file.txt", 200),
                    ("/badindex/", 403), ("/small.txt", 200)]
    for target, status in expectations:
        response = get(address, target)
        assert response.status == status, (target, response.status)
        assert b"you cannot read me" not in response.body
        assert b"behind a locked door" not in response.body
        assert b"secret index" not in response.body
    # the server is still well after all of that
    assert get(address, "/").status == 200
