"""State diagrams drawn from evserver's own tables: Graphviz DOT, and PNGs when Graphviz is here.

What this tool knows: the two tables that describe a state machine in the code, and the DOT
language. What it must not know: anything typed by hand about those machines. Each diagram is
drawn from its table at run time, so it cannot drift from the code (a test compares them):

- ``parser-states``: the request parser (``evserver.http.parser``): its states (``State``, each
  with the comment beside it in the code) and its moves with their causes (``TRANSITIONS``).
- ``connection-life``: one connection in the evented driver (``evserver.drivers.evented``): its
  states with the deadline that applies in each (``LIFE_STATES``) and its moves
  (``LIFE_MOVES``); the deadlines' lengths are the command line's defaults.

Unlike the other tools, which treat a server as a command and a port, this one reads the code:
it imports the two modules that hold the tables. Usage::

    python tools/statediagram.py [-o DIR] [--format png|svg]

It writes ``DIR/parser-states.dot`` and ``DIR/connection-life.dot`` (``DIR`` defaults to
``results/diagrams``) and renders each with Graphviz's ``dot``. Without Graphviz it says in one
line what to install and exits 0 (the DOT files are written); 2 means bad arguments, 1 a failed
render.
"""

from __future__ import annotations

import argparse
import html
import inspect
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from evserver import config
from evserver.drivers import evented
from evserver.drivers.policy import HEADER, IDLE, LINGER_SECONDS, SEND
from evserver.http import parser

FORMATS = ("png", "svg")

DOT_PROGRAM = "dot"

INSTALL_HINT = ("Graphviz's 'dot' is not installed, so only DOT files were written; install it "
                "to render them (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
                "graphviz)")

NOTE_WIDTH = 34
"""Characters per line of the text under a state's name: keeps the boxes narrow and readable."""

DEADLINE_WIDTH = 40
"""Characters per line of a connection state's deadline: each fits on one line."""

STYLE = [
    'graph [fontname="Helvetica", fontsize=11, nodesep=0.5, ranksep=0.6, pad=0.3];',
    'node [shape=box, style="rounded,filled", fillcolor="#f4f6fb", fontname="Helvetica", '
    'fontsize=11];',
    'edge [fontname="Helvetica", fontsize=9, color="#44546a", fontcolor="#1f3a68"];',
]
"""What both diagrams share: Helvetica, rounded boxes, quiet edge colours."""

NOTE_COLOUR = "#333333"
DEADLINE_COLOUR = "#9a3412"
"""The deadline line of a connection state, in a warm colour: it is what ends the state."""

ENDING_EDGE = 'style=dashed, color="#8a94a6", fontcolor="#5a6478"'
"""Moves into a final state, drawn lighter so the living part of the diagram stands out."""

DEADLINES = {
    IDLE: f"idle timeout: --idle-timeout, {config.DEFAULT_IDLE_TIMEOUT:g}\u00a0s",
    HEADER: f"header timeout: --header-timeout, {config.DEFAULT_HEADER_TIMEOUT:g}\u00a0s",
    SEND: f"send timeout: --send-timeout, {config.DEFAULT_SEND_TIMEOUT:g}\u00a0s",
    evented.LINGER: f"linger timeout: LINGER_SECONDS, {LINGER_SECONDS:g}\u00a0s",
}
"""How a deadline kind of ``LIFE_STATES`` is shown: which option sets it, and its default."""

_MEMBER_COMMENT = re.compile(r"^\s*(\w+)\s*=\s*\d+\s*#\s*(.+?)\s*$", re.MULTILINE)


