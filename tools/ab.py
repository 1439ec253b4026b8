"""The A/B mode's own parts: two checkouts of evserver to compare, and the verdict on them.

    python tools/experiment.py ab HEAD .            # the last commit against the working tree
    python tools/experiment.py ab main HEAD --peers nginx

What this module knows: git (resolving a revision, a temporary ``git worktree`` for it and its
removal), what makes a folder an evserver checkout, how to ask a checkout which evserver it
imports, and the arithmetic of an A/B table: per-round ratios B/A and the verdict they allow.
What it must not know: how servers start or are measured (``servers``, ``experiment``), how
records are written (``report``).

Invariants:
- A revision is checked out into a detached worktree of the repository the tools live in; every
  worktree this module added is removed by ``remove_worktrees`` (the runner calls it on every
  exit, Ctrl-C included), so a run leaves no worktree behind.
- A checkout is used only after a child interpreter, started exactly as its server will be
  (``servers.checkout_place``), imported evserver from inside it: a benchmark that silently ran
  the installed evserver twice would report "indistinguishable" for any change.
- A verdict needs a spread: B is faster (slower) only when B/A is above (below) 1.0 in every
  round; ratios that straddle 1.0 are indistinguishable; a single round judges nothing. Noise
  alone puts every one of N rounds on one side in 1 run of 2**(N-1) (1 in 4 with three
  rounds), and the verdict line says so: more rounds make a verdict firmer.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tools import report, servers

GIT_TIMEOUT = 60.0
"""Seconds a git command may take (a worktree of a large history on a slow disk)."""

IMPORT_TIMEOUT = 30.0
"""Seconds a child interpreter may take to import a checkout's evserver."""

MIN_ROUNDS_TO_JUDGE = 2
"""Rounds below which no verdict is given: one ratio has no spread to compare with 1.0."""

LABELS = ("A", "B")

COMMIT_SHOWN = 12
"""Hex digits of a commit shown in the report: unique in any repository of this size."""


class AbError(ValueError):
    """A revision or folder that cannot be compared; the message is one line for the user."""


@dataclass
class Checkout:
    """One side of the comparison: ``label`` (A or B), what the user typed, the folder whose
    evserver runs, the commit (empty for a folder outside git), whether this run made it."""

    label: str
    given: str
    path: str
    commit: str = ""
    temporary: bool = False
    imported_from: str = ""
    """Where its server's interpreter found evserver (filled in by ``verify_import``)."""


def _git(repo: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)


def is_checkout(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "evserver", "__init__.py"))


def resolve(label: str, given: str, repo: str, rundir: str) -> Checkout:
    """A folder that holds evserver is used as it is; anything else is a revision of ``repo``,
    to be checked out into ``rundir``. ``AbError`` says why neither works."""
    if os.path.isdir(given):
        if not is_checkout(given):
            raise AbError(f"{given!r}: a folder, but not an evserver checkout "
                          f"(no evserver/__init__.py in it)")
        path = os.path.abspath(given)
        commit = _git(path, "rev-parse", "--short", "HEAD").stdout.strip() \
            if shutil.which("git") else ""
        return Checkout(label, given, path, f"{commit} (its working tree)" if commit else "")
    if shutil.which("git") is None:
        raise AbError(f"{given!r}: not a folder, and git is not installed to read it as a "
                      f"revision (Debian: sudo apt-get install git)")
    if _git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise AbError(f"{repo} is not a git repository: give the folders of two checkouts "
                      f"instead of revisions")
    found = _git(repo, "rev-parse", "--verify", "--quiet", f"{given}^{{commit}}")
    if found.returncode != 0:
        raise AbError(f"{given!r}: neither a revision of {repo} nor a folder")
    return Checkout(label, given, os.path.join(rundir, f"checkout-{label}"),
                    found.stdout.strip(), temporary=True)


def add_worktrees(checkouts: Sequence[Checkout], repo: str, made: list[Checkout]) -> None:
    """Check out each revision into its detached worktree; each one added goes into ``made``
    at once (the caller's list: on Ctrl-C it must find every worktree to remove)."""
    for checkout in checkouts:
        if not checkout.temporary:
            continue
        os.makedirs(os.path.dirname(checkout.path), exist_ok=True)
        made.append(checkout)
        done = _git(repo, "worktree", "add", "--detach", "--quiet", checkout.path,
                    checkout.commit)
        if done.returncode != 0:
            raise AbError(f"git worktree add {checkout.given}: "
                          f"{(done.stderr.strip().splitlines() or ['failed'])[-1]}")


