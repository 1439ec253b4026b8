"""README.rst is the user's contract: its commands must be the ones CI runs, and it must render."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.rst").read_text()
CI_SCRIPT = (ROOT / ".ci" / "run").read_text()


def literal_commands() -> list[str]:
    """Every indented line of a literal block that follows a ``::`` paragraph."""
    return re.findall(r"::\n\n    (\S.*)\n", README)


def test_readme_gives_install_run_and_test_commands() -> None:
    commands = literal_commands()
    assert commands[:3] == [
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'",
        ".venv/bin/evserver",
        ".venv/bin/python -m pytest",
    ]


def test_ci_runs_exactly_the_readme_commands() -> None:
    install, _run, test = literal_commands()[:3]
    ci_lines = [line.strip() for line in CI_SCRIPT.splitlines()]
    assert install in ci_lines
    assert test in ci_lines


def test_readme_renders_without_warnings() -> None:
    docutils_core = pytest.importorskip("docutils.core")
    import io

    errors = io.StringIO()
    docutils_core.publish_string(README, writer="html", settings_overrides={
        "warning_stream": errors, "report_level": 2, "halt_level": 5})
    assert errors.getvalue() == ""
