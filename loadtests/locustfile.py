"""Locust scenarios for evserver: user classes that model real traffic on the experiment tree.

What this file knows: the tree made by ``tools/docroot.py`` (read once per process from the
server's ``/manifest.json``) and what a correct answer looks like for each request. What it must
not know: which server answers -- evserver, ``python -m http.server`` and nginx are driven alike.

Every response is checked (status and body length), so a wrong answer is a failure in Locust's
statistics, not a silent success. Classes and their tags (select with ``-T``/``-E``, or name
classes on the command line):

========================  ======  =========================================================
class                     weight  behaviour (tags)
========================  ======  =========================================================
``Browser``               6       index and small files, 0.5-2 s think time (browse)
``Downloader``            1       whole large files (download)
``ResumingDownloader``    1       Range requests: resume from an offset, suffix (range)
``Revalidator``           2       GET, then If-None-Match / If-Modified-Since -> 304 (revalidate)
``Prober``                1       missing paths -> 404 (notfound)
``NewConnectionUser``     2       ``Connection: close`` on every request (close)
``IdleKeepAliveUser``     4       one request, then 20-40 s idle on an open connection (idle)
========================  ======  =========================================================

One Locust process (gevent, one core) tops out at a few thousand requests/s on a small machine,
far below what evserver or nginx can serve: Locust measures behaviour under a realistic mix
(failures, latency under think time), ``wrk`` measures capacity. For more load run several
processes: ``locust ... --processes 4`` (or ``-1`` for one per core).
"""

from __future__ import annotations

import json
import random
import threading
import urllib.request
from typing import Any

from locust import FastHttpUser, between, tag, task

SMALL_LIMIT = 64 * 1024
"""Files up to this size are what a browser fetches (pages, styles, scripts, icons)."""

LARGE_LIMIT = 1024 * 1024
"""Files from this size up are downloads (and candidates for resumed Range requests)."""

MANIFEST_TIMEOUT = 10.0
"""Seconds to fetch /manifest.json once per process before the run is declared broken."""

_manifest: dict[str, Any] | None = None
_manifest_lock = threading.Lock()


def manifest(host: str) -> dict[str, Any]:
    """The tree's manifest, fetched once per Locust process (workers each fetch their own)."""
    global _manifest
    with _manifest_lock:
        if _manifest is None:
            with urllib.request.urlopen(host.rstrip("/") + "/manifest.json",
                                        timeout=MANIFEST_TIMEOUT) as response:
                _manifest = json.load(response)
        return _manifest


def files_between(host: str, low: int, high: int) -> list[dict[str, Any]]:
    chosen = [entry for entry in manifest(host)["files"] if low <= entry["size"] <= high]
    return chosen or manifest(host)["files"][:1]


