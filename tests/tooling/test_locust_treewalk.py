"""The Locust scenarios' walk of a served folder (``loadtests/treewalk.py``), without Locust.

Each test serves a temporary folder with the standard library's ``http.server`` in a thread
(port 0, always shut down): a listing server that is not evserver, which the walk must handle
as well. Nothing here imports Locust (it would patch this process's sockets with gevent).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loadtests import treewalk


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve_folder() -> Iterator[Callable[[Path], str]]:
    running: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def serve(folder: Path) -> str:
        def handler(*args: object) -> _Quiet:
            return _Quiet(*args, directory=str(folder))  # type: ignore[arg-type]

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(5)


def make_folder(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "sub" / "a.bin").write_bytes(b"a" * 3000)
    (root / "sub" / "deeper" / "big file.bin").write_bytes(b"b" * (2 * 1024 * 1024))
    return root


def test_a_listed_folder_is_walked_with_sizes(serve_folder: Callable[[Path], str],
                                              tmp_path: Path) -> None:
    host = serve_folder(make_folder(tmp_path))
    tree = treewalk.walk(host + "/")
    assert not tree.problem and tree.source == "links"
    assert {(e.path, e.size) for e in tree.files} == {
        ("/hello.txt", 6), ("/sub/a.bin", 3000), ("/sub/deeper/big%20file.bin", 2 * 1024 * 1024)}
    assert [page.path for page in tree.pages] == ["/", "/sub/", "/sub/deeper/"]
    assert tree.folders == 3
    assert [e.path for e in tree.files_between(1024 * 1024, 1 << 40)] == [
        "/sub/deeper/big%20file.bin"]
    line = tree.describe(64 * 1024, 1024 * 1024)
    assert "3 files in 3 folders" in line and "1 of 1 MiB or more" in line


def test_a_docroot_manifest_is_used_instead_of_the_listings(
        serve_folder: Callable[[Path], str], tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    manifest = {"files": [{"path": "/hello.txt", "size": 6}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    tree = treewalk.walk(serve_folder(root))
    assert tree.source == "manifest"
    assert tree.files == [treewalk.Entry("/hello.txt", 6)]
    assert "from its manifest.json" in tree.describe(1, 2)


def test_someone_elses_manifest_is_ignored(serve_folder: Callable[[Path], str],
                                           tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    (root / "manifest.json").write_text(json.dumps({"name": "my web app", "icons": []}))
    tree = treewalk.walk(serve_folder(root))
    assert tree.source == "links"
    assert "/manifest.json" not in {entry.path for entry in tree.files}
    assert len(tree.files) == 3


def test_an_empty_folder_is_one_line_not_an_error(serve_folder: Callable[[Path], str],
                                                  tmp_path: Path) -> None:
    tree = treewalk.walk(serve_folder(tmp_path))
    assert tree.files == [] and "links no file" in tree.problem
    assert tree.describe(1, 2) == tree.problem and "\n" not in tree.problem


def test_a_server_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        tree = treewalk.walk(f"http://127.0.0.1:{port}")
    assert tree.files == [] and tree.problem.startswith("cannot reach")
    assert "\n" not in tree.problem
    assert "give the server as http://" in treewalk.walk("127.0.0.1:8000").problem


def test_the_walk_stays_on_its_server_and_is_bounded(serve_folder: Callable[[Path], str],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path
    (root / "index.html").write_text(
        '<a href="http://example.invalid/x">away</a><a href="/a.txt?sort=1">query</a>'
        '<a href="a.txt">a</a><a href="b.txt">b</a><a href="c.txt">c</a>')
    for name in "abc":
        (root / f"{name}.txt").write_text(name)
    monkeypatch.setattr(treewalk, "MAX_FILES", 2)
    tree = treewalk.walk(serve_folder(root))
    assert [entry.path for entry in tree.files] == ["/a.txt", "/b.txt"]
    assert tree.truncated and "the walk stopped there" in tree.describe(1, 2)
