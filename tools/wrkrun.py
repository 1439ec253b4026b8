"""Run ``wrk`` once and turn its text output into numbers.

What this module knows: wrk's command line and its report format (units ``us/ms/s/m`` for time,
``B/KB/MB/GB`` with 1024 steps for sizes, ``k/M`` for counts). What it must not know: servers.

wrk is a *closed-loop* generator: each connection waits for a response before sending the next
request, so when the server stalls, wrk stops sending (coordinated omission). wrk 4 corrects its
percentiles afterwards by adding the requests each connection would have sent at its average
pace: an estimate. Compare p99 between servers measured the same way, never against an
open-loop tool's figures.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from tools.cores import pin_prefix

WRK_GRACE = 30.0
"""Seconds beyond ``-d`` that a wrk process may take before it is killed (its own timeout is 2 s
per request; a stuck server should not hang the whole run)."""

TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
COUNT_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}


@dataclass
class WrkResult:
    """One wrk run. Latencies in seconds, transfer in bytes; errors summed by kind."""

    requests: int = 0
    duration: float = 0.0
    requests_per_second: float = 0.0
    transfer_per_second: float = 0.0
    bytes_read: float = 0.0
    latency_avg: float = 0.0
    latency_max: float = 0.0
    percentiles: dict[str, float] = field(default_factory=dict)  # "50" -> seconds
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx_3xx: int = 0
    exit_code: int = 0
    cpu_seconds: float = 0.0
    """CPU time wrk itself used (user + system): is the load generator the bottleneck?"""
    raw: str = ""

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(match.group(1)) * TIME_UNITS[match.group(2)]


def _bytes(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", text)
    if not match:
        raise ValueError(f"not a wrk size: {text!r}")
    return float(match.group(1)) * SIZE_UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    """Parse wrk 4's report (``--latency`` adds the percentile block)."""
    result = WrkResult(raw=output)
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Latency" and len(words) >= 4 and not words[1].endswith("%"):
            result.latency_avg, result.latency_max = _seconds(words[1]), _seconds(words[3])
        elif len(words) == 2 and re.fullmatch(r"\d+(\.\d+)?%", words[0]):
            result.percentiles[words[0].split(".")[0].rstrip("%")] = _seconds(words[1])
        elif " requests in " in line:
            match = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", line)
            if match:
                result.requests = int(match.group(1))
                result.duration = _seconds(match.group(2))
                result.bytes_read = _bytes(match.group(3))
        elif words[0] == "Socket" and words[1] == "errors:":
            for kind, count in re.findall(r"(\w+) (\d+)", line.partition(":")[2]):
                result.socket_errors[kind] = int(count)
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            result.non_2xx_3xx = int(words[-1])
        elif words[0] == "Requests/sec:":
            result.requests_per_second = float(words[1])
        elif words[0] == "Transfer/sec:":
            result.transfer_per_second = _bytes(words[1])
    return result


def command(url: str, connections: int, duration: float, close: bool = False,
            core: Iterable[int] | int | None = None, threads: int = 1,
            timeout: float = 2.0) -> list[str]:
    wrk = shutil.which("wrk") or "wrk"
    argv = [*pin_prefix(core), wrk, f"-t{threads}", f"-c{max(connections, threads)}",
            f"-d{duration:g}s", f"--timeout={timeout:g}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]  # a new connection per request (RFC 9112 9.6)
    return [*argv, url]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(url: str, connections: int, duration: float, close: bool = False,
        core: Iterable[int] | int | None = None, threads: int = 1) -> WrkResult:
    """Run wrk and parse it. Its CPU time comes from the kernel's account of reaped children:
    the caller runs nothing else that ends meanwhile, so the difference is wrk's alone."""
    argv = command(url, connections, duration, close, core, threads)
    cpu_before = _children_cpu()
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=duration + WRK_GRACE, check=False)
    except subprocess.TimeoutExpired as expired:
        result = WrkResult(exit_code=-1, raw=f"wrk timed out: {expired}")
        result.socket_errors["wrk_timeout"] = 1
        return result
    result = parse(done.stdout)
    result.cpu_seconds = round(_children_cpu() - cpu_before, 3)
    result.exit_code = done.returncode
    if done.returncode != 0:
        result.raw += "\n" + done.stderr
    return result
