"""tools/statediagram.py: its diagrams are the code's tables, edge for edge, and it renders or
says what to install.

The DOT text is read back here with a parser of its own (not the tool's), and compared with
``evserver.http.parser.TRANSITIONS`` and ``evserver.drivers.evented.LIFE_STATES``/``LIFE_MOVES``;
a changed table must change the diagram.
"""

from __future__ import annotations

import html
import re
import shutil
import struct
from pathlib import Path

import pytest

from evserver.drivers import evented
from evserver.http.parser import TRANSITIONS, State
from tools import statediagram

_EDGE = re.compile(r'^(\w+|"(?:[^"\\]|\\.)*") -> (\w+|"(?:[^"\\]|\\.)*")'
                   r'(?: \[label=("(?:[^"\\]|\\.)*"|\w+)[^\]]*\])?;$', re.MULTILINE)
_NODE = re.compile(r'^("(?:[^"\\]|\\.)*") \[label=<(.*)>(?:, [^\]]*)?\];$', re.MULTILINE)


def unquote(text: str) -> str:
    """A DOT ID or string as text: quotes off, escapes undone, ``\\n`` read as a space."""
    if not text.startswith('"'):
        return text
    return re.sub(r"\\(.)", lambda m: " " if m.group(1) == "n" else m.group(1), text[1:-1])


def edges(dot: str) -> set[tuple[str, str, str]]:
    """``(from, to, label)`` for every edge between two real states (not the start marker)."""
    found = set()
    for start, end, label in _EDGE.findall(dot):
        start, end = unquote(start), unquote(end)
        if not start.startswith("__"):
            found.add((start, end, unquote(label) if label else ""))
    return found


def nodes(dot: str) -> dict[str, str]:
    """Each state's HTML label as plain text: tags read as spaces, entities undone."""
    return {unquote(name): " ".join(html.unescape(re.sub(r"<[^>]*>", " ", label)).split())
            for name, label in _NODE.findall(dot)}


def test_the_parser_diagram_is_the_transition_table() -> None:
    dot = statediagram.parser_dot()
    expected = {(state.name, target.name, cause)
                for state, moves in TRANSITIONS.items() for target, cause in moves.items()}
    assert edges(dot) == expected
    drawn = nodes(dot)
    assert set(drawn) == {state.name for state in State}
    assert "waiting for a chunk-size line" in drawn["CHUNK_SIZE"]  # the comment in the code
    assert '__start -> "HEAD";' in dot


def test_a_changed_parser_table_changes_the_diagram(monkeypatch: pytest.MonkeyPatch) -> None:
    before = statediagram.parser_dot()
    monkeypatch.setitem(TRANSITIONS[State.BODY], State.CLOSED, "a new move")
    after = statediagram.parser_dot()
    assert edges(after) - edges(before) == {("BODY", "CLOSED", "a new move")}
    monkeypatch.setitem(TRANSITIONS, State.END, {})
    assert ("END", "HEAD", "END_OF_MESSAGE") not in edges(statediagram.parser_dot())


def test_the_connection_diagram_is_the_life_table() -> None:
    dot = statediagram.connection_dot()
    assert edges(dot) == set(evented.LIFE_MOVES)
    drawn = nodes(dot)
    assert set(drawn) == set(evented.LIFE_STATES)
    for name, (deadline, holds) in evented.LIFE_STATES.items():
        assert " ".join(holds.split()) in drawn[name]
        if deadline is not None:
            assert f"{deadline} timeout" in drawn[name]
    assert "--header-timeout, 10 s" in drawn["receiving"]
    assert "10\u00a0s" in dot  # a number and its unit are never wrapped apart
    assert '"closed" [label=' in dot and "peripheries=2" in dot.split('"closed" [label=')[1]


def test_a_changed_life_table_changes_the_diagram(monkeypatch: pytest.MonkeyPatch) -> None:
    moves = (*evented.LIFE_MOVES[1:], ("lingering", "idle", "a new move"))
    monkeypatch.setattr(evented, "LIFE_MOVES", moves)
    assert edges(statediagram.connection_dot()) == set(moves)
    states = dict(evented.LIFE_STATES, paused=("idle", "a new meaning"))
    monkeypatch.setattr(evented, "LIFE_STATES", states)
    assert "a new meaning" in nodes(statediagram.connection_dot())["paused"]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_writes_dot_files_and_renders_them_with_graphviz(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str],
                                                        ) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    assert statediagram.main(["-o", str(tmp_path / "out")]) == 0
    for name in ("parser-states", "connection-life"):
        assert (tmp_path / "out" / f"{name}.dot").read_text().startswith("digraph ")
        width, height = png_size(tmp_path / "out" / f"{name}.png")
        assert width > 400 and height > 300
    assert capsys.readouterr().err == ""


def test_without_graphviz_it_writes_dot_and_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(statediagram, "DOT_PROGRAM", "no-such-dot-program")
    assert statediagram.main(["-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["connection-life.dot",
                                                          "parser-states.dot"]
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "apt-get install graphviz" in error[0]


@pytest.mark.parametrize("args", [["--format", "gif"], ["--no-such-option"], ["extra"]])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        statediagram.main(args)
    assert exit_info.value.code == 2
