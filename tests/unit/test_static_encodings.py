"""Content codings: Accept-Encoding negotiation, precompressed sidecars, and gzip made in memory.

The negotiation is tested as a pure function; sidecars and ``gzip`` through the handler on a small
tree of text files, with a clock that says every file is long settled (so entries are cached),
unless a test says otherwise.
"""

from __future__ import annotations

import gzip
import os
import random
import time
from pathlib import Path

import pytest

from evserver.bodies import FileRegion
from evserver.static import SMALL_FILE_CACHE_LIMIT, StaticHandler
from evserver.static.encodings import gzip_compress, negotiate, parse_accept_encoding
from tests.support.procfs import open_fds
from tests.support.static import body_of, fields_of, request

SCRIPT = b"function hello() { return 'hello, world'; }\n" * 40
STYLE = b"body { color: #333; background: white; }\n" * 40
FAKE_BR = b"pretend this is brotli"
FAKE_ZST = b"pretend this is zstd"
GZIPPED_SCRIPT = gzip.compress(SCRIPT, mtime=0)
BIG_TEXT = b"".join(b"line %06d of a large text file\n" % n for n in range(4000))
BIG_SIDECAR = random.Random(5).randbytes(SMALL_FILE_CACHE_LIMIT + 1000)
"""Stands for a large gzip of ``BIG_TEXT``: the server never reads what a sidecar holds."""


def settle(handler: StaticHandler) -> StaticHandler:
    handler.clock = lambda: time.time() + 3600  # type: ignore[method-assign]
    return handler


def write(path: Path, data: bytes, *, like: Path | None = None, older: bool = False) -> None:
    """Write ``data``; with ``like``, give it that file's mtime (as ``gzip -k`` does), or one
    a minute earlier (``older``: a stale sidecar)."""
    path.write_bytes(data)
    if like is not None:
        st = like.stat()
        mtime = st.st_mtime_ns - (60_000_000_000 if older else 0)
        os.utime(path, ns=(st.st_atime_ns, mtime))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    write(root / "app.js", SCRIPT)
    write(root / "app.js.gz", GZIPPED_SCRIPT, like=root / "app.js")
    write(root / "app.js.br", FAKE_BR, like=root / "app.js")
    write(root / "style.css", STYLE)  # no sidecar
    write(root / "only.js", SCRIPT)
    write(root / "only.js.zst", FAKE_ZST, like=root / "only.js")
    write(root / "stale.js", SCRIPT)
    write(root / "stale.js.gz", GZIPPED_SCRIPT, like=root / "stale.js", older=True)
    write(root / "big.txt", BIG_TEXT)
    write(root / "big.txt.gz", BIG_SIDECAR, like=root / "big.txt")
    write(root / "tiny.txt", b"hi\n")
    write(root / "image.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    return root


@pytest.fixture
def handler(root: Path) -> StaticHandler:
    return settle(StaticHandler(str(root)))


def get(handler: StaticHandler, target: str, method: str = "GET", **fields: str
        ) -> tuple[int, dict[str, str], bytes]:
    response = handler(request(target, method, **fields))
    return response.status, fields_of(response), body_of(response)


# -- the negotiation, a pure function -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", {"gzip": 1000}),
        ("gzip, deflate, br, zstd", {"gzip": 1000, "deflate": 1000, "br": 1000, "zstd": 1000}),
        ("br;q=0.5, gzip;q=0.25", {"br": 500, "gzip": 250}),
        ("GZIP;Q=1.000, *;q=0", {"gzip": 1000, "*": 0}),
        ("x-gzip", {"gzip": 1000}),
        ("", {}),
        (" , ,gzip,", {"gzip": 1000}),
        ("gzip;q=0, gzip", {"gzip": 0}),  # the first weight of a coding counts
        ("gzip ; q=0.5", {"gzip": 500}),
    ],
)
def test_accept_encoding_is_parsed_with_its_weights(value: str, expected: dict[str, int]) -> None:
    assert parse_accept_encoding(value) == expected


