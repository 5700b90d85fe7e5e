"""The journal package has no import cycle and, outside itself, imports only the core."""

from __future__ import annotations

import ast
from pathlib import Path

import relay.journal
from tests.emulator.test_emulator_imports import find_cycle, import_graph

ROOT = Path(relay.journal.__file__).parent


def test_the_journal_package_has_no_import_cycle() -> None:
    graph = import_graph(ROOT, "relay.journal")
    # the parse sees the edges it must see, so an empty graph cannot pass for an acyclic one
    assert "relay.journal._writer" in graph["relay.journal._journal"]
    assert "relay.journal._admin" in graph["relay.journal._journal"]
    assert "relay.journal._schema" in graph["relay.journal._writer"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def test_the_journal_imports_nothing_of_the_relay_but_the_core() -> None:
    outside: set[str] = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            outside.update(n for n in names if n.startswith("relay.") or n == "relay")
    assert outside, "the parse found the journal's own imports"
    layers = {n for n in outside if not n.startswith("relay.journal")}
    assert layers and all(n.startswith("relay.core.") for n in layers), layers


def test_every_journal_module_is_short_and_says_its_job() -> None:
    for path in ROOT.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) <= 500, path.name
        assert ast.get_docstring(ast.parse(source)), f"{path.name} has no module docstring"
