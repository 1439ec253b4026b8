"""Locust scenarios for evserver: user classes that model real traffic on any served folder.

What this file knows: what each kind of user asks for, what a correct answer looks like, and
how to count what happened to every request. What it must not know: which server answers --
evserver, ``python -m http.server`` and nginx are driven alike -- or what the folder holds: at
the start of a test every Locust process asks the server (``treewalk``: its ``manifest.json``
when it has one, else its folder listings).

Every response is checked (status and body length), so a wrong answer is a failure in Locust's
statistics, not a silent success. Classes and their tags (select with ``-T``/``-E``, or name
classes on the command line):

========================  ======  =========================================================
class                     weight  behaviour (tags); what it needs in the folder
========================  ======  =========================================================
``Browser``               6       pages and small files, 0.5-2 s think time (browse)
``Downloader``            1       whole files of 1 MiB or more (download)
``ResumingDownloader``    1       Range requests on files over 64 KiB: resume, suffix (range)
``Revalidator``           2       GET, then If-None-Match / If-Modified-Since -> 304
                                  (revalidate); files up to 64 KiB
``Prober``                1       missing paths -> 404 (notfound); needs nothing
``NewConnectionUser``     2       ``Connection: close`` on every request (close)
``IdleKeepAliveUser``     4       one request, then 20-40 s idle on an open connection (idle)
========================  ======  =========================================================

A scenario whose files the folder does not have says so in one line at the start, and its users
stop at once; the others go on. At the end two lines say how many requests were sent but never
answered (still waiting when the run stopped) and how many users never got any answer: a
server that serves one connection at a time (evserver's iterative model) starves most users,
and those users are absent from Locust's own latency table, which only counts answers.
``--summary-json FILE`` writes the same counts per scenario as JSON (the runner reads it).

One Locust process (gevent, one core) tops out at a few thousand requests/s on a small machine,
below what evserver or nginx can serve: Locust measures behaviour under a realistic mix
(failures, latency under think time), ``wrk`` measures capacity. For more load run several
processes (``--processes 4``) or machines (``--master`` and ``--worker --master-host``).
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections import Counter
from typing import Any, ClassVar

import treewalk  # beside this file: Locust puts the locustfile's folder on sys.path
from locust import FastHttpUser, between, events, tag, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

SMALL_LIMIT = 64 * 1024
"""Files up to this size are what a browser fetches (pages, styles, scripts, icons)."""

LARGE_LIMIT = 1024 * 1024
"""Files from this size up are downloads."""

IDLE_LIMIT = 4096
"""An idle keep-alive client asks for something tiny now and then (a poll, a heartbeat)."""

PREFIX = "evserver scenarios:"
"""Starts every line this file prints, so they stand out from Locust's own output."""

_trees: dict[str, treewalk.Tree] = {}
_trees_lock = threading.Lock()  # gevent makes it cooperative; it only guards the first walk


def tree_of(host: str) -> treewalk.Tree:
    """The walk of ``host``, done once per Locust process (each worker walks for itself)."""
    with _trees_lock:
        if host not in _trees:
            _trees[host] = treewalk.walk(host)
        return _trees[host]


def say(line: str) -> None:
    print(f"{PREFIX} {line}", file=sys.stderr, flush=True)


# --- what happened to every request, per scenario ---------------------------------------------