@pytest.mark.parametrize(
    "value",
    ["gzip;q=2", "gzip;q=1.001", "gzip;q=0.1234", "gzip;q=", "gzip;q=.5", "gzip;level=9",
     "gzip;q=0.5;q=0.4", "g zip", "gzip br", '"gzip"', "gzip;", "br;q=-1", "gzip;q=1e0"],
)
def test_malformed_accept_encoding_is_none(value: str) -> None:
    assert parse_accept_encoding(value) is None
    assert negotiate(value, ("br", "zstd", "gzip")) is None  # identity, never an error


@pytest.mark.parametrize(
    ("value", "offered", "chosen"),
    [
        ("gzip, deflate, br, zstd", ("br", "zstd", "gzip"), "br"),  # a tie: the server's order
        ("gzip, deflate, br, zstd", ("gzip",), "gzip"),
        ("br;q=0.5, gzip", ("br", "gzip"), "gzip"),  # the client's weights first
        ("br", ("gzip",), None),  # nothing offered is acceptable
        ("*", ("zstd", "gzip"), "zstd"),
        ("*;q=0.1, gzip;q=0", ("br", "gzip"), "br"),  # gzip refused, the rest through "*"
        ("gzip;q=0.5, identity", ("gzip",), None),  # identity weighs more
        ("gzip;q=0.5, identity;q=0.5", ("gzip",), "gzip"),  # a tie with identity: coded
        ("gzip, identity;q=0", ("gzip",), "gzip"),
        ("identity;q=0", ("gzip",), None),  # identity is always the last resort, never 406
        ("*;q=0", ("gzip",), None),
        ("", ("gzip",), None),  # an empty field: no coding wanted
        ("deflate", ("br", "zstd", "gzip"), None),
    ],
)
def test_negotiation(value: str, offered: tuple[str, ...], chosen: str | None) -> None:
    assert negotiate(value, offered) == chosen


def test_gzip_made_in_memory_is_deterministic_and_valid() -> None:
    compressed = gzip_compress(SCRIPT)
    assert compressed == gzip_compress(SCRIPT)
    assert gzip.decompress(compressed) == SCRIPT
    assert compressed[4:8] == b"\0\0\0\0"  # no timestamp in the header


# -- sidecars -------------------------------------------------------------------------------------


def test_identity_of_a_file_with_sidecars_says_vary(handler: StaticHandler) -> None:
    status, fields, body = get(handler, "/app.js")
    assert status == 200 and body == SCRIPT
    assert fields["vary"] == "Accept-Encoding"
    assert "content-encoding" not in fields
    status, fields, body = get(handler, "/app.js", accept_encoding="deflate")
    assert status == 200 and body == SCRIPT and fields["vary"] == "Accept-Encoding"


def test_a_file_without_sidecars_has_no_vary(handler: StaticHandler) -> None:
    for accept in ({}, {"accept_encoding": "gzip, br"}):
        status, fields, body = get(handler, "/style.css", **accept)
        assert status == 200 and body == STYLE
        assert "vary" not in fields and "content-encoding" not in fields


def test_the_accepted_sidecar_is_sent_with_its_coding(handler: StaticHandler) -> None:
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip")
    assert status == 200 and body == GZIPPED_SCRIPT
    assert gzip.decompress(body) == SCRIPT
    assert fields["content-encoding"] == "gzip"
    assert fields["content-type"] == "application/javascript; charset=utf-8"
    assert fields["content-length"] == str(len(GZIPPED_SCRIPT))
    assert fields["vary"] == "Accept-Encoding"
    assert fields["accept-ranges"] == "bytes"
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip, deflate, br, zstd")
    assert status == 200 and body == FAKE_BR and fields["content-encoding"] == "br"
    status, fields, body = get(handler, "/app.js", accept_encoding="br;q=0.9, gzip")
    assert status == 200 and body == GZIPPED_SCRIPT
    status, fields, body = get(handler, "/only.js", accept_encoding="zstd, gzip")
    assert status == 200 and body == FAKE_ZST and fields["content-encoding"] == "zstd"


