"""Serving a folder end to end: sidecars, ``--gzip``, added fields, CORS, pages, a fallback and
dotfiles, over real sockets with curl, ``http.client``, ``urllib`` and the strict reader.

Servers run in this process on 127.0.0.1 port 0 and are always stopped (the ``start_server``
fixture). The tests that touch the sending path (a sidecar sent with ``sendfile``) run on every
model; the others on the default one.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import os
import random
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from evserver.static import SMALL_FILE_CACHE_LIMIT
from tests.support.responses import exchange
from tests.support.servers import RunningServer

SCRIPT = b"export function greet(name) { return `hello, ${name}`; }\n" * 60
STYLE = b"main { margin: 0 auto; max-width: 40rem; font-family: sans-serif; }\n" * 40
BIG_SCRIPT = b"\n".join(
    b"const chunk_%d = '%s';" % (n, base64.b64encode(random.Random(n).randbytes(600)))
    for n in range(400)
)
"""Text that gzip shrinks only a little, so its sidecar stays above the in-memory limit."""
SPA_PAGE = b"<!DOCTYPE html><title>app</title><div id=app></div>\n"
NOT_FOUND_PAGE = b"<!DOCTYPE html><title>lost</title><p>Nothing here.\n"


def gzip_beside(path: Path) -> bytes:
    """What ``gzip -k path`` leaves: ``path.gz``, with the original's modification time."""
    data = gzip.compress(path.read_bytes(), mtime=0)
    sidecar = path.with_name(path.name + ".gz")
    sidecar.write_bytes(data)
    st = path.stat()
    os.utime(sidecar, ns=(st.st_atime_ns, st.st_mtime_ns))
    return data


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / ".well-known").mkdir(parents=True)
    (root / "app.js").write_bytes(SCRIPT)
    (root / "big.js").write_bytes(BIG_SCRIPT)
    (root / "style.css").write_bytes(STYLE)
    (root / "index.html").write_bytes(SPA_PAGE)
    (root / ".env").write_bytes(b"SECRET=1\n")
    (root / ".well-known" / "security.txt").write_bytes(b"Contact: mailto:a@example.com\n")
    gzip_beside(root / "app.js")
    gzip_beside(root / "big.js")
    assert (root / "big.js.gz").stat().st_size > SMALL_FILE_CACHE_LIMIT
    return root


def start_settled(start_server: Callable[..., RunningServer], site: Path,
                  **config: object) -> RunningServer:
    """A server whose file handler takes every file as long settled, so entries are cached."""
    server = start_server(root=site, **config)
    static = server.server.static_handler
    assert static is not None
    static.clock = lambda: time.time() + 3600  # type: ignore[method-assign]
    return server


def curl_or_skip() -> str:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (CI installs it)")
    return curl


def curl(*args: str) -> tuple[dict[str, str], bytes]:
    """Run curl; the last response's fields (lower-case names) and its body."""
    result = subprocess.run([curl_or_skip(), "-sS", "-D", "-", *args], capture_output=True,
                            timeout=20, check=True)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    while body.startswith(b"HTTP/"):  # a 100 Continue or a redirect followed
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    fields[":status"] = lines[0].split()[1]
    return fields, body


def test_curl_compressed_gets_the_sidecar(start_server: Callable[..., RunningServer],
                                          model_name: tuple[str, str], site: Path) -> None:
    model, selector = model_name
    server = start_settled(start_server, site, model=model, selector=selector)
    for _ in range(2):  # made, then from the cache
        fields, body = curl("--compressed", server.url("/app.js"))
        assert fields[":status"] == "200" and body == SCRIPT  # curl decoded it
        assert fields["content-encoding"] == "gzip" and fields["vary"] == "Accept-Encoding"
        assert fields["content-length"] == str((site / "app.js.gz").stat().st_size)
        fields, body = curl(server.url("/app.js"))  # curl asks for no coding
        assert body == SCRIPT and "content-encoding" not in fields
        assert fields["vary"] == "Accept-Encoding"


def test_a_large_sidecar_goes_out_with_sendfile(start_server: Callable[..., RunningServer],
                                                model_name: tuple[str, str], site: Path) -> None:
    model, selector = model_name
    server = start_settled(start_server, site, model=model, selector=selector)
    sidecar = (site / "big.js.gz").read_bytes()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/big.js", headers={"Accept-Encoding": "gzip"})
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200 and response.getheader("Content-Encoding") == "gzip"
            assert body == sidecar and gzip.decompress(body) == BIG_SCRIPT
        conn.request("GET", "/big.js", headers={"Accept-Encoding": "gzip",
                                                 "Range": "bytes=70000-70099"})
        response = conn.getresponse()
        assert response.status == 206 and response.read() == sidecar[70000:70100]
        assert response.getheader("Content-Range") == f"bytes 70000-70099/{len(sidecar)}"
        conn.request("GET", "/big.js")
        response = conn.getresponse()
        assert response.read() == BIG_SCRIPT and response.getheader("Content-Encoding") is None
    finally:
        conn.close()


