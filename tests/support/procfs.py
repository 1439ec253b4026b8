"""What ``/proc`` says about a process: open descriptors, resident memory, CPU time.

What this module knows: Linux's ``/proc/PID/{fd,status,stat}``. What it must not know: servers;
a process is ``"self"`` (this test process, where in-process servers run) or a child's pid.
Standard library only, so tools can count a server's descriptors the same way.
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""Units of ``/proc/PID/stat``'s utime and stime (USER_HZ, 100 on Linux)."""


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int | str = "self") -> int:
    """Resident memory in KiB (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU time the process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