def test_each_representation_has_its_own_strong_etag(handler: StaticHandler) -> None:
    etags = {get(handler, "/app.js", accept_encoding=accept)[1]["etag"]
             for accept in ("identity", "gzip", "br")}
    assert len(etags) == 3
    assert all(etag.startswith('"') and not etag.startswith("W/") for etag in etags)


@pytest.mark.parametrize("accept", ["gzip;q=2", "gzip;level=1", "g zip", "br;q=-1"])
def test_bad_accept_encoding_gets_identity(handler: StaticHandler, accept: str) -> None:
    status, fields, body = get(handler, "/app.js", accept_encoding=accept)
    assert status == 200 and body == SCRIPT and "content-encoding" not in fields


def test_a_stale_sidecar_is_ignored(handler: StaticHandler) -> None:
    status, fields, body = get(handler, "/stale.js", accept_encoding="gzip")
    assert status == 200 and body == SCRIPT
    assert "content-encoding" not in fields and "vary" not in fields


def test_a_sidecar_asked_for_by_name_is_its_own_type(handler: StaticHandler, root: Path) -> None:
    for target, media_type in (("/app.js.gz", "application/gzip"),
                               ("/app.js.br", "application/x-brotli"),
                               ("/only.js.zst", "application/zstd")):
        status, fields, body = get(handler, target, accept_encoding="gzip, br, zstd")
        assert body == (root / target[1:]).read_bytes()
        assert status == 200
        assert fields["content-type"] == media_type
        assert "content-encoding" not in fields


def test_head_of_an_encoded_representation(handler: StaticHandler) -> None:
    status, fields, body = get(handler, "/app.js", "HEAD", accept_encoding="gzip")
    assert status == 200 and body == b""
    assert fields["content-encoding"] == "gzip"
    assert fields["content-length"] == str(len(GZIPPED_SCRIPT))


def test_conditional_requests_on_the_encoded_representation(handler: StaticHandler) -> None:
    gzip_etag = get(handler, "/app.js", accept_encoding="gzip")[1]["etag"]
    identity_etag = get(handler, "/app.js")[1]["etag"]
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip", if_none_match=gzip_etag)
    assert status == 304 and body == b""
    assert fields["etag"] == gzip_etag and fields["vary"] == "Accept-Encoding"
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip",
                               if_none_match=identity_etag)
    assert status == 200 and body == GZIPPED_SCRIPT  # another representation's tag: no match
    status, fields, _ = get(handler, "/app.js", if_none_match=identity_etag)
    assert status == 304 and fields["vary"] == "Accept-Encoding"
    status, _, _ = get(handler, "/app.js", accept_encoding="gzip", if_match=identity_etag)
    assert status == 412


def test_ranges_apply_to_the_encoded_bytes(handler: StaticHandler) -> None:
    gzip_etag = get(handler, "/app.js", accept_encoding="gzip")[1]["etag"]
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip", range="bytes=0-9")
    assert status == 206 and body == GZIPPED_SCRIPT[:10]
    assert fields["content-range"] == f"bytes 0-9/{len(GZIPPED_SCRIPT)}"
    assert fields["content-encoding"] == "gzip" and fields["vary"] == "Accept-Encoding"
    status, _, body = get(handler, "/app.js", accept_encoding="gzip", range="bytes=10-",
                          if_range=gzip_etag)
    assert status == 206 and body == GZIPPED_SCRIPT[10:]
    # several ranges of an encoded representation: the whole of it
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip",
                               range="bytes=0-1,5-6")
    assert status == 200 and body == GZIPPED_SCRIPT and fields["content-encoding"] == "gzip"
    # identity keeps its multipart answer, with Vary
    status, fields, body = get(handler, "/app.js", range="bytes=0-1,5-6")
    assert status == 206 and fields["content-type"].startswith("multipart/byteranges")
    assert fields["vary"] == "Accept-Encoding"
    status, fields, _ = get(handler, "/app.js", accept_encoding="gzip", range="bytes=99999-")
    assert status == 416 and fields["content-range"] == f"bytes */{len(GZIPPED_SCRIPT)}"


