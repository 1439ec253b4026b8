"""Headless Chromium driven over the Chrome DevTools Protocol, for the browser tests.

What this module knows: how to start the system's Chromium headless with a DevTools port on
127.0.0.1 (no download, no profile of the user's, no traffic of its own), and the few stable CDP
methods a test needs (``Page``, ``Runtime``, ``Network``, ``Log``, ``Emulation``), spoken as
JSON over the WebSocket that ``websocket-client`` opens. What it must not know: evserver, or
what a test checks.

Why this and not a bigger driver: Playwright and Selenium pin the browser builds they support
(and fetch their own, or a matching chromedriver), while CI installs whatever ``chromium``
Debian ships; the CDP methods used here have been stable across Chromium releases for years, and
``websocket-client`` is a small, maintained, pure-Python package.

Every wait has a deadline: a page that never loads, or a condition that never holds, fails the
test with what was awaited. :meth:`Browser.close` ends the browser process it started (and its
children, in the process group it was given).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

START_SECONDS = 30.0
"""Seconds Chromium may take to open its DevTools port (a cold start on a busy CI machine)."""

WAIT_SECONDS = 20.0
"""Deadline for any one thing awaited from a page: a load, an answer, a condition."""

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

_FLAGS = (
    "--headless",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # any free port; Chromium prints the one it took
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",  # no update checks, no safe-browsing lists: only the test
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-gpu",
    "--hide-scrollbars",
    "--mute-audio",
    "--password-store=basic",
    "--lang=en-US",
)

_LISTENING = re.compile(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/")


class CDPError(Exception):
    """The browser answered a command with an error, or a page's script threw."""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with a fresh profile in ``profile_dir``."""

    def __init__(self, executable: str, profile_dir: Path) -> None:
        argv = [executable, *_FLAGS, f"--user-data-dir={profile_dir}"]
        if os.geteuid() == 0:
            argv.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        argv.append("about:blank")
        self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True, errors="replace", start_new_session=True)
        self._output: list[str] = []
        self._port_found = threading.Event()
        self.port = 0
        threading.Thread(target=self._read_output, daemon=True).start()
        if not self._port_found.wait(START_SECONDS) or not self.port:
            self.close()
            raise CDPError("Chromium did not open its DevTools port:\n"
                           + "".join(self._output[-20:]))

    def _read_output(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(1))
                self._port_found.set()
        self._port_found.set()  # the browser ended: stop waiting

    def _endpoint(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
            return json.loads(response.read() or b"null")

    def new_page(self) -> Page:
        """A new tab, with page, script, network and log events on."""
        target = self._endpoint("/json/new?about:blank", method="PUT")
        return Page(self, target["id"], target["webSocketDebuggerUrl"])

    def close_target(self, target_id: str) -> None:
        try:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/json/close/{target_id}")
            with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
                response.read()
        except OSError:
            pass

    def close(self) -> None:
        """End the browser (politely, then not): the process and its process group."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        try:  # renderers and helpers left behind by a browser that died
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._process.stderr is not None:
            self._process.stderr.close()


class Page:
    """One tab. ``requested`` holds every URL it asked for; ``problems`` every script error,
    console error and policy violation it reported."""

    def __init__(self, browser: Browser, target_id: str, socket_url: str) -> None:
        self._browser = browser
        self._target_id = target_id
        self._socket = websocket.create_connection(socket_url, timeout=WAIT_SECONDS,
                                                   suppress_origin=True)
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []
        self.requested: list[str] = []
        self.problems: list[str] = []
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")

    # -- the protocol ------------------------------------------------------------------------

    def _receive(self, deadline: float) -> dict[str, Any]:
        if time.monotonic() > deadline:
            raise CDPError("the page kept sending events but never what was awaited")
        message: dict[str, Any] = json.loads(self._socket.recv())
        method = message.get("method")
        params = message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.problems.append(details.get("exception", {}).get("description")
                                 or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.problems.append("console.error: " + " ".join(
                str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if not (entry.get("source") == "network" and "favicon.ico" in entry.get("url", "")):
                self.problems.append(f"{entry.get('source')}: {entry['text']}")
        return message

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        ident = next(self._ids)
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            message = self._receive(deadline)
            if message.get("id") == ident:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self._events):
            if event["method"] == method:
                return self._events.pop(index)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            message = self._receive(deadline)
            if message.get("method") == method:
                return message
            if "method" in message:
                self._events.append(message)

    # -- what tests do -----------------------------------------------------------------------

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait for its load event."""
        self._forget("Page.loadEventFired")
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise CDPError(f"cannot open {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired")

    def click_and_wait_for_load(self, selector: str) -> None:
        """Click the element ``selector`` names (a link) and wait for the page it opens."""
        self._forget("Page.loadEventFired")
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(details.get("exception", {}).get("description")
                           or details.get("text", "the expression threw"))
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, seconds: float = WAIT_SECONDS / 2) -> Any:
        """Wait, in the page, until ``expression`` is truthy; its value. Fails with ``what``."""
        script = (
            "new Promise((resolve, reject) => {"
            f" const end = Date.now() + {int(seconds * 1000)};"
            " (function check() {"
            f"  let value; try {{ value = ({expression}); }} catch (e) {{ value = undefined; }}"
            "  if (value) resolve(value);"
            f"  else if (Date.now() > end) reject(new Error({json.dumps('never: ' + what)}));"
            "  else setTimeout(check, 50);"
            " })(); })"
        )
        return self.evaluate(script)

    def emulate(self, *, width: int, height: int, phone: bool, dark: bool) -> None:
        """A screen that size (a phone: touch, scale 2), in light or dark colour scheme."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=2 if phone else 1, mobile=phone)
        self.call("Emulation.setEmulatedMedia", features=[
            {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}])

    def screenshot(self, path: Path, *, width: int, phone: bool) -> bytes:
        """The whole page as PNG, written to ``path``; returns the bytes.

        The screen is made as tall as the page first: parts below the screen captured "beyond
        the viewport" may not be painted (a scrolling box there came out blank).
        """
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = int(size["height"]) + 1
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=2 if phone else 1, mobile=phone)
        self.evaluate("new Promise(done => requestAnimationFrame(() => "
                      "requestAnimationFrame(done)))")  # a frame at the new size
        shot = self.call("Page.captureScreenshot", format="png")
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        self._socket.close()
        self._browser.close_target(self._target_id)

    def _forget(self, method: str) -> None:
        self._events = [event for event in self._events if event["method"] != method]