def remove_worktrees(made: Sequence[Checkout], repo: str) -> list[str]:
    """Remove every worktree in ``made``; return one line per one that could not be removed."""
    problems = []
    for checkout in made:
        done = _git(repo, "worktree", "remove", "--force", checkout.path)
        if done.returncode != 0 and os.path.exists(checkout.path):
            problems.append(f"worktree {checkout.path} not removed: "
                            f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    if made:
        _git(repo, "worktree", "prune")  # a worktree whose folder went away some other way
    return problems


def verify_import(checkout: Checkout) -> None:
    """Import evserver as the checkout's server will (same folder, same environment) and
    record where from; ``AbError`` unless it is the checkout's own code."""
    cwd, env = servers.checkout_place(checkout.path)
    done = subprocess.run([sys.executable, "-c", "import evserver; print(evserver.__file__)"],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=IMPORT_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    found = done.stdout.strip()
    inside = os.path.realpath(checkout.path) + os.sep
    if done.returncode != 0 or not os.path.realpath(found).startswith(inside):
        last = (done.stderr.strip().splitlines() or [found or "nothing"])[-1]
        raise AbError(f"{checkout.label} ({checkout.given}): evserver does not come from "
                      f"{checkout.path}: {last}")
    checkout.imported_from = found


# --- the verdict -----------------------------------------------------------------------------

def per_round(points: Sequence[dict[str, Any]], case: str, label: str,
              metric: str = "rps") -> dict[int, float]:
    return {p["round"]: float(p[metric]) for p in points
            if p["case"] == case and p["server"] == label and p.get(metric) is not None}


def requests_per_cpu_second(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each wrk point with ``req_per_cpu_s``: requests answered per second of the server's
    CPU (its process tree), the cost of a request whatever the load generator managed."""
    return [{**p, "req_per_cpu_s": p["requests"] / p["cpu_seconds"]
             if p.get("requests") and p.get("cpu_seconds") else None} for p in points]


def verdict(ratios: Sequence[float]) -> str:
    if not ratios:
        return "not measured"
    if len(ratios) < MIN_ROUNDS_TO_JUDGE:
        return "not judged (one round has no spread)"
    if min(ratios) > 1.0:
        return "B is faster"
    if max(ratios) < 1.0:
        return "B is slower"
    return "B is indistinguishable"


def _ratio_text(ratios: Sequence[float]) -> str:
    if not ratios:
        return "-"
    middle = f"{statistics.median(ratios):.3f}"
    return middle if len(ratios) < 2 else f"{middle} ({min(ratios):.3f}-{max(ratios):.3f})"


TABLE_INTRO = (
    "Each cell: the median over the rounds (min-max). `B/A`: the median of the per-round ratios "
    "of requests/s, each round's B over the same round's A (min-max of those ratios): both were "
    "measured minutes apart at most, so a drift of the machine divides out. `req/CPU-s`: "
    "requests per second of the server's CPU. The verdict: faster or slower when every round "
    "agrees, indistinguishable when the rounds' ratios straddle 1.0.\n")


def ab_table(points: Sequence[dict[str, Any]], peers: Sequence[str]) -> tuple[str, list[str]]:
    """The A/B table (one line per case) and the verdict lines under it."""
    records = requests_per_cpu_second(points)
    rows = report.summarise(records, ("rps", "req_per_cpu_s"))
    by_key = {(row["case"], row["server"]): row for row in rows}
    header = ["case", "A req/s", "B req/s", "B/A (rounds)", "A req/CPU-s", "B req/CPU-s"]
    header += [f"{peer} req/s" for peer in peers]
    lines, verdicts = [], []
    for case in dict.fromkeys(p["case"] for p in points):
        a, b = per_round(points, case, "A"), per_round(points, case, "B")
        ratios = [b[r] / a[r] for r in sorted(a) if r in b and a[r]]
        cells = [case]
        for metric, label in (("rps", "A"), ("rps", "B")):
            cells.append(report.fmt_range(by_key[(case, label)], metric)
                         if (case, label) in by_key else "-")
        cells.append(_ratio_text(ratios))
        for label in LABELS:
            cells.append(report.fmt_range(by_key[(case, label)], "req_per_cpu_s")
                         if (case, label) in by_key else "-")
        cells += [report.fmt_range(by_key[(case, peer)], "rps") if (case, peer) in by_key
                  else "-" for peer in peers]
        lines.append(cells)
        judged = verdict(ratios)
        chance = (f"; identical code gets a verdict this firm in 1 run of "
                  f"{2 ** (len(ratios) - 1)}" if judged in ("B is faster", "B is slower") else "")
        verdicts.append(f"- **{case}**: {judged} (B/A {_ratio_text(ratios)}{chance})")
    return report.markdown_table(header, lines), verdicts


CHECKOUTS_INTRO = (
    "Each evserver ran as `python -m evserver` in its checkout's folder, with that folder first "
    "on `PYTHONPATH`; before the run, an interpreter started the same way showed where it "
    "imports evserver from:\n")


def checkouts_table(checkouts: Sequence[dict[str, Any]]) -> str:
    """What A and B are: what was given, the commit, where evserver came from."""
    return CHECKOUTS_INTRO + "\n" + report.markdown_table(
        ["", "given", "commit", "evserver imported from"],
        ([c["label"], f"`{c['given']}`",
          (c["commit"][:COMMIT_SHOWN] if c["temporary"] else c["commit"]) or "-",
          f"`{c['imported_from']}`"]
         for c in checkouts))
