"""Every command in README.rst is run here, so the how-to cannot rot.

Each command of every literal block is listed in ``COMMANDS`` with the way it is run: as it is,
or in its quick form (the same command with ``--quick``, a shorter run time, a free port instead
of 8000, a temporary folder instead of ``/tmp/myfolder``). A command added to the README without
an entry here, or an entry whose command left the README, fails ``test_every_command_is_run``.
Install commands cannot run in a test: CI runs them (``.ci/run``), which is checked instead.

Servers bind 127.0.0.1 port 0 and are always stopped; nothing waits on a sleep (a banner line,
a port or a process end is waited for, with a deadline).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

ROOT = next(folder for folder in Path(__file__).resolve().parents
            if (folder / "setup.cfg").exists())
"""The project folder, wherever in tests/ this file lives."""
README = (ROOT / "README.rst").read_text()
CI_SCRIPT = (ROOT / ".ci" / "run").read_text()
BIN = Path(sys.executable).parent
MY_FOLDER = "/tmp/myfolder"
BANNER = re.compile(r"on https?://127\.0\.0\.1:(\d+)/")

START_DEADLINE = 20.0
"""Seconds a server or Locust master may take to come up before the test fails."""

RUN_DEADLINE = 600.0
"""Seconds any one README command may run in its quick form (a quick compare takes about 1)."""


def readme_commands(text: str = README) -> list[str]:
    """Every command of every literal block (``::``), backslash continuations joined; a
    ``.. code::`` block shows something else (a diagram) and holds no command."""
    commands = []
    for block in re.finditer(r"(?<!\.\. code)::\n\n((?:    .*\n|\n)+)", text):
        pending = ""
        for line in block.group(1).splitlines():
            line = line[4:].strip()
            if not line:
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
            else:
                commands.append(pending + line)
                pending = ""
    return commands


def argv_of(command: str, **replace: str) -> list[str]:
    """The command as an argument list: ``.venv/bin/`` is this interpreter's folder, and each
    ``replace`` key (a literal piece of the command) becomes its value."""
    for old, new in replace.items():
        command = command.replace(old, new)
    words = shlex.split(command)
    if words[0].startswith(".venv/bin/"):
        words[0] = str(BIN / words[0].removeprefix(".venv/bin/"))
    return words


def run(argv: list[str], timeout: float = RUN_DEADLINE, **options: object
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False, **options)  # type: ignore[call-overload]
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def user_folder(base: Path) -> Path:
    """A folder as a user makes one: a few small files, a subfolder, a name with a space."""
    folder = base / "myfolder"
    (folder / "notes").mkdir(parents=True)
    (folder / "hello.txt").write_text("hello\n")
    (folder / "index of things.html").write_text("<h1>things</h1>\n")
    (folder / "notes" / "a.md").write_text("# a\n" * 100)
    return folder


class Server:
    """An evserver started from a README command on a free port; stopped with Ctrl-C."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen([*argv, "0", "-b", "127.0.0.1"], cwd=cwd,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_DEADLINE
        self.port = 0
        while not self.port and time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            match = BANNER.search(line)
            self.port = int(match.group(1)) if match else 0
        assert self.port, "the server printed no banner"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(START_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(command: str, cwd: Path | None = None, **replace: str) -> Server:
        server = Server(argv_of(command, **replace), cwd or ROOT)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- how each README command is run ---------------------------------------------------------

def by_ci(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """Install commands: CI runs them on a fresh machine; check that it does."""
    ci_lines = [line.strip() for line in CI_SCRIPT.splitlines()]
    if command.startswith("sudo apt-get install "):
        for package in command.split()[3:]:
            assert f"missing+=({package})" in CI_SCRIPT, f".ci/run does not install {package}"
    else:
        assert command in ci_lines, f".ci/run does not run {command!r}"


def make_folder(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    run(["bash", "-c", command.replace(MY_FOLDER, str(tmp_path / "myfolder"))])
    assert (tmp_path / "myfolder" / "hello.txt").read_text() == "hello\n"


def serve_folder(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """``evserver`` alone serves the current folder; with ``-d`` the folder named."""
    folder = user_folder(tmp_path)
    server = serve(command, cwd=folder, **{MY_FOLDER: str(folder)})
    with urllib.request.urlopen(server.url("/hello.txt"), timeout=10) as response:
        assert response.read() == b"hello\n"


def stats_endpoint(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """The README's two commands together: a server with the stats path, curl against it."""
    server_command = next(c for c in readme_commands() if "--stats-path" in c)
    curl_command = next(c for c in readme_commands()
                        if c.startswith("curl ") and c.endswith("/-/stats"))
    server = serve(server_command, cwd=user_folder(tmp_path))
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (CI installs it)")
    done = run(argv_of(curl_command, **{"127.0.0.1:8000": f"127.0.0.1:{server.port}"}))
    stats = json.loads(done.stdout)
    table = README.split("The stats endpoint")[1].split("**Prometheus.**")[0]
    documented = re.findall(r"^``(\w+)``(?:, ``(\w+)``)?", table, re.M)
    for names in documented:
        for name in filter(None, names):
            if name not in ("loop", "threads", "workers"):  # one model each; --workers
                assert name in stats, f"README documents {name!r}, the endpoint lacks it"


def serve_https(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """The README's three HTTPS commands together: make the certificate (in a temporary folder,
    where the server then runs), serve a folder with it, fetch a file with curl trusting it."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (CI installs it)")
    make, start, fetch = (next(c for c in readme_commands() if c.startswith(prefix))
                          for prefix in ("openssl req ", ".venv/bin/evserver --tls-cert",
                                         "curl --cacert"))
    files = {name: str(tmp_path / name) for name in ("key.pem", "cert.pem")}
    done = run(argv_of(make, **files))
    assert done.returncode == 0, done.stderr
    folder = user_folder(tmp_path)
    server = serve(start, cwd=tmp_path, **{MY_FOLDER: str(folder)})  # cert.pem is here
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (CI installs it)")
    done = run(argv_of(fetch, **{"localhost:8000": f"localhost:{server.port}",
                                 "cert.pem": files["cert.pem"]}))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello\n"


def renew_https(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """The README's renewal: serve over HTTPS under a master, replace both files by a rename,
    reload; new connections then get the new certificate. The reload is the README's ``kill``
    with its ``pgrep`` narrowed to this master's pid (other tests run servers of their own)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (CI installs it)")
    make = next(c for c in readme_commands() if c.startswith("openssl req "))
    start = next(c for c in readme_commands() if c.startswith(".venv/bin/evserver --workers 1"))
    reload = next(c for c in readme_commands() if c.startswith("kill -HUP"))
    for folder in (tmp_path, tmp_path / "renewed"):
        folder.mkdir(exist_ok=True)
        done = run(argv_of(make, **{name: str(folder / name) for name in ("key.pem", "cert.pem")}))
        assert done.returncode == 0, done.stderr
    server = serve(start, cwd=tmp_path, **{MY_FOLDER: str(user_folder(tmp_path))})

    def served() -> bytes:
        return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", server.port)))

    def on_disk() -> bytes:
        return ssl.PEM_cert_to_DER_cert((tmp_path / "cert.pem").read_text())

    assert served() == on_disk()
    for name in ("key.pem", "cert.pem"):
        os.replace(tmp_path / "renewed" / name, tmp_path / name)
    done = run(["sh", "-c", reload.replace("$(pgrep -o -f 'evserver.*--workers')",
                                           str(server.process.pid))])
    assert done.returncode == 0, done.stderr
    wait_until(lambda: served() == on_disk(), "the renewed certificate served")


def metrics_endpoint(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """The README's server command and its metrics curl: Prometheus's parser reads every metric
    the README's table documents (the threaded model's aside: this server is evented)."""
    from prometheus_client.parser import text_string_to_metric_families

    server_command = next(c for c in readme_commands() if "--metrics-path" in c)
    server = serve(server_command, cwd=user_folder(tmp_path))
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (CI installs it)")
    done = run(argv_of(command, **{"127.0.0.1:8000": f"127.0.0.1:{server.port}"}))
    samples = {sample.name for family in text_string_to_metric_families(done.stdout)
               for sample in family.samples}
    table = README.split("**Prometheus.**")[1].split("With worker processes, each")[0]
    rows = re.findall(r"^``(evserver_\w+)\W.*$", table, re.M)
    documented = re.findall(r"^``(evserver_\w+)\W(?!.*threaded:).*$", table, re.M)
    assert len(documented) > 10 and len(rows) > len(documented)
    for name in documented:
        assert name in samples, f"README documents {name!r}, the metrics path lacks it"


def listing_as_json(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """The README's JSON listing of a user's folder, sorted by size, largest first."""
    server = serve(".venv/bin/evserver -d " + str(user_folder(tmp_path)))
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (CI installs it)")
    done = run(argv_of(command, **{"127.0.0.1:8000": f"127.0.0.1:{server.port}"}))
    listing = json.loads(done.stdout)
    assert [(entry["name"], entry["type"]) for entry in listing["entries"]] == [
        ("notes", "directory"), ("index of things.html", "file"), ("hello.txt", "file")]


def experiment(extra: str) -> Callable[[str, Path, Callable[..., Server]], None]:
    """An experiment command in its quick form: ``--quick`` plus ``extra``, in a temporary
    run folder; it must exit 0 and leave a report."""
    def run_experiment(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
        rundir = tmp_path / "run"
        argv = [*argv_of(command), "--quick", "--out", str(rundir),
                "--docroot", str(tmp_path / "tree"), *shlex.split(extra)]
        done = run(argv)
        assert done.returncode == 0, done.stderr
        report = (rundir / "report.md").read_text()
        assert report.startswith("# evserver experiment report")
        assert "Quick mode: a smoke test" in report
    return run_experiment


def lab_list(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    done = run(argv_of(command))
    assert done.returncode == 0, done.stderr
    assert "nagle" in done.stdout and "selectors" in done.stdout


def lab_run(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """A lab in its quick form (the command itself, or with ``--quick`` added), in a
    temporary run folder; it must exit 0 and leave a report."""
    argv = argv_of(command)
    if "--quick" not in argv:
        argv.append("--quick")
    rundir = tmp_path / "run"
    done = run([*argv, "--out", str(rundir), "--docroot", str(tmp_path / "tree")])
    assert done.returncode == 0, done.stderr
    report = (rundir / "report.md").read_text()
    assert report.startswith(f"# Lab `{argv[argv.index('run') + 1]}`")
    assert "Quick mode: a smoke test" in report


def balancer_front(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """The balancer on a user's folder, its front on a free port: it prints the front URL,
    serves the folder through HAProxy, and stops with status 0 on Ctrl-C."""
    if shutil.which("haproxy", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        pytest.skip("haproxy is not installed; CI installs it")
    argv = argv_of(command, **{MY_FOLDER: str(user_folder(tmp_path))})
    script = next(i for i, word in enumerate(argv) if word.endswith("balancer.py"))
    argv[script + 1:script + 1] = ["--port", "0"]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        front = re.search(r"behind HAProxy on (http://\S+/)", first)
        assert front, first + process.stdout.read()
        with urllib.request.urlopen(front.group(1) + "hello.txt", timeout=10) as response:
            assert response.read() == b"hello\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(START_DEADLINE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def locust_against_my_folder(extra: str, **environment: str) -> Callable[..., None]:
    """A Locust command against evserver on a user's folder, for a few seconds."""
    def run_locust(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
        if shutil.which("locust", path=str(BIN)) is None:
            pytest.skip("Locust is not installed (the load extra)")
        server = serve(".venv/bin/evserver -d " + str(user_folder(tmp_path)))
        argv = argv_of(command, **{"http://127.0.0.1:8000": server.url("").rstrip("/")})
        if "-H" not in argv:
            argv += ["-H", server.url("").rstrip("/")]
        port = str(free_port())  # Locust's master port: not 5557, which another run may hold
        done = run(argv + shlex.split(extra.format(port=port)),
                   env={**os.environ, **environment})
        assert done.returncode == 0, done.stderr
        assert "evserver scenarios: " in done.stderr
        assert "requests sent" in done.stderr and "never answered" in done.stderr
    return run_locust


def locust_machines(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    """The README's master command and two of its worker command, on this one machine (each
    of the two commands is run so, together with the other)."""
    if shutil.which("locust", path=str(BIN)) is None:
        pytest.skip("Locust is not installed (the load extra)")
    server = serve(".venv/bin/evserver -d " + str(user_folder(tmp_path)))
    locust_commands = [c for c in readme_commands() if c.startswith(".venv/bin/locust ")]
    master_command = next(c for c in locust_commands if "--master " in c)
    worker_command = next(c for c in locust_commands if "--worker " in c)
    port = str(free_port())
    master = argv_of(master_command, **{"http://192.0.2.10:8000": server.url("").rstrip("/")})
    master += ["--master-bind-port", port, "-t", "4s", "-u", "10", "-r", "10"]
    worker = [*argv_of(worker_command, **{"192.0.2.20": "127.0.0.1"}), "--master-port", port]
    workers = [subprocess.Popen(worker, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        done = run(master, timeout=120)
    finally:
        for process in workers:
            try:
                process.wait(START_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert done.returncode == 0, done.stderr
    assert "0 never answered" in done.stderr, done.stderr
    for process in workers:
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
        process.stderr.close()


def tool_quick(constants: str) -> Callable[..., None]:
    """A micro-benchmark tool with its repetition constants made tiny: does it still run?"""
    def run_tool(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
        module = "tools." + Path(argv_of(command)[-1]).stem
        code = (f"import {module} as tool\n{constants}\n"
                f"raise SystemExit(tool.main())")
        done = run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()
    return run_tool


def fuzz_quick(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    done = run(argv_of(command, **{"--seconds 600": "--seconds 2"}))
    assert done.returncode == 0, done.stderr


COMMANDS: dict[str, Callable[..., None]] = {
    "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'": by_ci,
    ".venv/bin/evserver": serve_folder,
    ".venv/bin/python -m pytest": by_ci,  # this very run
    "mkdir -p /tmp/myfolder && echo hello > /tmp/myfolder/hello.txt": make_folder,
    ".venv/bin/evserver -d /tmp/myfolder": serve_folder,
    "sudo apt-get install wrk nginx": by_ci,
    ".venv/bin/pip install -e '.[load,plot]'": by_ci,
    ".venv/bin/python tools/experiment.py compare --quick": experiment(""),
    ".venv/bin/python tools/experiment.py compare --server 'evented --selector epoll' "
    "--server 'evented --selector poll' --server 'evented --selector select' "
    "--server 'evented --no-sendfile' --server threaded --server iterative --peers nginx":
        experiment("--duration 1 --connections 16 --hold 50 --locust-time 3"),
    ".venv/bin/python tools/lab.py list": lab_list,
    ".venv/bin/python tools/lab.py run nagle --quick": lab_run,
    ".venv/bin/python tools/lab.py run nagle": lab_run,
    ".venv/bin/locust --config loadtests/locust.conf": locust_against_my_folder("-t 3s"),
    ".venv/bin/locust --config loadtests/locust.conf -H http://127.0.0.1:8000 -u 200 -t 1m "
    "Browser Revalidator": locust_against_my_folder("-t 3s -u 20 -r 20"),
    ".venv/bin/locust --config loadtests/locust.conf --processes 4":
        locust_against_my_folder("-t 3s --master-bind-port {port} --master-port {port}"),
    ".venv/bin/locust --config loadtests/locust.conf -H http://192.0.2.10:8000 --master "
    "--expect-workers 2": locust_machines,
    ".venv/bin/locust --config loadtests/locust.conf --worker --master-host 192.0.2.20":
        locust_machines,
    ".venv/bin/locust --config loadtests/locust.conf -f loadtests/locustfile.py,"
    "loadtests/shapes.py": locust_against_my_folder("", STEP_SECONDS="1", STEP_COUNT="2",
                                                    STEP_USERS="5"),
    ".venv/bin/python tools/experiment.py compare --quick --locust-time 10 "
    "--locust-processes 2": experiment("--duration 1 --locust-time 4 --hold ''"),
    ".venv/bin/evserver -d /tmp/myfolder --workers auto --health-path /-/health": serve_folder,
    "curl -s -H 'Accept: application/json' 'http://127.0.0.1:8000/?sort=size&order=desc'":
        listing_as_json,
    ".venv/bin/evserver --stats-path /-/stats --metrics-path /-/metrics": stats_endpoint,
    "sudo apt-get install haproxy": by_ci,
    ".venv/bin/python tools/balancer.py --instances 2 -d /tmp/myfolder -- --workers 2":
        balancer_front,
    "curl -s http://127.0.0.1:8000/-/stats": stats_endpoint,
    "curl -s http://127.0.0.1:8000/-/metrics": metrics_endpoint,
    ".venv/bin/python -m tools.fuzz_server --seconds 600 --seed 1 --model evented": fuzz_quick,
    ".venv/bin/python tools/experiment.py bench":
        experiment("--repeat 1 --duration 1 --idle-connections 50"),
    ".venv/bin/python tools/experiment.py bench --tls": experiment("--repeat 1 --duration 1"),
    ".venv/bin/python tools/experiment.py ab HEAD .": experiment("--duration 1"),
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 "
    "-subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' -keyout key.pem "
    "-out cert.pem": serve_https,
    ".venv/bin/evserver --tls-cert cert.pem --tls-key key.pem -d /tmp/myfolder": serve_https,
    ".venv/bin/evserver --workers 1 --tls-cert cert.pem --tls-key key.pem -d /tmp/myfolder":
        renew_https,
    "kill -HUP $(pgrep -o -f 'evserver.*--workers')": renew_https,
    "curl --cacert cert.pem https://localhost:8000/hello.txt": serve_https,
    ".venv/bin/python tools/experiment.py compare --server evented --server "
    "'evented --stat-every-request' --server 'evented --no-sendfile' --server "
    "'evented --access-log /dev/null' --connections 64 --files 1k,64k,1m --hold '' "
    "--locust-time 0 --peers nginx": experiment("--duration 1"),
    ".venv/bin/python tools/bench_hotpath.py": tool_quick("tool.RUNS = 1\n"
                                                          "tool.ITERATIONS = 200"),
    ".venv/bin/python tools/bench_parser.py": tool_quick("tool.RUNS = 1\n"
                                                         "tool.RUN_SECONDS = 0.01"),
}

FAST = (by_ci, make_folder, serve_folder, stats_endpoint, metrics_endpoint, listing_as_json,
        lab_list, serve_https, renew_https)
"""Runners that take well under a second; the others run a tool for seconds or minutes."""


def test_every_command_is_run() -> None:
    in_readme = readme_commands()
    assert set(in_readme) == set(COMMANDS), (
        f"README commands without a test: {sorted(set(in_readme) - set(COMMANDS))}; "
        f"tests of commands the README no longer has: {sorted(set(COMMANDS) - set(in_readme))}")


def test_the_readme_parser_joins_continued_lines() -> None:
    text = "Run::\n\n    a \\\n        b\n    c\n\nthen::\n\n    d\n"
    assert readme_commands(text) == ["a b", "c", "d"]


@pytest.mark.parametrize("command", [c for c, runner in COMMANDS.items() if runner in FAST])
def test_quick_commands(command: str, tmp_path: Path, serve: Callable[..., Server]) -> None:
    COMMANDS[command](command, tmp_path, serve)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed; CI installs it")
@pytest.mark.parametrize("command", [c for c, runner in COMMANDS.items() if runner not in FAST])
def test_long_commands_in_their_quick_form(command: str, tmp_path: Path,
                                           serve: Callable[..., Server]) -> None:
    COMMANDS[command](command, tmp_path, serve)