class Tally:
    """Per scenario: users started, users answered at least once, requests sent and answered.

    Each process keeps its own; a worker sends its totals with every stats report, and the
    master (or a single process) adds them up at the end.
    """

    KINDS = ("users", "answered_users", "sent", "answered")

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}
        self.stopping = False
        self.reset()

    def reset(self) -> None:
        self.counts = {kind: Counter() for kind in self.KINDS}
        self.stopping = False

    def add(self, kind: str, scenario: str) -> None:
        self.counts[kind][scenario] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {kind: dict(counter) for kind, counter in self.counts.items()}

    @classmethod
    def total(cls, parts: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
        merged = cls()
        for part in parts:
            for kind in cls.KINDS:
                merged.counts[kind].update(part.get(kind, {}))
        return merged.as_dict()


TALLY = Tally()
_worker_tallies: dict[str, dict[str, dict[str, int]]] = {}
_run: dict[str, Any] = {}
"""This process's environment (from the init event) and the walk's one-line description."""


def summary(counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per scenario and in all: users, starved users, requests sent, answered, never answered."""
    scenarios = sorted(set().union(*(counts[kind] for kind in Tally.KINDS)))
    rows = {}
    for name in scenarios:
        users, answered_users = counts["users"].get(name, 0), counts["answered_users"].get(name, 0)
        sent, answered = counts["sent"].get(name, 0), counts["answered"].get(name, 0)
        rows[name] = {"users": users, "starved_users": users - answered_users, "sent": sent,
                      "answered": answered, "never_answered": sent - answered}
    total = {key: sum(row[key] for row in rows.values())
             for key in ("users", "starved_users", "sent", "answered", "never_answered")}
    return {"scenarios": rows, "total": total}


# --- the users ---------------------------------------------------------------------------------

def _stop_user(user: Any) -> None:
    raise StopUser()


class TreeUser(FastHttpUser):
    """Base class: finds its files in the walk and checks answers. Not run by itself."""

    abstract = True
    needs: ClassVar[str] = ""
    """What the scenario needs, for the line that says it cannot run ("" = needs nothing)."""

    files: list[treewalk.Entry]
    pages: list[treewalk.Entry]

    @classmethod
    def choose(cls, tree: treewalk.Tree) -> list[treewalk.Entry]:
        """The entries this scenario asks for; empty means it cannot run on this folder."""
        return tree.files_between(0, SMALL_LIMIT) or tree.pages

    def on_start(self) -> None:
        tree = tree_of(self.host or "")
        self.pages = tree.pages
        self.files = self.choose(tree)
        self._answered = False
        if self.needs and not self.files:
            self.tasks = [_stop_user]  # said once at the test start; stops without a traceback
            return
        TALLY.add("users", type(self).__name__)

    def fetch(self, path: str, name: str, expect: int = 200, length: int | None = None,
              headers: dict[str, str] | None = None) -> Any:
        """GET ``path``; fail the sample unless status (and body length, when given) match."""
        scenario = type(self).__name__
        # Locust kills users while it stops them, even one that has just sent a request:
        # requests sent after the stop began are not the server's to answer, so not counted.
        counted = not TALLY.stopping
        if counted:
            TALLY.add("sent", scenario)
        with self.client.get(path, headers=headers or {}, name=name,
                             catch_response=True) as response:
            body = response.content or b""
            if response.status_code != expect:
                response.failure(f"status {response.status_code}, expected {expect}")
            elif length is not None and len(body) != length:
                response.failure(f"body {len(body)} bytes, expected {length}")
            else:
                response.success()
        if not counted:
            return response
        TALLY.add("answered", scenario)  # not reached when the run stops it while it waits
        if not self._answered:
            self._answered = True
            TALLY.add("answered_users", scenario)
        return response

    def get_entry(self, entry: treewalk.Entry, name: str, **options: Any) -> Any:
        return self.fetch(entry.path, name, length=entry.size, **options)


class Browser(TreeUser):
    weight = 6
    wait_time = between(0.5, 2.0)
    needs = "page or file up to 64 KiB"

    @tag("browse")
    @task(5)
    def small_file(self) -> None:
        self.get_entry(random.choice(self.files), "small file")

    @tag("browse")
    @task(1)
    def page(self) -> None:
        self.get_entry(random.choice(self.pages or self.files), "page")


class Downloader(TreeUser):
    weight = 1
    wait_time = between(1.0, 3.0)
    needs = "file of 1 MiB or more"

    @classmethod
    def choose(cls, tree: treewalk.Tree) -> list[treewalk.Entry]:
        return tree.files_between(LARGE_LIMIT, 1 << 62)

    @tag("download")
    @task
    def large_file(self) -> None:
        self.get_entry(random.choice(self.files), "large file")


class ResumingDownloader(TreeUser):
    """Resumed downloads: RFC 9110 section 14.2 (Range), answered 206 with only the asked part."""

    weight = 1
    wait_time = between(1.0, 3.0)
    needs = "file over 64 KiB"

    @classmethod
    def choose(cls, tree: treewalk.Tree) -> list[treewalk.Entry]:
        return tree.files_between(SMALL_LIMIT + 1, 1 << 62)

    @tag("range")
    @task(3)
    def resume_from_offset(self) -> None:
        entry = random.choice(self.files)
        start = random.randrange(entry.size)
        self.fetch(entry.path, "range from", expect=206, length=entry.size - start,
                   headers={"Range": f"bytes={start}-"})

    @tag("range")
    @task(1)
    def suffix(self) -> None:
        entry = random.choice(self.files)
        last = min(entry.size, 500)
        self.fetch(entry.path, "range suffix", expect=206, length=last,
                   headers={"Range": f"bytes=-{last}"})


class Revalidator(TreeUser):
    """A cache revalidating: RFC 9110 section 13.1.2 (If-None-Match) before 13.1.3 (IMS)."""

    weight = 2
    wait_time = between(0.5, 2.0)
    needs = "file up to 64 KiB"

    @classmethod
    def choose(cls, tree: treewalk.Tree) -> list[treewalk.Entry]:
        return tree.files_between(0, SMALL_LIMIT)

    @tag("revalidate")
    @task
    def revalidate(self) -> None:
        entry = random.choice(self.files)
        first = self.get_entry(entry, "revalidate: first")
        etag = first.headers.get("ETag")
        modified = first.headers.get("Last-Modified")
        if etag:
            headers = {"If-None-Match": etag}
        elif modified:
            headers = {"If-Modified-Since": modified}
        else:
            return  # nothing to validate against; the first GET was checked already
        self.fetch(entry.path, "revalidate: 304", expect=304, length=0, headers=headers)


class Prober(TreeUser):
    weight = 1
    wait_time = between(1.0, 3.0)

    @tag("notfound")
    @task
    def missing(self) -> None:
        self.fetch(f"/missing-{random.randrange(1000)}/nothing.html", "404", expect=404)


class NewConnectionUser(TreeUser):
    """A client without keep-alive: RFC 9112 section 9.6, ``Connection: close`` each time."""

    weight = 2
    wait_time = between(0.2, 1.0)
    needs = "page or file up to 64 KiB"

    @tag("close")
    @task
    def one_shot(self) -> None:
        self.get_entry(random.choice(self.files), "connection: close",
                       headers={"Connection": "close"})


class IdleKeepAliveUser(TreeUser):
    """Mostly idle: a request now and then on a connection it keeps open (keep-alive pools)."""

    weight = 4
    wait_time = between(20.0, 40.0)
    needs = "page or file"

    @classmethod
    def choose(cls, tree: treewalk.Tree) -> list[treewalk.Entry]:
        smallest = sorted(tree.files + tree.pages, key=lambda entry: entry.size)
        return tree.files_between(0, IDLE_LIMIT) or smallest[:1]

    @tag("idle")
    @task
    def rare_request(self) -> None:
        self.get_entry(random.choice(self.files), "idle keep-alive")


# --- start and end of a test ---------------------------------------------------------------------

@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    parser.add_argument("--summary-json", metavar="FILE", default="",
                        help="write what happened per evserver scenario (requests never "
                             "answered, users that got no answer) to FILE as JSON")


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    """Walk the folder in every process; the process that prints (not a worker) says what it
    found and which scenarios cannot run."""
    TALLY.reset()  # a new test started from the web UI counts from zero
    _worker_tallies.clear()
    tree = tree_of(environment.host or "")
    if isinstance(environment.runner, WorkerRunner):
        return
    _run["walk"] = tree.describe(SMALL_LIMIT, LARGE_LIMIT)
    say(_run["walk"])
    for user_class in environment.user_classes:
        if issubclass(user_class, TreeUser) and user_class.needs \
                and not user_class.choose(tree):
            say(f"{user_class.__name__} cannot run: the folder has no {user_class.needs} "
                f"(its users stop at once; the other scenarios go on)")


@events.test_stopping.add_listener
def _on_test_stopping(**_: Any) -> None:
    TALLY.stopping = True


@events.report_to_master.add_listener
def _send_tally(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["evserver_tally"] = TALLY.as_dict()


@events.worker_report.add_listener
def _receive_tally(client_id: str, data: dict[str, Any], **_: Any) -> None:
    if "evserver_tally" in data:
        _worker_tallies[client_id] = data["evserver_tally"]


@events.quit.add_listener
def _on_quit(exit_code: int, **_: Any) -> None:
    environment = _run.get("environment")
    if environment is None or isinstance(environment.runner, WorkerRunner):
        return
    if isinstance(environment.runner, MasterRunner):
        counts = Tally.total(list(_worker_tallies.values()))
    else:
        counts = TALLY.as_dict()
    result = summary(counts)
    total = result["total"]
    say(f"{total['sent']:,} requests sent, {total['answered']:,} answered, "
        f"{total['never_answered']:,} never answered (still waiting when the run stopped)")
    starved = [f"{name} {row['starved_users']} of {row['users']}"
               for name, row in result["scenarios"].items() if row["starved_users"]]
    say(f"{total['starved_users']} of {total['users']} users never got an answer"
        + (f": {', '.join(starved)}" if starved else ""))
    path = getattr(environment.parsed_options, "summary_json", "")
    if path:
        with open(path, "w") as out:
            json.dump({**result, "walk": _run.get("walk", "")}, out, indent=1)


@events.init.add_listener
def _remember_environment(environment: Environment, **_: Any) -> None:
    _run["environment"] = environment
