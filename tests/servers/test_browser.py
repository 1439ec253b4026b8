"""A real browser against a running server: the listing and the dashboard as people see them.

Headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it), driven over the DevTools
protocol (``tests/support/cdp.py`` says why). The listing renders with its stylesheet (so the
Content-Security-Policy's digest matches), its column links sort it without JavaScript; the
dashboard's numbers move while load runs (the DOM read twice), and it draws one line per worker
when the JSON lists workers (a snapshot made by hand stands in for a master). Nothing on either
page loads from anywhere but the server, and no script error or policy violation is reported.

Screenshots, light and dark, desktop and phone width, are written to the test's temporary
folder, or to ``$EVSERVER_SCREENSHOTS`` when set, for a person to look at.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cdp import Browser, Page, find_chromium
from tests.support.servers import RunningServer

LOAD_SECONDS = 20.0
"""The load thread stops by itself after this long, whatever the test does."""

LOAD_REQUESTS = 100_000
"""...or after this many requests."""

SCREENS = {  # name: (width, height, phone)
    "desktop": (1280, 800, False),
    "phone": (390, 844, True),
}

NAMES_IN_A_FOLDER = {"b-small.txt": 10, "a-large.bin": 300_000, "C-medium.txt": 4_000,
                     "d10.txt": 20_000, "d9.txt": 1}

STATS_PATH = "/-/stats"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium package)")
    started = Browser(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield started
    started.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    opened = browser.new_page()
    yield opened
    opened.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("EVSERVER_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def only_from(server: RunningServer, page: Page) -> None:
    """Everything the page asked for came from the server; no script or policy complained."""
    origin = server.url("/")
    outside = [url for url in page.requested
               if not url.startswith(origin) and not url.startswith(("about:", "data:"))]
    assert not outside, f"loaded from outside the server: {outside}"
    assert not page.problems, page.problems


def listed_names(page: Page) -> list[str]:
    names: list[str] = page.evaluate(
        "[...document.querySelectorAll('tbody td.name a')].map(a => a.textContent)")
    return [name for name in names if name != "../"]


@pytest.fixture
def folder_server(start_server: Callable[..., RunningServer],
                  docroot: Path) -> RunningServer:
    folder = docroot / "files"
    folder.mkdir()
    for name, size in NAMES_IN_A_FOLDER.items():
        (folder / name).write_bytes(b"x" * size)
    (folder / "zz folder").mkdir()
    (folder / 'odd "<name>" & 100%.txt').write_bytes(b"odd")
    return start_server(stats_path=STATS_PATH)


def test_the_listing_renders_and_sorts_by_size(folder_server: RunningServer,
                                               page: Page) -> None:
    page.navigate(folder_server.url("/files/"))
    assert page.evaluate("document.title") == "Index of /files/"
    # the stylesheet applied: the policy's digest matches it
    assert page.evaluate("getComputedStyle(document.querySelector('table')).borderCollapse") \
        == "collapse"
    by_name = ["zz folder", "a-large.bin", "b-small.txt", "C-medium.txt", "d9.txt", "d10.txt",
               'odd "<name>" & 100%.txt']
    assert listed_names(page) == [name + "/" if name == "zz folder" else name
                                  for name in by_name]
    page.click_and_wait_for_load("th.size a")
    assert page.evaluate("location.search") == "?sort=size&order=desc"
    by_size = ["zz folder/", "a-large.bin", "d10.txt", "C-medium.txt", "b-small.txt",
               'odd "<name>" & 100%.txt', "d9.txt"]
    assert listed_names(page) == by_size
    page.click_and_wait_for_load("th.size a")
    assert listed_names(page) == ["zz folder/", *reversed(by_size[1:])]
    # the odd name's link leads to that file
    page.click_and_wait_for_load("tbody a[href^='odd']")
    assert page.evaluate("document.body.textContent") == "odd"
    only_from(folder_server, page)


def load(server: RunningServer, stop: threading.Event) -> None:
    """Requests on one keep-alive connection (some 404s, some larger bodies) until ``stop``,
    ``LOAD_SECONDS`` or ``LOAD_REQUESTS``."""
    targets = ["/small.txt", "/kib.bin", "/nope", "/medium.bin"]
    end = time.monotonic() + LOAD_SECONDS
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for n in range(LOAD_REQUESTS):
            if stop.is_set() or time.monotonic() > end:
                break
            conn.request("GET", targets[n % len(targets)])
            conn.getresponse().read()
    finally:
        conn.close()


@pytest.fixture
def loaded(folder_server: RunningServer) -> Iterator[RunningServer]:
    stop = threading.Event()
    thread = threading.Thread(target=load, args=(folder_server, stop), daemon=True)
    thread.start()
    yield folder_server
    stop.set()
    thread.join(LOAD_SECONDS)
    assert not thread.is_alive()


def number_in(page: Page, element_id: str) -> float:
    """The number an element shows ("1,234", "5.5 MiB/s", "40%")."""
    text: str = page.evaluate(f"document.getElementById('{element_id}').textContent")
    found = re.match(r"[0-9.]+", text.replace(",", ""))
    assert found, f"#{element_id} shows no number: {text!r}"
    return float(found.group())


def drawn_pixels(page: Page, chart: str) -> int:
    """How many pixels of a chart's canvas are not blank."""
    count: int = page.evaluate(
        f"(() => {{ const c = document.getElementById('chart-{chart}');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()")
    return count