def test_a_large_sidecar_is_sent_with_sendfile(handler: StaticHandler) -> None:
    sidecar = BIG_SIDECAR
    for _ in range(2):  # made, then from the cache
        response = handler(request("/big.txt", accept_encoding="gzip"))
        (region,) = response.body
        assert isinstance(region, FileRegion) and region.close_after
        assert fields_of(response)["content-encoding"] == "gzip"
        assert body_of(response) == sidecar
    response = handler(request("/big.txt", accept_encoding="gzip", range="bytes=100-199"))
    assert response.status == 206 and body_of(response) == sidecar[100:200]
    assert body_of(handler(request("/big.txt"))) == BIG_TEXT


def test_no_precompressed_sends_identity_only(root: Path) -> None:
    plain = settle(StaticHandler(str(root), precompressed=False))
    status, fields, body = get(plain, "/app.js", accept_encoding="gzip, br")
    assert status == 200 and body == SCRIPT
    assert "vary" not in fields and "content-encoding" not in fields


def test_a_sidecar_leading_out_of_the_root_is_ignored(root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.gz").write_bytes(b"TOP SECRET")
    write(root / "outside.js", SCRIPT)
    os.symlink(tmp_path / "secret.gz", root / "outside.js.gz")
    handler = settle(StaticHandler(str(root)))
    status, fields, body = get(handler, "/outside.js", accept_encoding="gzip")
    assert status == 200 and body == SCRIPT and "content-encoding" not in fields


def test_a_sidecar_that_is_a_folder_is_ignored(root: Path) -> None:
    write(root / "dir.js", SCRIPT)
    (root / "dir.js.gz").mkdir()
    handler = settle(StaticHandler(str(root)))
    assert get(handler, "/dir.js", accept_encoding="gzip")[2] == SCRIPT


def test_a_deleted_sidecar_falls_back_to_identity(handler: StaticHandler, root: Path) -> None:
    assert get(handler, "/app.js", accept_encoding="gzip")[2] == GZIPPED_SCRIPT
    os.unlink(root / "app.js.gz")
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip")
    assert status == 200 and body == SCRIPT
    os.unlink(root / "app.js.br")
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip, br")
    assert status == 200 and body == SCRIPT
    assert "vary" not in fields  # the entry was rebuilt: no sidecar left


def test_a_rewritten_sidecar_is_seen(handler: StaticHandler, root: Path) -> None:
    assert get(handler, "/app.js", accept_encoding="gzip")[2] == GZIPPED_SCRIPT
    better = gzip.compress(SCRIPT, compresslevel=1, mtime=0)
    assert better != GZIPPED_SCRIPT
    write(root / "app.js.gz", better, like=root / "app.js")
    os.utime(root / "app.js.gz")  # now: newer than app.js
    assert get(handler, "/app.js", accept_encoding="gzip")[2] == better


def test_a_changed_file_makes_its_old_sidecar_stale(handler: StaticHandler, root: Path) -> None:
    assert get(handler, "/app.js", accept_encoding="gzip")[2] == GZIPPED_SCRIPT
    new_script = SCRIPT + b"// a new line\n"
    (root / "app.js").write_bytes(new_script)
    later = time.time_ns() + 5_000_000_000
    os.utime(root / "app.js", ns=(later, later))
    status, fields, body = get(handler, "/app.js", accept_encoding="gzip, br")
    assert status == 200 and body == new_script
    assert "content-encoding" not in fields and "vary" not in fields


def test_sidecars_of_a_large_file_are_checked_before_use(handler: StaticHandler,
                                                         root: Path) -> None:
    assert get(handler, "/big.txt", accept_encoding="gzip")[1]["content-encoding"] == "gzip"
    new_text = BIG_TEXT.replace(b"line", b"LINE")
    (root / "big.txt").write_bytes(new_text)
    later = time.time_ns() + 5_000_000_000
    os.utime(root / "big.txt", ns=(later, later))
    status, fields, body = get(handler, "/big.txt", accept_encoding="gzip")
    assert status == 200 and body == new_text and "content-encoding" not in fields


def count_stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    statted: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        statted.append(os.path.basename(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    return statted


def test_sidecar_presence_and_absence_cost_no_system_call(
    handler: StaticHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a matching Accept-Encoding, a cached file costs its one stat, as before; a file
    with no sidecar costs the same whatever Accept-Encoding says."""
    for target in ("/app.js", "/style.css"):
        get(handler, target, accept_encoding="gzip")
    statted = count_stats(monkeypatch)
    get(handler, "/app.js")
    get(handler, "/app.js", accept_encoding="deflate")
    get(handler, "/style.css", accept_encoding="gzip, deflate, br, zstd")
    assert statted == ["app.js", "app.js", "style.css"]


def test_a_sidecar_is_checked_like_a_file_once_per_round(
    handler: StaticHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler.share_checks_per_round()
    get(handler, "/app.js", accept_encoding="gzip")
    statted = count_stats(monkeypatch)
    handler.next_check_round()
    for _ in range(3):
        assert get(handler, "/app.js", accept_encoding="gzip")[2] == GZIPPED_SCRIPT
    assert statted == ["app.js", "app.js.gz"]


def test_a_large_files_freshness_for_its_sidecar_is_checked_once_per_round(
    handler: StaticHandler, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large file is not opened when its (small) sidecar is sent: its own stat, which tells
    whether the sidecar went stale, is shared by the round; a change is seen the next round."""
    small_gzip = b"stands for a small gzip of the large file"
    write(root / "large.txt", BIG_TEXT)
    write(root / "large.txt.gz", small_gzip, like=root / "large.txt")
    handler.share_checks_per_round()
    assert get(handler, "/large.txt", accept_encoding="gzip")[2] == small_gzip
    statted = count_stats(monkeypatch)
    handler.next_check_round()
    for _ in range(3):
        assert get(handler, "/large.txt", accept_encoding="gzip")[2] == small_gzip
    assert statted == ["large.txt", "large.txt.gz"]
    new_text = BIG_TEXT.replace(b"line", b"LINE")
    (root / "large.txt").write_bytes(new_text)
    later = time.time_ns() + 5_000_000_000
    os.utime(root / "large.txt", ns=(later, later))
    assert get(handler, "/large.txt", accept_encoding="gzip")[2] == small_gzip  # same round
    handler.next_check_round()
    status, fields, body = get(handler, "/large.txt", accept_encoding="gzip")
    assert status == 200 and body == new_text and "content-encoding" not in fields


def test_the_shared_answers_are_reused(handler: StaticHandler) -> None:
    for accept in ("gzip", "br"):
        first = handler(request("/app.js", accept_encoding=accept))
        assert handler(request("/app.js", accept_encoding=accept)) is first
    first = handler(request("/app.js"))
    assert handler(request("/app.js")) is first


# -- gzip made in memory --------------------------------------------------------------------------


@pytest.fixture
def gzipping(root: Path) -> StaticHandler:
    return settle(StaticHandler(str(root), gzip=True))


def test_gzip_compresses_small_text_once(gzipping: StaticHandler) -> None:
    first = gzipping(request("/style.css", accept_encoding="gzip"))
    fields = fields_of(first)
    assert fields["content-encoding"] == "gzip" and fields["vary"] == "Accept-Encoding"
    assert "accept-ranges" not in fields
    body = body_of(first)
    assert gzip.decompress(body) == STYLE and len(body) < len(STYLE)
    assert fields["content-length"] == str(len(body))
    assert gzipping(request("/style.css", accept_encoding="gzip")) is first  # made once
    status, fields, body = get(gzipping, "/style.css")
    assert status == 200 and body == STYLE and fields["vary"] == "Accept-Encoding"
    assert fields["accept-ranges"] == "bytes"


def test_gzip_has_its_own_etag_and_answers_304(gzipping: StaticHandler) -> None:
    gzip_etag = get(gzipping, "/style.css", accept_encoding="gzip")[1]["etag"]
    identity_etag = get(gzipping, "/style.css")[1]["etag"]
    assert gzip_etag != identity_etag and not gzip_etag.startswith("W/")
    status, fields, body = get(gzipping, "/style.css", accept_encoding="gzip",
                               if_none_match=gzip_etag)
    assert status == 304 and body == b"" and fields["vary"] == "Accept-Encoding"
    status, fields, body = get(gzipping, "/style.css", "HEAD", accept_encoding="gzip")
    assert status == 200 and body == b"" and fields["content-encoding"] == "gzip"


def test_a_range_is_served_from_the_files_own_bytes(gzipping: StaticHandler) -> None:
    status, fields, body = get(gzipping, "/style.css", accept_encoding="gzip",
                               range="bytes=0-3")
    assert status == 206 and body == STYLE[:4]
    assert "content-encoding" not in fields and fields["vary"] == "Accept-Encoding"
    assert fields["content-range"] == f"bytes 0-3/{len(STYLE)}"


def test_gzip_prefers_a_sidecar(gzipping: StaticHandler) -> None:
    assert get(gzipping, "/app.js", accept_encoding="gzip")[2] == GZIPPED_SCRIPT


@pytest.mark.parametrize("target", ["/image.png", "/big.txt", "/tiny.txt"])
def test_gzip_leaves_out_media_large_files_and_what_would_grow(
    root: Path, target: str
) -> None:
    handler = settle(StaticHandler(str(root), gzip=True, precompressed=False))
    status, fields, body = get(handler, target, accept_encoding="gzip")
    assert status == 200 and body == (root / target[1:]).read_bytes()
    assert "content-encoding" not in fields and "vary" not in fields


def test_gzip_needs_a_cached_file(root: Path) -> None:
    fresh = StaticHandler(str(root), gzip=True)  # the real clock: the files were just written
    status, fields, body = get(fresh, "/style.css", accept_encoding="gzip")
    assert status == 200 and body == STYLE and "content-encoding" not in fields


def test_gzip_bytes_count_in_the_cache(gzipping: StaticHandler) -> None:
    body = get(gzipping, "/style.css", accept_encoding="gzip")[2]
    assert gzipping._cache.held_bytes == len(STYLE) + len(body)
    gzipping._cache.forget("/style.css")
    assert gzipping._cache.held_bytes == 0


def test_no_descriptor_leaks_with_sidecars(handler: StaticHandler) -> None:
    requests = [("/big.txt", {"accept_encoding": "gzip"}),
                ("/big.txt", {"accept_encoding": "gzip", "range": "bytes=0-9,20-29"}),
                ("/big.txt", {"accept_encoding": "gzip", "range": "bytes=5-"}),
                ("/big.txt", {"accept_encoding": "gzip", "if_none_match": "*"}),
                ("/big.txt", {"accept_encoding": "br"}),
                ("/app.js", {"accept_encoding": "gzip"}),
                ("/app.js", {"accept_encoding": "gzip", "range": "bytes=99999-"})]
    before = open_fds()
    for round_number in range(20):
        for method in ("GET", "HEAD"):
            for target, fields in requests:
                response = handler(request(target, method, **fields))
                if round_number % 2:
                    response.release()
                else:
                    body_of(response)
        assert open_fds() == before, f"descriptors leaked in round {round_number}"