def quoted(text: str) -> str:
    """A DOT string: double quotes, with quotes and backslashes escaped, newlines as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def node_label(name: str, *notes: tuple[str, str, int]) -> str:
    """A Graphviz HTML label: the state's name in bold, then each ``(text, colour, width)`` note
    in smaller type, wrapped (HTML, not a plain string, so the name stands out from its notes)."""
    parts = [f"<B>{html.escape(name)}</B>"]
    for text, colour, width in notes:
        lines = "<BR/>".join(html.escape(line) for line in wrapped(text, width).split("\n"))
        parts.append(f'<FONT POINT-SIZE="9" COLOR="{colour}">{lines}</FONT>')
    return "<" + "<BR/>".join(parts) + ">"


def wrapped(text: str, width: int = NOTE_WIDTH) -> str:
    """``text`` in lines of at most ``width`` characters (an option name is never cut)."""
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False))


def state_comments() -> dict[str, str]:
    """The comment beside each member of ``parser.State`` in its source (empty if none)."""
    try:
        source = inspect.getsource(parser.State)
    except (OSError, TypeError):  # no source (a frozen build): names only
        return {}
    return dict(_MEMBER_COMMENT.findall(source))


def parser_dot(transitions: Mapping[parser.State, Mapping[parser.State, str]] | None = None,
               ) -> str:
    """The parser's states and moves (``parser.TRANSITIONS`` unless given) as a DOT digraph."""
    table = parser.TRANSITIONS if transitions is None else transitions
    comments = state_comments()
    first = next(iter(parser.State))
    lines = ["digraph parser_states {", *STYLE, "rankdir=TB;",
             'labelloc=t; label="The request parser\'s states (evserver.http.parser: State, '
             'TRANSITIONS)";',
             '__start [shape=point, width=0.12, label=""];']
    for state in parser.State:
        note = comments.get(state.name, "")
        label = node_label(state.name, *([(note, NOTE_COLOUR, NOTE_WIDTH)] if note else []))
        final = ", peripheries=2" if not table.get(state) else ""
        lines.append(f"{quoted(state.name)} [label={label}{final}];")
    lines.append(f"__start -> {quoted(first.name)};")
    for state, moves in table.items():
        for target, cause in moves.items():
            lines.append(f"{quoted(state.name)} -> {quoted(target.name)} "
                         f"[label={quoted(wrapped(cause, 20))}];")
    lines.append('__error [shape=note, style=filled, fillcolor="#fff4e5", label='
                 + quoted("from any state: an error\n(400, 413, 431, 501, 505...)\n"
                          "ends the parser for good") + "];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def connection_dot(states: Mapping[str, tuple[str | None, str]] | None = None,
                   moves: Sequence[tuple[str, str, str]] | None = None) -> str:
    """One evented connection's life (``LIFE_STATES`` and ``LIFE_MOVES`` unless given)."""
    table = evented.LIFE_STATES if states is None else states
    edges = evented.LIFE_MOVES if moves is None else moves
    lines = ["digraph connection_life {", *STYLE, "rankdir=TB;",
             'labelloc=t; label="One connection in the evented driver '
             '(evserver.drivers.evented: LIFE_STATES, LIFE_MOVES)";',
             '__accept [shape=point, width=0.12, label=""];']
    for name, (deadline, holds) in table.items():
        shown = DEADLINES.get(deadline, deadline) if deadline else "no deadline"
        label = node_label(name, (holds, NOTE_COLOUR, NOTE_WIDTH),
                           (str(shown), DEADLINE_COLOUR, DEADLINE_WIDTH))
        final = ", peripheries=2" if not any(start == name for start, _, _ in edges) else ""
        lines.append(f"{quoted(name)} [label={label}{final}];")
    first = next(iter(table))
    lines.append(f"__accept -> {quoted(first)} [label=accepted];")
    finals = {name for name in table if not any(start == name for start, _, _ in edges)}
    for start, end, cause in edges:
        ending = ", " + ENDING_EDGE if end in finals else ""
        lines.append(f"{quoted(start)} -> {quoted(end)} "
                     f"[label={quoted(wrapped(cause, 22))}{ending}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


DIAGRAMS: dict[str, Callable[[], str]] = {"parser-states": parser_dot,
                                          "connection-life": connection_dot}
"""File name (without suffix) -> what draws it."""


def render(dot_file: Path, fmt: str) -> Path:
    """Run Graphviz on ``dot_file``; the image's path. Raises CalledProcessError on failure."""
    image = dot_file.with_suffix(f".{fmt}")
    subprocess.run([DOT_PROGRAM, f"-T{fmt}", "-Gdpi=110" if fmt == "png" else "-Gdpi=72",
                    "-o", str(image), str(dot_file)], check=True, capture_output=True,
                   text=True, timeout=60)
    return image


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    arguments.add_argument("-o", "--output", default="results/diagrams", metavar="DIR",
                           help="folder for the DOT files and images "
                           "(default: results/diagrams)")
    arguments.add_argument("--format", choices=FORMATS, default="png",
                           help="image format Graphviz renders (default png)")
    args = arguments.parse_args(argv)
    folder = Path(args.output)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        arguments.error(f"cannot create {folder}: {error.strerror or error}")
    written = []
    for name, draw in DIAGRAMS.items():
        path = folder / f"{name}.dot"
        path.write_text(draw())
        written.append(path)
    for path in written:
        print(path)
    if shutil.which(DOT_PROGRAM) is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 0
    for path in written:
        try:
            print(render(path, args.format))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
            detail = getattr(error, "stderr", "") or error
            print(f"statediagram: dot failed on {path}: {str(detail).strip()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
