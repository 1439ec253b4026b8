"""Run the differential test: evserver's parser against llhttp and h11 on generated inputs.

What this module knows: how to run the generator for a time or a number of inputs, compare each
verdict and sort the differences into known (counted per row of ``known.py``) and unexplained
(kept, with an example each). Also a check of evserver against itself: the same input fed whole
and one byte at a time must give the same verdict.

By hand, for longer than CI does (README, "Testing")::

    .venv/bin/python -m tests.differential.run --seconds 120 --seed 7
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.differential.compare import Difference, compare
from tests.differential.generator import inputs
from tests.differential.known import explain
from tests.differential.verdicts import PARSERS, evserver_verdict

MAX_EXAMPLES = 20
"""Unexplained differences kept to show: the first ones of their kind are enough to act on."""

SPLIT_CHECK_EVERY = 10
"""Every tenth input is also fed one byte at a time; more would double the run for little."""


@dataclass
class Report:
    inputs: int = 0
    agreed: int = 0
    known: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    unexplained: list[Difference] = field(default_factory=list)
    split_mismatches: list[bytes] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.inputs} inputs, {self.agreed} with no difference"]
        out += [f"  known {count:8d}  {name}" for name, count in self.known.most_common()]
        out += [f"  kind  {count:8d}  {kind}" for kind, count in self.kinds.most_common()]
        out += [f"unexplained: {len(self.unexplained)}"]
        out += [str(difference) for difference in self.unexplained[:MAX_EXAMPLES]]
        out += [f"whole and byte by byte differ: {raw!r}" for raw in self.split_mismatches]
        return out


def run(seed: int, seconds: float | None = None, count: int | None = None) -> Report:
    """Compare the parsers on generated inputs until ``seconds`` pass or ``count`` are done."""
    report = Report()
    deadline = None if seconds is None else time.monotonic() + seconds
    for raw in inputs(random.Random(seed)):
        if count is not None and report.inputs >= count:
            break
        if deadline is not None and time.monotonic() > deadline:
            break
        report.inputs += 1
        ours = evserver_verdict(raw)
        if report.inputs % SPLIT_CHECK_EVERY == 0:
            pieces = [raw[at : at + 1] for at in range(len(raw))]
            if evserver_verdict(raw, pieces) != ours:
                report.split_mismatches.append(raw)
        agreed = True
        for judge, verdict_of in PARSERS.items():
            difference = compare(judge, raw, ours, verdict_of(raw))
            if difference is None:
                continue
            agreed = False
            known = explain(difference)
            report.kinds[f"{judge} {difference.kind}"] += 1
            if known is None:
                report.unexplained.append(difference)
            else:
                report.known[f"{judge}: {known.name}"] += 1
        report.agreed += agreed
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to run")
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed (replays)")
    args = parser.parse_args(argv)
    report = run(args.seed, seconds=args.seconds)
    print("\n".join(report.lines()))
    return 1 if report.unexplained or report.split_mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