class TreeUser(FastHttpUser):
    """Base class: knows the manifest and checks answers. Not run by itself."""

    abstract = True
    files: list[dict[str, Any]]

    def base_url(self) -> str:
        return self.host or ""

    def pick_files(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = manifest(self.base_url())["files"]
        return files

    def on_start(self) -> None:
        self.files = self.pick_files()

    def get_checked(self, entry: dict[str, Any], expect: int = 200, length: int | None = None,
                    name: str | None = None, headers: dict[str, str] | None = None) -> Any:
        """GET ``entry`` and fail the sample unless status and body length are as expected."""
        wanted = entry["size"] if length is None else length
        with self.client.get(entry["path"], headers=headers or {}, name=name,
                             catch_response=True) as response:
            body = response.content or b""
            if response.status_code != expect:
                response.failure(f"status {response.status_code}, expected {expect}")
            elif len(body) != wanted:
                response.failure(f"body {len(body)} bytes, expected {wanted}")
            else:
                response.success()
            return response


class Browser(TreeUser):
    weight = 6
    wait_time = between(0.5, 2.0)

    def pick_files(self) -> list[dict[str, Any]]:
        return files_between(self.base_url(), 0, SMALL_LIMIT)

    @tag("browse")
    @task(5)
    def small_file(self) -> None:
        self.get_checked(random.choice(self.files), name="small file")

    @tag("browse")
    @task(1)
    def index(self) -> None:
        self.get_checked(manifest(self.base_url())["files"][0], name="index")


class Downloader(TreeUser):
    weight = 1
    wait_time = between(1.0, 3.0)

    def pick_files(self) -> list[dict[str, Any]]:
        return files_between(self.base_url(), LARGE_LIMIT, 1 << 40)

    @tag("download")
    @task
    def large_file(self) -> None:
        self.get_checked(random.choice(self.files), name="large file")


class ResumingDownloader(TreeUser):
    """Resumed downloads: RFC 9110 section 14.2 (Range), answered 206 with only the asked part."""

    weight = 1
    wait_time = between(1.0, 3.0)

    def pick_files(self) -> list[dict[str, Any]]:
        return files_between(self.base_url(), SMALL_LIMIT, 1 << 40)

    @tag("range")
    @task(3)
    def resume_from_offset(self) -> None:
        entry = random.choice(self.files)
        start = random.randrange(entry["size"])
        self.get_checked(entry, expect=206, length=entry["size"] - start, name="range from",
                         headers={"Range": f"bytes={start}-"})

    @tag("range")
    @task(1)
    def suffix(self) -> None:
        entry = random.choice(self.files)
        last = min(entry["size"], 500)
        self.get_checked(entry, expect=206, length=last, name="range suffix",
                         headers={"Range": f"bytes=-{last}"})


class Revalidator(TreeUser):
    """A cache revalidating: RFC 9110 section 13.1.2 (If-None-Match) before 13.1.3 (IMS)."""

    weight = 2
    wait_time = between(0.5, 2.0)

    def pick_files(self) -> list[dict[str, Any]]:
        return files_between(self.base_url(), 0, SMALL_LIMIT)

    @tag("revalidate")
    @task
    def revalidate(self) -> None:
        entry = random.choice(self.files)
        first = self.get_checked(entry, name="revalidate: first")
        etag = first.headers.get("ETag")
        modified = first.headers.get("Last-Modified")
        if etag:
            headers = {"If-None-Match": etag}
        elif modified:
            headers = {"If-Modified-Since": modified}
        else:
            return  # nothing to validate against; the first GET was checked already
        self.get_checked(entry, expect=304, length=0, name="revalidate: 304", headers=headers)


class Prober(TreeUser):
    weight = 1
    wait_time = between(1.0, 3.0)

    @tag("notfound")
    @task
    def missing(self) -> None:
        path = f"/files/missing-{random.randrange(1000)}.html"
        with self.client.get(path, name="404", catch_response=True) as response:
            if response.status_code == 404:
                response.success()
            else:
                response.failure(f"status {response.status_code}, expected 404")


class NewConnectionUser(TreeUser):
    """A client without keep-alive: RFC 9112 section 9.6, ``Connection: close`` each time."""

    weight = 2
    wait_time = between(0.2, 1.0)

    def pick_files(self) -> list[dict[str, Any]]:
        return files_between(self.base_url(), 0, SMALL_LIMIT)

    @tag("close")
    @task
    def one_shot(self) -> None:
        self.get_checked(random.choice(self.files), name="connection: close",
                         headers={"Connection": "close"})


class IdleKeepAliveUser(TreeUser):
    """Mostly idle: a request now and then on a connection it keeps open (keep-alive pools)."""

    weight = 4
    wait_time = between(20.0, 40.0)

    def pick_files(self) -> list[dict[str, Any]]:
        return files_between(self.base_url(), 0, 4096)

    @tag("idle")
    @task
    def rare_request(self) -> None:
        self.get_checked(random.choice(self.files), name="idle keep-alive")

