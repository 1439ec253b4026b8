"""Where two verdicts first part, as one kind of difference.

What this module knows: the order in which two :class:`Verdict` are compared (message by message,
attribute by attribute, then how each input ended) and the names of the kinds of difference.
What it must not know: why a difference exists (``known.py`` says that).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.differential.verdicts import CLOSES, COMPLETE, INCOMPLETE, REFUSED, Verdict

FRAMING_ATTRIBUTES = ("body", "end")
"""A difference in these is a difference in framing: where a body or a message ends."""

ATTRIBUTES = ("method", "target", "version", "headers", *FRAMING_ATTRIBUTES)


@dataclass(frozen=True)
class Difference:
    """How evserver's reading of ``raw`` differs from ``judge``'s, at message ``index``.

    ``kind`` is ``reading:<attribute>`` (both read message ``index``, differently), or
    ``<ours>/<theirs>`` with the two outcomes at that message (``refused/message`` means evserver
    refused where the judge read a message)."""

    judge: str
    kind: str
    index: int
    raw: bytes
    ours: Verdict
    theirs: Verdict

    @property
    def framing(self) -> bool:
        return self.kind.removeprefix("reading:") in FRAMING_ATTRIBUTES or (
            "message" in self.kind and INCOMPLETE in self.kind
        )

    def __str__(self) -> str:
        return (f"{self.judge}: {self.kind} at message {self.index} of {self.raw!r}\n"
                f" evserver:\n{self.ours}\n {self.judge}:\n{self.theirs}")


def _state_at(verdict: Verdict, index: int) -> str:
    """What the parser did at message ``index``: read it, or how the input ended before it."""
    return "message" if index < len(verdict.messages) else verdict.outcome


def compare(judge: str, raw: bytes, ours: Verdict, theirs: Verdict) -> Difference | None:
    """The first difference between the two verdicts, or None when they agree."""
    for index, (mine, other) in enumerate(zip(ours.messages, theirs.messages, strict=False)):
        for attribute in ATTRIBUTES:
            if getattr(mine, attribute) != getattr(other, attribute):
                return Difference(judge, f"reading:{attribute}", index, raw, ours, theirs)
    index = min(len(ours.messages), len(theirs.messages))
    mine, other = _state_at(ours, index), _state_at(theirs, index)
    if CLOSES in (mine, other):
        return None  # reading stopped after a message one of them does not persist
    if mine == other or ({mine, other} <= {COMPLETE, INCOMPLETE} and _only_line_breaks(raw, ours)):
        return None
    return Difference(judge, f"{mine}/{other}", index, raw, ours, theirs)


def _only_line_breaks(raw: bytes, ours: Verdict) -> bool:
    """After the last message only CR and LF: an idle connection to one, a started one to another
    (RFC 9112 2.2 lets a server skip empty lines before a request)."""
    end = ours.messages[-1].end if ours.messages else 0
    return not raw[end:].strip(b"\r\n")


__all__ = ["REFUSED", "Difference", "compare"]