def test_the_dashboard_follows_the_load(loaded: RunningServer, page: Page) -> None:
    page.navigate(loaded.url(STATS_PATH))
    page.wait_for("Number(document.getElementById('rps').textContent.replace(/,/g, '')) > 20",
                  "requests/s above 20 under load")
    first = number_in(page, "requests-total")
    page.wait_for(f"Number(document.getElementById('requests-total').textContent"
                  f".replace(/,/g, '')) > {first + 20}", "the total growing by the load")
    second = number_in(page, "requests-total")
    assert second > first + 20  # far more than the page's own reading each second
    assert number_in(page, "connections") >= 1
    assert page.evaluate("document.getElementById('bytes-rate').textContent").endswith("/s")
    assert page.evaluate("document.getElementById('busy').textContent").endswith("%")
    legend = page.evaluate("document.getElementById('legend-classes').textContent")
    assert legend == "1xx2xx3xx4xx5xx"
    for chart in ("rps", "connections", "classes", "bytes", "busy"):
        assert drawn_pixels(page, chart) > 100, chart
    assert page.evaluate("document.getElementById('workers-section').hidden") is True
    only_from(loaded, page)


def with_hand_made_workers(server: RunningServer) -> None:
    """The server's stats as a master with two workers would show them, counters growing at
    a steady pace per reading."""
    real = server.server.stats_snapshot
    readings = itertools.count(1)

    def snapshot() -> dict[str, Any]:
        n = next(readings)
        data = real()
        workers = [
            {"index": index, "pid": 4000 + index, "uptime_seconds": 90.0 + n, "restarts": index,
             "connections_open": 3 + index + n % 3, "connections_total": 40 * n,
             "requests": (300 + 200 * index) * n, "body_bytes": (1 << 20) * (index + 1) * n,
             "accepted": 40 * n,
             "loop": {"iterations": 1000 * n, "poll_seconds": 0.6 * n,
                      "work_seconds": (0.25 + 0.3 * index) * n}}
            for index in range(2)]
        for key in ("connections_open", "connections_total", "requests", "body_bytes"):
            data[key] = sum(worker[key] for worker in workers)
        data["loop"] = {name: sum(w["loop"][name] for w in workers)
                        for name in ("iterations", "poll_seconds", "work_seconds")}
        data["workers"] = workers
        return data

    server.server.stats_snapshot = snapshot  # type: ignore[method-assign]


def test_the_dashboard_draws_each_worker(folder_server: RunningServer, page: Page) -> None:
    with_hand_made_workers(folder_server)
    page.navigate(folder_server.url(STATS_PATH))
    page.wait_for("document.querySelectorAll('#workers tbody tr').length === 2 && "
                  "document.getElementById('rps').textContent !== '\u2013'",
                  "two workers listed and a rate shown")
    assert page.evaluate("document.getElementById('workers-section').hidden") is False
    for chart in ("rps", "connections", "bytes", "busy"):
        legend = page.evaluate(f"document.getElementById('legend-{chart}').textContent")
        assert "worker 0" in legend and "worker 1" in legend, (chart, legend)
    cells = page.evaluate("[...document.querySelectorAll('#workers tbody tr:first-child td')]"
                          ".map(td => td.textContent)")
    assert (cells[0], cells[1], cells[3]) == ("0", "4000", "0")
    assert re.fullmatch(r"1m \d+s", cells[2]), cells  # 90 s and one more per reading
    busy = number_in(page, "busy")  # "40%": the mean of 25% and 55%
    assert 25 <= busy <= 60
    only_from(folder_server, page)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def shoot(page: Page, shots: Path, name: str, screen: str) -> None:
    """Screenshots of the open page on ``screen``, light and dark."""
    width, height, phone = SCREENS[screen]
    for scheme in ("light", "dark"):
        page.emulate(width=width, height=height, phone=phone, dark=scheme == "dark")
        shot = page.screenshot(shots / f"{name}-{screen}-{scheme}.png", width=width, phone=phone)
        assert png_size(shot)[0] == width * (2 if phone else 1)


def open_dashboard(page: Page, server: RunningServer, screen: str) -> None:
    """The dashboard on ``screen``, once it has drawn five readings (one comes a second)."""
    width, height, phone = SCREENS[screen]
    page.emulate(width=width, height=height, phone=phone, dark=False)
    page.navigate(server.url(STATS_PATH))
    page.wait_for("samples.length >= 5", "five readings drawn")


@pytest.mark.slow
def test_screenshots_light_and_dark_desktop_and_phone(folder_server: RunningServer, page: Page,
                                                      shots: Path) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=load, args=(folder_server, stop), daemon=True)
    thread.start()
    try:
        for screen, (width, height, phone) in SCREENS.items():
            page.emulate(width=width, height=height, phone=phone, dark=False)
            page.navigate(folder_server.url("/files/"))
            shoot(page, shots, "listing", screen)
        open_dashboard(page, folder_server, "desktop")  # one process: no workers
        shoot(page, shots, "dashboard", "desktop")
        with_hand_made_workers(folder_server)
        for screen in SCREENS:
            open_dashboard(page, folder_server, screen)
            assert page.evaluate("document.querySelectorAll('#workers tbody tr').length") == 2
            shoot(page, shots, "dashboard-workers", screen)
    finally:
        stop.set()
        thread.join(LOAD_SECONDS)
    only_from(folder_server, page)
