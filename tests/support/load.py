"""A client under load that counts failed requests the way a real client would see them.

What this module knows: ``http.client`` on keep-alive connections, threads, and the one retry
that browsers and urllib3 make: a GET sent on a connection that had already served a response,
which the server closed before any byte of the answer arrived, is sent again once on a new
connection (RFC 9112 9.3.1 allows it for idempotent requests: the server may close an idle
connection at any time, so a request can cross the close). Anything else is a failure: a new
connection refused or reset, a status other than 200, a short or wrong body, a second close in a
row. What it must not know: the server's code; it imports only the standard library, so tools
can drive a server with it as the tests do.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

WAIT = 10.0
"""Seconds one request may take before it counts as failed (reached only by a broken server)."""


@dataclass
class LoadResult:
    """What the clients saw: answers, retries after a keep-alive close, and failures."""

    requests: int = 0
    retried: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, answered: int, retried: int, failures: list[str]) -> None:
        with self.lock:
            self.requests += answered
            self.retried += retried
            self.failures += failures


class RetryingClient:
    """One keep-alive connection, requests one at a time, retried once as described above."""

    def __init__(self, address: tuple[str, int], timeout: float = WAIT) -> None:
        self.address = address
        self.timeout = timeout
        self.connection: http.client.HTTPConnection | None = None
        self.reused = False
        """The connection has answered a request already (only then is a close retried)."""
        self.retried = 0

    def get(self, path: str) -> bytes:
        """The body of a 200 answer to GET ``path``; raises AssertionError or OSError if the
        request failed even after the one retry it may get."""
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(*self.address,
                                                             timeout=self.timeout)
                self.reused = False
            reused = self.reused
            try:
                self.connection.request("GET", path)
                response = self.connection.getresponse()  # returns once the status line is in
            except (ConnectionError, http.client.BadStatusLine):
                self.close()
                if attempt == 1 and reused:  # closed under a request it had not answered
                    self.retried += 1
                    continue
                raise
            body = response.read()
            assert response.status == 200, f"GET {path}: status {response.status}"
            assert len(body) == int(response.getheader("Content-Length", "-1")), "short body"
            if response.will_close:
                self.close()
            else:
                self.reused = True
            return body
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = None
        self.reused = False


def run_clients(address: tuple[str, int], path: str, expected: bytes, connections: int,
                stop: threading.Event, result: LoadResult) -> list[threading.Thread]:
    """Start ``connections`` threads, each a :class:`RetryingClient` asking for ``path`` until
    ``stop`` is set and adding each answer to ``result`` as it comes (so a caller can wait for
    progress); returns the threads (join them)."""

    def client() -> None:
        retrying = RetryingClient(address)
        while not stop.is_set():
            retried = retrying.retried
            try:
                body = retrying.get(path)
            except (OSError, AssertionError, http.client.HTTPException) as error:
                result.add(0, retrying.retried - retried,
                           [f"GET {path}: {type(error).__name__}: {error}"])
                retrying.close()
                time.sleep(0.01)  # a refused connection must not spin
                continue
            wrong = [] if body == expected else [f"GET {path}: wrong body {body[:40]!r}"]
            result.add(1, retrying.retried - retried, wrong)
        retrying.close()

    threads = [threading.Thread(target=client, name=f"load-{n}", daemon=True)
               for n in range(connections)]
    for thread in threads:
        thread.start()
    return threads