def test_the_strict_reader_accepts_every_encoded_answer(
    start_server: Callable[..., RunningServer], site: Path
) -> None:
    server = start_settled(start_server, site, gzip=True)
    etag = http_get(server, "/app.js", {"Accept-Encoding": "gzip"})[1]["ETag"]
    requests = [
        ("GET", "/app.js", "Accept-Encoding: gzip"),
        ("HEAD", "/app.js", "Accept-Encoding: gzip"),
        ("GET", "/app.js", f"Accept-Encoding: gzip\r\nIf-None-Match: {etag}"),
        ("GET", "/app.js", "Accept-Encoding: gzip\r\nRange: bytes=0-9"),
        ("GET", "/style.css", "Accept-Encoding: gzip"),
        ("HEAD", "/style.css", "Accept-Encoding: gzip"),
        ("GET", "/style.css", "Accept-Encoding: gzip;q=0.5, identity"),
        ("GET", "/style.css", "Accept-Encoding: gzip;q=7"),
    ]
    data = b"".join(f"{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n\r\n".encode()
                    for method, target, extra in requests)
    data += b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    responses, _ = exchange(server.address, data,
                            head_requests=[method == "HEAD" for method, _, _ in requests])
    statuses = [r.status for r in responses]
    assert statuses == [200, 200, 304, 206, 200, 200, 200, 200, 404]
    gzipped_app = (site / "app.js.gz").read_bytes()
    assert responses[0].body == gzipped_app and responses[1].body == b""
    assert responses[1].headers["content-length"] == str(len(gzipped_app))
    assert responses[2].headers["vary"] == "Accept-Encoding"
    assert responses[3].body == gzipped_app[:10]
    assert gzip.decompress(responses[4].body) == STYLE
    assert responses[5].headers["content-encoding"] == "gzip"
    assert responses[6].body == STYLE and responses[7].body == STYLE


def http_get(server: RunningServer, target: str, headers: dict[str, str] | None = None,
             method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, target, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_gzip_option_over_urllib(start_server: Callable[..., RunningServer], site: Path) -> None:
    server = start_settled(start_server, site, gzip=True)
    request = urllib.request.Request(server.url("/style.css"),
                                     headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(response.read()) == STYLE
    with urllib.request.urlopen(server.url("/style.css"), timeout=10) as response:
        assert response.read() == STYLE and response.headers["Content-Encoding"] is None


def test_fields_cors_and_cache_control_with_curl(start_server: Callable[..., RunningServer],
                                                 site: Path) -> None:
    server = start_settled(start_server, site, cors=True, cache_control="max-age=600",
                           headers=(("X-Frame-Options", "DENY"),))
    fields, body = curl("-H", "Origin: https://app.example", server.url("/app.js"))
    assert fields[":status"] == "200" and body == SCRIPT
    assert fields["access-control-allow-origin"] == "*"
    assert fields["cache-control"] == "max-age=600" and fields["x-frame-options"] == "DENY"
    fields, _ = curl(server.url("/missing"))
    assert fields[":status"] == "404" and fields["access-control-allow-origin"] == "*"
    assert "cache-control" not in fields
    fields, body = curl("-X", "OPTIONS", "-H", "Origin: https://app.example",
                        "-H", "Access-Control-Request-Method: GET",
                        "-H", "Access-Control-Request-Headers: range", server.url("/app.js"))
    assert fields[":status"] == "204" and body == b""
    assert fields["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert fields["access-control-allow-headers"] == "range"
    assert fields["access-control-max-age"] == "86400"


def test_fallback_error_page_and_dotfiles_over_urllib(
    start_server: Callable[..., RunningServer], site: Path, tmp_path: Path
) -> None:
    page = tmp_path / "404.html"
    page.write_bytes(NOT_FOUND_PAGE)
    spa = start_settled(start_server, site, fallback=str(site / "index.html"),
                        error_pages=((404, str(page)),))
    for route in ("/users/7", "/users/7/", "/app.js/x"):
        with urllib.request.urlopen(spa.url(route), timeout=10) as response:
            assert response.status == 200 and response.read() == SPA_PAGE
    with pytest.raises(urllib.error.HTTPError) as caught:  # refused, not missing: no fallback
        urllib.request.urlopen(spa.url("/.env"), timeout=10)
    assert caught.value.code == 404 and caught.value.read() == NOT_FOUND_PAGE
    with urllib.request.urlopen(spa.url("/.well-known/security.txt"), timeout=10) as response:
        assert response.read().startswith(b"Contact:")
    assert http_get(spa, "/missing", method="POST")[0] == 405
    plain = start_server(root=site)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(plain.url("/.env"), timeout=10)
    assert caught.value.code == 404 and b"SECRET" not in caught.value.read()
    dotted = start_server(root=site, dotfiles=True)
    with urllib.request.urlopen(dotted.url("/.env"), timeout=10) as response:
        assert response.read() == b"SECRET=1\n"
