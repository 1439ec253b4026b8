"""The course lab: each lesson of a systems course as one command, a plot and a table.

    python tools/lab.py list                        # the labs, with their questions
    python tools/lab.py run nagle --quick           # a smoke test, well under a minute
    python tools/lab.py run nagle                   # the real measurement (minutes)

What this module knows: the command line -- which lab, quick or full, where the run folder goes
-- and its exit statuses: 0 done, 1 a tool is missing or nothing was measured, 2 an unknown lab
or bad arguments, 130 interrupted (Ctrl-C). What it must not know: what a lab measures
(``tools/labs/<lab>.py``), how a run is reported (``tools.labs.base``).

Each run writes ``results/lab-<name>-<date>-<time>/`` (or ``--out``): the raw records as JSON
and CSV, the PNG figures, ``summary.json`` and ``report.md`` (the question, the tables, what to
look for, and the result we expect). The guide is ``tools/labs/README.rst``. Like the
experiment runner, a lab holds the machine-wide benchmark lock, pins the server to one core and
its clients to the others, and stops every process it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time

if __package__ in (None, ""):  # run as a script: make ``tools`` importable as a package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import docroot, experiment
from tools.labs import BY_NAME, LABS
from tools.labs.base import Lab, LabRun, lab_process, log, missing_tools, summarise, write

USAGE_ERROR = 2
"""Exit status for an unknown lab or bad arguments, as argparse uses."""

MISSING_TOOL = 1
"""Exit status when a tool the lab needs is not installed (nothing was started)."""

LIST_WIDTH = 96
"""Characters per line of ``list``: the questions are wrapped to fit a terminal."""


def list_labs() -> str:
    lines = []
    for lab in LABS:
        quick, full = lab.minutes
        lines.append(f"{lab.name:14} {lab.title}  (quick about {quick:g} min, full about "
                     f"{full:g} min)")
        lines += textwrap.wrap(lab.question, LIST_WIDTH, initial_indent=" " * 15,
                               subsequent_indent=" " * 15)
    lines.append("")
    lines.append("run one: python tools/lab.py run NAME [--quick]; the guide: "
                 "tools/labs/README.rst")
    return "\n".join(lines)


def unknown(name: str) -> int:
    log(f"lab: no lab called {name!r}; the labs are: {', '.join(BY_NAME)}")
    return USAGE_ERROR


def rundir_for(lab: Lab, out: str | None) -> str:
    if out:
        return os.path.abspath(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(experiment.PROJECT_DIR, "results", f"lab-{lab.name}-{stamp}")


def run_lab(lab: Lab, quick: bool, out: str | None, tree: str | None) -> int:
    missing = missing_tools(lab)
    if missing:
        log(f"lab {lab.name} cannot run: " + "; ".join(missing))
        return MISSING_TOOL
    profile = "quick" if quick else "full"
    root = tree or experiment.default_docroot(profile)
    try:
        if docroot.load_manifest(root) is None:
            docroot.check_writable_tree(root)
    except docroot.NotATree as error:
        log(f"lab: {error}")
        return USAGE_ERROR
    run = LabRun(lab, quick, rundir_for(lab, out), root)
    os.makedirs(run.rundir, exist_ok=True)
    minutes = lab.minutes[0 if quick else 1]
    log(f"lab {lab.name}: {lab.title}; about {minutes:g} minute(s)"
        + (" (quick: a smoke test)" if quick else ""))
    try:
        with experiment.bench_lock():
            run.started = time.monotonic()  # the lab's own time, not the wait for the lock
            with lab_process(run):
                log(f"document root {root} ({profile})")
                run.manifest = docroot.ensure(root, 1, profile)
                lab.measure(run)
            with experiment.sigint_ignored():  # the report of what was measured, whatever
                summarise(run)
                text = write(run)
    except KeyboardInterrupt:  # while waiting for another run's lock: nothing was started
        log("Ctrl-C: nothing was measured")
        return experiment.INTERRUPTED_EXIT
    print(text)
    log(f"report: {run.path('report.md')} ({len(run.figures)} plots)")
    if run.interrupted:
        return experiment.INTERRUPTED_EXIT
    return 0 if run.records else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description="The course lab: each experiment as one command; a report with a table "
                    "and plots in a run folder. The guide: tools/labs/README.rst.")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the labs and their questions")
    run = commands.add_parser("run", help="run one lab")
    run.add_argument("name", help="the lab (see list)")
    run.add_argument("--quick", action="store_true",
                     help="a smoke test: short points, one round, well under a minute")
    run.add_argument("--out", help="run folder (default results/lab-<name>-<timestamp>)")
    run.add_argument("--docroot", help="a new or empty folder for the generated tree, or one "
                                       "made before (default results/docroot-<quick|full>)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "list":
        print(list_labs())
        return 0
    lab = BY_NAME.get(args.name)
    if lab is None:
        return unknown(args.name)
    return run_lab(lab, args.quick, args.out, args.docroot)


if __name__ == "__main__":
    raise SystemExit(main())
