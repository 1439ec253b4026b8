"""The layers drawn in evserver/__init__.py, checked: each imports only what it may know about.

Walks every module of the package with ``ast`` and compares its imports with the rules below, so
the picture in ``evserver/__init__.py`` stays true as the code grows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "evserver"

# layer prefix -> module prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "evserver.http": ("socket", "ssl", "selectors", "threading", "os", "io", "logging",
                      "evserver.bodies", "evserver.static", "evserver.protocol", "evserver.net",
                      "evserver.event", "evserver.drivers", "evserver.servers", "evserver.cli"),
    # Inside it: the phrase table and the grammar know nothing of the rest; the cold checks
    # know the grammar and the errors, never the parser's states or the response side.
    "evserver.http.status": ("evserver",),
    "evserver.http.grammar": ("evserver.http.parser", "evserver.http.checks",
                              "evserver.http.errors", "evserver.http.events",
                              "evserver.http.response", "evserver.http.errorpage"),
    "evserver.http.checks": ("evserver.http.parser", "evserver.http.response",
                             "evserver.http.errorpage"),
    "evserver.bodies": ("socket", "ssl", "selectors", "threading", "evserver.http",
                        "evserver.static", "evserver.protocol", "evserver.net", "evserver.event",
                        "evserver.drivers", "evserver.servers"),
    # The file handler: files and HTTP semantics; handed parsed requests, never a socket.
    "evserver.static": ("socket", "ssl", "selectors", "threading", "evserver.http.parser",
                        "evserver.protocol", "evserver.net", "evserver.event",
                        "evserver.drivers", "evserver.servers",
                        "evserver.cli", "evserver.config", "evserver.accesslog", "evserver.stats",
                        "evserver.statspage"),
    # Inside it, the handler is on top, and the pure modules never touch the filesystem.
    "evserver.static.paths": ("os", "io", "stat", "evserver.bodies", "evserver.static.handler",
                              "evserver.static.cache", "evserver.static.conditions",
                              "evserver.static.ranges", "evserver.static.listing",
                              "evserver.static.media_types", "evserver.static.encodings",
                              "evserver.static.headers"),
    "evserver.static.encodings": ("os", "io", "stat", "evserver.bodies", "evserver.static"),
    "evserver.static.headers": ("os", "io", "stat", "evserver.bodies", "evserver.static"),
    "evserver.static.conditions": ("os", "io", "stat", "evserver.bodies", "evserver.static"),
    "evserver.static.ranges": ("os", "io", "stat", "evserver.static.handler",
                               "evserver.static.paths", "evserver.static.listing",
                               "evserver.static.media_types", "evserver.static.encodings",
                               "evserver.static.headers"),
    "evserver.static.media_types": ("os", "io", "evserver.bodies", "evserver.http",
                                    "evserver.static"),
    "evserver.static.refusals": ("os", "io", "evserver.bodies", "evserver.http",
                                 "evserver.static"),
    "evserver.static.listing": ("evserver.bodies", "evserver.http", "evserver.static"),
    "evserver.static.cache": ("evserver.static.handler", "evserver.static.paths",
                              "evserver.static.conditions", "evserver.static.ranges",
                              "evserver.static.listing", "evserver.static.refusals",
                              "evserver.static.headers", "evserver.static.media_types"),
    "evserver.statspage": ("socket", "selectors", "threading", "evserver.net", "evserver.event",
                           "evserver.servers"),
    "evserver.healthpage": ("socket", "ssl", "selectors", "threading", "evserver.http",
                            "evserver.net", "evserver.event", "evserver.servers"),
    # TLS is below the drivers: the conversation and the file handler never hear of it.
    "evserver.protocol": ("socket", "ssl", "selectors", "threading", "evserver.static",
                          "evserver.net", "evserver.event", "evserver.drivers",
                          "evserver.servers"),
    "evserver.event": ("threading", "evserver.http", "evserver.protocol", "evserver.static",
                       "evserver.net", "evserver.drivers", "evserver.servers"),
    "evserver.net": ("threading", "selectors", "evserver.http", "evserver.protocol",
                     "evserver.static", "evserver.event", "evserver.drivers",
                     "evserver.servers"),
    # A driver moves bytes for a protocol: it never parses, serves files, or runs threads.
    "evserver.drivers": ("threading", "evserver.http", "evserver.static", "evserver.servers",
                         "evserver.cli"),
    "evserver.servers": ("evserver.http.parser", "evserver.cli"),
    # The workers' shared board: memory and numbers, never a process, a socket or a request.
    "evserver.servers.fleet": ("socket", "selectors", "signal", "threading", "evserver.http",
                               "evserver.net", "evserver.event", "evserver.drivers",
                               "evserver.protocol", "evserver.static"),
    "evserver.accesslog": ("threading", "socket", "selectors"),
    "evserver.stats": ("threading", "socket", "selectors", "evserver.http"),
}

# Only the concurrency layer may use threads.
THREADING_ALLOWED = ("evserver.servers",)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_module_imports_respect_layers(path: Path) -> None:
    module = module_name(path)
    imported = imports_of(path)
    for layer, forbidden in FORBIDDEN.items():
        if _within(module, layer):
            bad = sorted(n for n in imported for f in forbidden if _within(n, f))
            assert not bad, f"{module} ({layer} layer) must not import {bad}"
    if not any(_within(module, allowed) for allowed in THREADING_ALLOWED):
        assert "threading" not in imported, f"{module} imports threading outside servers/"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_module_opens_with_an_essay(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring) >= 40, f"{module_name(path)} needs a module docstring"


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""x"""\nimport socket\nfrom evserver.net import transport\n')
    assert {"socket", "evserver.net", "evserver.net.transport"} <= imports_of(sample)
