"""``tools/balancer.py``: evserver instances behind HAProxy, and what a client sees when one goes.

The fail-over test is the one a user of the set-up cares about: two instances of two workers
each behind HAProxy, a client of several threads on keep-alive connections that counts every
failed request and never retries one itself. SIGTERM to one instance: it drains, HAProxy takes
it out, no request fails. Then SIGKILL to a worker of the other: its master starts a new
worker, HAProxy keeps the instance up, and again no request fails (HAProxy's log shows the
requests it sent a second time, which is why).

The other tests: the one-line refusals (bad arguments, no HAProxy, an option evserver refuses,
a front port in use), HAProxy failing to start (the instances are stopped), the configuration
template and README's two configurations as HAProxy and nginx judge them, and the command's
life (front URL, serving, Ctrl-C stops every process).
Instances bind ports the kernel chooses, HAProxy's front a free port; every process is
stopped, also when a test fails; waits are on conditions with deadlines, never on sleeps.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.waiting import STOP_TIMEOUT, wait_until
from tools import balancer, procstat, servers

ROOT = next(folder for folder in Path(__file__).resolve().parents
            if (folder / "setup.cfg").exists())
README = (ROOT / "README.rst").read_text()

needs_haproxy = pytest.mark.skipif(balancer.haproxy_binary() is None,
                                   reason="haproxy is not installed; CI installs it (.ci/run)")

LOAD_THREADS = 4
"""Client threads, each on its own keep-alive connection to the front."""

PHASE_REQUESTS = 300
"""Answered requests each phase waits for: before the first signal, between, after."""

PHASE_SECONDS = 20.0
"""Deadline for a phase's requests (a few hundred requests take well under a second)."""

WORKER_REPLACED_SECONDS = 10.0
"""Deadline for a master to have replaced a killed worker (its first restart is immediate)."""


# --- refusals: one line, exit status 2 -----------------------------------------------------

def one_line_refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert balancer.main(argv) == balancer.USAGE_ERROR
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("balancer: "), captured.err
    assert captured.out == ""
    return lines[0]


