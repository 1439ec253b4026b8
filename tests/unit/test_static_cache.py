"""The handler's cache stays correct when files change, and no request leaks a descriptor."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from evserver.bodies import FileRegion
from evserver.static import SMALL_FILE_CACHE_LIMIT, StaticHandler
from evserver.static import cache as static_cache
from tests.support.procfs import open_fds
from tests.support.static import LARGE, SMALL, body_of, field, make_tree, request


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(make_tree(tmp_path))


@pytest.fixture
def handler(root: str) -> StaticHandler:
    """A handler whose clock says every file is long settled, so everything is cacheable."""
    settled = StaticHandler(root)
    settled.clock = lambda: time.time() + 3600  # type: ignore[method-assign]
    return settled


def count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        opened.append(path)
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counting_open)
    return opened


def rewrite(path: str, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)


def test_a_cached_small_file_is_served_without_opening_it(
    handler: StaticHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert body_of(handler(request("/small.txt"))) == SMALL
    opened = count_opens(monkeypatch)
    for _ in range(3):
        assert body_of(handler(request("/small.txt"))) == SMALL
    assert opened == []


def test_a_recently_changed_file_is_not_cached(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = StaticHandler(root)  # the real clock: the tree was just written
    assert body_of(fresh(request("/small.txt"))) == SMALL
    opened = count_opens(monkeypatch)
    assert body_of(fresh(request("/small.txt"))) == SMALL
    assert len(opened) == 1


def test_size_change_is_seen(handler: StaticHandler, root: str) -> None:
    path = os.path.join(root, "small.txt")
    assert body_of(handler(request("/small.txt"))) == SMALL
    rewrite(path, b"longer content than before\n")
    response = handler(request("/small.txt"))
    assert body_of(response) == b"longer content than before\n"
    assert field(response, "content-length") == "27"


def test_same_size_rewrite_with_a_new_mtime_is_seen(handler: StaticHandler, root: str) -> None:
    path = os.path.join(root, "small.txt")
    old_etag = field(handler(request("/small.txt")), "etag")
    st = os.stat(path)
    replacement = SMALL.upper()
    rewrite(path, replacement)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    response = handler(request("/small.txt"))
    assert body_of(response) == replacement
    assert field(response, "etag") != old_etag


def test_same_size_rewrite_with_the_same_mtime_is_seen_through_ctime(
    handler: StaticHandler, root: str
) -> None:
    path = os.path.join(root, "small.txt")
    assert body_of(handler(request("/small.txt"))) == SMALL
    st = os.stat(path)
    time.sleep(0.02)  # let the ctime tick; not a wait for a result, a change of timestamp
    rewrite(path, SMALL.upper())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back, ctime moves on
    if os.stat(path).st_ctime_ns == st.st_ctime_ns:
        pytest.skip("the filesystem's ctime did not move")
    assert body_of(handler(request("/small.txt"))) == SMALL.upper()


def test_replacement_by_rename_is_seen(handler: StaticHandler, root: str) -> None:
    path = os.path.join(root, "small.txt")
    assert body_of(handler(request("/small.txt"))) == SMALL
    st = os.stat(path)
    with open(path + ".new", "wb") as f:
        f.write(SMALL[::-1])
    os.utime(path + ".new", ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
    os.rename(path + ".new", path)
    assert body_of(handler(request("/small.txt"))) == SMALL[::-1]


def count_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    statted: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        statted.append(path)
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    return statted


def test_without_rounds_every_request_is_checked(
    handler: StaticHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert handler.check_round is None  # the default: the threaded model's behaviour
    handler(request("/small.txt"))
    statted = count_stats(monkeypatch)
    for _ in range(3):
        handler(request("/small.txt"))
    assert len(statted) == 3


def test_rounds_advance_only_once_shared(handler: StaticHandler) -> None:
    handler.next_check_round()  # a server without rounds never shares them: nothing changes
    assert handler.check_round is None
    handler.share_checks_per_round()
    first = handler.check_round
    assert first is not None
    handler.next_check_round()
    assert handler.check_round == first + 1
    handler.share_checks_per_round()  # sharing again does not go back to an earlier round
    assert handler.check_round == first + 1


def test_with_rounds_a_file_is_checked_once_per_round(
    handler: StaticHandler, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler.share_checks_per_round()
    path = os.path.join(root, "small.txt")
    assert body_of(handler(request("/small.txt"))) == SMALL  # the entry is made and checked
    statted = count_stats(monkeypatch)
    handler.next_check_round()
    for _ in range(3):  # one round: the first request checks, the others trust it
        assert body_of(handler(request("/small.txt"))) == SMALL
        assert body_of(handler(request("/small.txt", method="HEAD"))) == b""
    assert statted == [path]
    rewrite(path, b"changed\n")
    handler.next_check_round()  # the next round sees the change at its first request
    assert body_of(handler(request("/small.txt"))) == b"changed\n"
    assert body_of(handler(request("/small.txt"))) == b"changed\n"


def test_a_round_shares_the_check_of_one_path_only(
    handler: StaticHandler, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler.share_checks_per_round()
    handler(request("/small.txt"))
    handler(request("/page.html"))
    statted = count_stats(monkeypatch)
    handler.next_check_round()
    for _ in range(2):
        handler(request("/small.txt"))
        handler(request("/page.html"))
    assert sorted(statted) == sorted([os.path.join(root, "small.txt"),
                                      os.path.join(root, "page.html")])


def test_deletion_is_seen(handler: StaticHandler, root: str) -> None:
    assert body_of(handler(request("/small.txt"))) == SMALL
    os.unlink(os.path.join(root, "small.txt"))
    assert handler(request("/small.txt")).status == 404


def test_a_large_file_replaced_is_seen(handler: StaticHandler, root: str) -> None:
    path = os.path.join(root, "large.bin")
    assert body_of(handler(request("/large.bin"))) == LARGE
    assert body_of(handler(request("/large.bin"))) == LARGE  # from the cache entry
    replacement = random.Random(1).randbytes(len(LARGE))
    with open(path + ".new", "wb") as f:
        f.write(replacement)
    os.rename(path + ".new", path)
    assert body_of(handler(request("/large.bin"))) == replacement


def test_a_small_file_that_grows_large_becomes_a_region(handler: StaticHandler, root: str) -> None:
    path = os.path.join(root, "small.txt")
    assert body_of(handler(request("/small.txt"))) == SMALL
    rewrite(path, b"x" * (SMALL_FILE_CACHE_LIMIT + 1))
    response = handler(request("/small.txt"))
    assert isinstance(response.body[0], FileRegion)
    assert body_of(response) == b"x" * (SMALL_FILE_CACHE_LIMIT + 1)


def test_a_symlink_redirected_out_of_the_root_is_not_served_from_the_cache(
    handler: StaticHandler, root: str
) -> None:
    link = os.path.join(root, "link_in")
    assert body_of(handler(request("/link_in"))) == SMALL
    os.unlink(link)
    os.symlink("../outside/secret.txt", link)
    response = handler(request("/link_in"))
    assert response.status == 404
    assert b"TOP SECRET" not in body_of(response)


def test_a_new_first_index_replaces_a_listing(handler: StaticHandler, root: str) -> None:
    assert b"Index of" in body_of(handler(request("/noindex/")))
    with open(os.path.join(root, "noindex", "index.html"), "wb") as f:
        f.write(b"now indexed\n")
    assert body_of(handler(request("/noindex/"))) == b"now indexed\n"
    os.unlink(os.path.join(root, "noindex", "index.html"))
    assert b"Index of" in body_of(handler(request("/noindex/")))


def test_the_cache_is_bounded(
    handler: StaticHandler, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(static_cache, "CACHE_MAX_ENTRIES", 3)
    for index in range(10):
        with open(os.path.join(root, f"f{index}.txt"), "wb") as f:
            f.write(b"%d" % index)
    for index in range(10):
        assert body_of(handler(request(f"/f{index}.txt"))) == b"%d" % index
    assert len(handler._cache) == 3
    monkeypatch.setattr(static_cache, "CACHE_MAX_BYTES", len(SMALL) + 1)
    assert body_of(handler(request("/small.txt"))) == SMALL
    assert handler._cache.held_bytes == len(SMALL) + 1  # two one-byte entries evicted
    assert list(handler._cache) == ["/f9.txt", "/small.txt"]


# -- descriptors ----------------------------------------------------------------------------------

MIXED_REQUESTS = [
    ("/small.txt", {}),
    ("/large.bin", {}),
    ("/large.bin", {"range": "bytes=0-9,20-29,-5"}),
    ("/large.bin", {"range": "bytes=5-"}),
    ("/large.bin", {"range": "bytes=99999999-"}),
    ("/large.bin", {"if_none_match": "*"}),
    ("/large.bin", {"if_match": '"nope"'}),
    ("/large.bin", {"range": "bytes=0-1", "if_range": '"nope"'}),
    ("/empty.txt", {}),
    ("/sub/", {}),
    ("/", {}),
    ("/sub", {}),
    ("/missing", {}),
    ("/../etc/passwd", {}),
    ("/link_out", {}),
    ("/fifo", {}),
    ("/loop", {}),
    ("/%zz", {}),
    ("*", {}),
]


@pytest.mark.parametrize("settled", [True, False], ids=["cached", "uncached"])
def test_no_descriptor_leaks(root: str, settled: bool) -> None:
    handler = StaticHandler(root)
    if settled:
        handler.clock = lambda: time.time() + 3600  # type: ignore[method-assign]
    before = open_fds()
    for round_number in range(150):
        for method in ("GET", "HEAD"):
            for target, fields in MIXED_REQUESTS:
                response = handler(request(target, method, **fields))
                if round_number % 2:
                    response.release()  # abandoned before sending
                else:
                    body_of(response)  # "sent", then released
        assert open_fds() == before, f"descriptors leaked in round {round_number}"