@pytest.mark.parametrize(("argv", "said"), [
    (["--instances", "0"], "--instances"),
    (["--instances", "two"], "--instances"),
    (["--port", "70000"], "--port"),
    (["-d", "/no/such/folder"], "not a folder"),
    (["--health-path", "health"], "start with '/'"),
    (["--", "-b", "0.0.0.0"], "sets -b"),
    (["--", "--health-path=/h"], "sets --health-path"),
])
def test_bad_arguments_are_one_line_and_status_2(argv: list[str], said: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert said in one_line_refusal(argv, capsys)


def test_without_haproxy_it_says_what_to_install(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(balancer, "haproxy_binary", lambda: None)
    assert "sudo apt-get install haproxy" in one_line_refusal([], capsys)


@needs_haproxy
def test_an_option_evserver_refuses_is_its_one_line(docroot: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_refusal(["--port", "0", "-d", str(docroot), "--run-dir", str(tmp_path),
                             "--", "--no-such-option"], capsys)
    assert "evserver refused its options" in line and "--no-such-option" in line
    assert not (tmp_path / "haproxy.cfg").exists(), "nothing started after the refusal"


@needs_haproxy
def test_a_front_port_in_use_is_one_line_before_anything_starts(
        docroot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert balancer.main(["--port", str(port), "-d", str(docroot)]) == balancer.START_FAILED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], lines
    assert not _started_with(docroot)


@needs_haproxy
def test_haproxy_failing_to_start_stops_the_instances(
        docroot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.cfg.template"
    broken.write_text(Path(balancer.TEMPLATE).read_text().replace("balance leastconn",
                                                                   "balance no-such-algorithm"))
    monkeypatch.setattr(balancer, "TEMPLATE", str(broken))
    rundir = tmp_path / "run"
    assert balancer.main(["--port", "0", "-d", str(docroot), "--run-dir", str(rundir)]) == \
        balancer.START_FAILED
    err = capsys.readouterr().err
    assert "haproxy exited" in err and "balance only supports" in err, err
    assert (rundir / "server-evserver-1.log").exists(), "the instances had started"
    wait_until(lambda: not _started_with(docroot), "every instance stopped")


def _started_with(folder: Path) -> bool:
    """True when a process still names ``folder`` (an instance serving it)."""
    if shutil.which("pgrep") is None:
        return False
    found = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True,
                           check=False)
    return bool(found.stdout.strip())


def test_options_after_the_separator_and_unknown_ones_go_to_evserver(docroot: Path) -> None:
    options = balancer.parse_args(["-n", "3", "-d", str(docroot), "--workers", "2", "--",
                                   "--model", "threaded", "-q"])
    assert options.instances == 3 and options.directory == str(docroot)
    assert options.evserver_args == ("--workers", "2", "--model", "threaded", "-q")
    spec = balancer.instance_spec(1, options.evserver_args, options.health_path)
    assert spec.model == "threaded"
    assert spec.extra_args[-2:] == ("--health-path", balancer.HEALTH_PATH)


# --- configurations as HAProxy and nginx judge them ----------------------------------------

def haproxy_accepts(config: str, folder: Path) -> None:
    path = folder / "haproxy.cfg"
    path.write_text(config)
    binary = balancer.haproxy_binary()
    assert binary is not None
    done = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr, done.stdout + done.stderr


@needs_haproxy
def test_the_template_is_a_configuration_haproxy_accepts(tmp_path: Path) -> None:
    config = balancer.haproxy_config(8080, [("evserver-1", 40001), ("evserver-2", 40002)],
                                     "/-/health", str(tmp_path / "haproxy.sock"))
    assert "${" not in config and "balance leastconn" in config
    assert "    server evserver-2 127.0.0.1:40002" in config
    directives = [line.strip() for line in config.splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    assert not any("on-marked-down" in line for line in directives), "drains are not cut"
    haproxy_accepts(config, tmp_path)


def readme_block(first_line: str) -> str:
    """The ``.. code::`` block of README's "Beyond one machine" that starts with this line."""
    section = README.split("\nBeyond one machine\n")[1].split("\n-----")[0]
    for block in re.findall(r"\.\. code::[^\n]*\n\n((?:    .*\n|\n)+)", section):
        lines = [line[4:] for line in block.splitlines()]
        if lines and lines[0].startswith(first_line):
            return "\n".join(lines).strip() + "\n"
    raise AssertionError(f"README's 'Beyond one machine' has no block starting {first_line!r}")


@needs_haproxy
def test_readmes_haproxy_configuration_for_several_machines_is_valid(tmp_path: Path) -> None:
    haproxy_accepts(readme_block("global"), tmp_path)


def test_readmes_nginx_block_is_valid(tmp_path: Path) -> None:
    nginx = servers.nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed; CI installs it (.ci/run)")
    block = readme_block("upstream")
    (tmp_path / "logs").mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                      f"events {{}}\nhttp {{\n{block}}}\n")
    done = subprocess.run([nginx, "-t", "-p", f"{tmp_path}/", "-c", str(config), "-e",
                           str(tmp_path / "error.log")], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "least_conn" in block and "proxy_next_upstream" in block and "max_fails" in block


# --- the command's life --------------------------------------------------------------------

def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


RUN_FOLDER = r"logs and configuration: (\S+);"
"""Where the banner names the run folder (HAProxy's configuration is in it)."""


def _kill_processes_naming(*paths: str) -> None:
    """Kill every process whose command line holds one of these paths: what a killed tool
    started and could not stop (instances serve this test's folder, HAProxy reads its
    configuration from the run folder)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue  # it has ended meanwhile
        if any(path in command_line for path in paths):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


@needs_haproxy
def test_the_command_prints_the_front_and_ctrl_c_stops_everything(docroot: Path) -> None:
    command = [sys.executable, str(ROOT / "tools" / "balancer.py"), "--port", "0", "-d",
               str(docroot)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    try:
        assert process.stdout is not None
        lines += [process.stdout.readline() for _ in range(4)]  # the banner: front, 2, view
        text = "".join(lines)
        front = re.search(r"behind HAProxy on (http://\S+/)", text)
        assert front, text + (process.stderr.read() if process.stderr else "")
        pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", text)]
        rundir = re.search(RUN_FOLDER, text)
        assert len(pids) == 2 and rundir, text
        with urllib.request.urlopen(front.group(1) + "small.txt", timeout=10) as response:
            assert response.read() == b"hello, world\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(STOP_TIMEOUT) == 0
    finally:
        if process.poll() is None:  # the tool never stopped: stop what it started, too
            process.kill()
            process.wait()
            _kill_processes_naming(str(docroot), *re.findall(RUN_FOLDER, "".join(lines)))
    wait_until(lambda: all(_gone(pid) for pid in pids), "every instance stopped")
    assert not Path(rundir.group(1)).exists(), "the temporary run folder is removed"
    port = int(front.group(1).rsplit(":", 1)[1].strip("/"))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# --- fail-over under load ------------------------------------------------------------------

@dataclass
class Load:
    """Client threads on keep-alive connections to one port, each asking for one file over and
    over and checking every answer; a failure is counted and the request is not retried."""

    port: int
    path: str
    body: bytes
    successes: int = 0
    failures: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, count: int) -> None:
        for number in range(count):
            thread = threading.Thread(target=self._client, name=f"load-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _client(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set():
            failure = None
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or body != self.body:
                    failure = f"status {response.status}, {len(body)} bytes"
            except (OSError, http.client.HTTPException) as error:
                failure = f"{type(error).__name__}: {error}"
                connection.close()  # the next request opens a new connection
            with self._changed:
                if failure:
                    self.failures.append(f"{time.monotonic():.3f} {failure}")
                else:
                    self.successes += 1
                self._changed.notify_all()
        connection.close()

    def answered(self, count: int, what: str) -> None:
        """Wait until ``count`` more requests have been answered."""
        with self._changed:
            goal = self.successes + count
            assert self._changed.wait_for(lambda: self.successes >= goal, PHASE_SECONDS), \
                f"{what}: {self.successes} answered of {goal}; failures: {self.failures[:5]}"

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


@pytest.fixture
def load() -> Iterator[Callable[[int], Load]]:
    started: list[Load] = []

    def start(port: int) -> Load:
        client = Load(port, "/kib.bin", bytes(range(256)) * 4)
        client.start(LOAD_THREADS)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


def worker_pids(server: servers.RunningServer) -> dict[int, int]:
    """{worker index: pid} from the instance's stats endpoint (empty if it did not answer)."""
    assert server.stats_url is not None
    stats = procstat.fetch_stats(server.stats_url, 2.0) or {}
    return {row["index"]: row["pid"] for row in stats.get("workers", [])}


def retried_requests(front: balancer.Balancer) -> list[str]:
    """HAProxy's log lines of requests it retried or redispatched (the template logs only
    those, and failures); quoted in assertion messages as the evidence of a fail-over."""
    text = Path(front.haproxy_log).read_text(errors="replace")
    return [line for line in text.splitlines() if '"GET ' in line]


@needs_haproxy
def test_losing_an_instance_and_a_worker_fails_no_request(
        docroot: Path, tmp_path: Path, load: Callable[[int], Load]) -> None:
    options = balancer.Options(instances=2, port=0, directory=str(docroot),
                               health_path=balancer.HEALTH_PATH, run_dir=None,
                               evserver_args=("--workers", "2"))
    with balancer.Balancer(options, str(tmp_path)) as front:
        first, second = front.running
        client = load(front.port)
        client.answered(PHASE_REQUESTS, "before any signal")
        served = {row["svname"]: int(row["stot"]) for row in balancer.show_stat(
            front.runtime_socket) if row["svname"] in front.names}
        assert all(served.values()), f"both instances serve: {served}"

        first.process.send_signal(signal.SIGTERM)  # the first instance drains and exits
        assert first.process.wait(STOP_TIMEOUT) == 0
        wait_until(lambda: front.states().get(first.spec.label, "").startswith("DOWN"),
                   "HAProxy marks the stopped instance down")
        client.answered(PHASE_REQUESTS, "after the first instance stopped")
        assert client.failures == [], (client.failures, retried_requests(front))

        before = worker_pids(second)
        assert len(before) == 2, before
        index, victim = sorted(before.items())[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: worker_pids(second).get(index) not in (None, victim),
                   "the master replaces the killed worker", WORKER_REPLACED_SECONDS)
        client.answered(PHASE_REQUESTS, "after a worker was killed")
        assert front.states().get(second.spec.label) == "UP", front.states()
        client.stop()
        assert client.failures == [], (client.failures, retried_requests(front))
