"""The layout shows the architecture: layers, arrows that only point down, no cycles.

Reads every module of ``relay/`` with :mod:`ast` (imports at the top, inside functions
and under ``TYPE_CHECKING`` alike) and checks the rules ``docs/architecture.md`` draws:

- each package is a layer with a rank; a module imports only from its own package or
  from a package of a lower rank (two packages of the same rank never import each
  other);
- the core is pure: no I/O library, no event loop, no clock of its own;
- no import cycle between modules;
- no module is over 500 lines.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "relay"

# Lowest first. ``relay`` itself (the package's __init__) only holds the version.
RANKS: dict[str, int] = {
    "relay": 0,
    "relay.core": 1,
    "relay.exmail": 2,
    "relay.emulator": 2,
    "relay.exmail2": 3,
    "relay.journal": 2,
    "relay.sinks": 3,
    "relay.runtime": 4,
    "relay.gateway": 5,
    "relay.ops": 6,
    "relay.app": 7,
    "relay.cli": 8,
    "relay.__main__": 9,
}
# Libraries that do I/O or keep time: the pure core never imports them.
IMPURE = {
    "aiohttp", "aio_pika", "aiormq", "asyncio", "sqlite3", "socket", "prometheus_client",
    "os", "pathlib", "time", "subprocess", "threading", "concurrent", "logging",
}  # fmt: skip
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


KNOWN = set(modules())


def imports_of(name: str, path: Path) -> Iterator[str]:
    """Every module ``name`` imports, absolute, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from relay.cli import api`` depends on the module relay.cli.api; a name
            # that is not a module (a class, a function) is a dependency on ``target``.
            names = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [n for n in names if n in KNOWN]
            yield from submodules
            if len(submodules) < len(names):
                yield target


def layer_of(name: str) -> str:
    for layer in sorted(RANKS, key=len, reverse=True):
        if name == layer or name.startswith(layer + "."):
            return layer
    raise AssertionError(f"{name} belongs to no layer: add its package to RANKS")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {target for target in imports_of(name, path) if target in known and target != name}
        for name, path in known.items()
    }


def test_every_module_belongs_to_a_layer() -> None:
    found = {layer_of(name) for name in modules()}
    assert found == set(RANKS), set(RANKS) - found


def test_imports_only_point_down() -> None:
    up = []
    for name, targets in graph().items():
        mine = layer_of(name)
        for target in targets:
            theirs = layer_of(target)
            if theirs == mine or theirs == "relay":
                continue
            if RANKS[theirs] >= RANKS[mine]:
                up.append(f"{name} -> {target}")
    assert up == []


def test_the_exmail_client_uses_only_the_backoff_of_the_core() -> None:
    g = graph()
    used = {t for n, ts in g.items() if layer_of(n) == "relay.exmail" for t in ts}
    assert {t for t in used if not t.startswith("relay.exmail")} <= {
        "relay.core",
        "relay.core.backoff",
    }


def test_the_core_is_pure() -> None:
    known = modules()
    impure = [
        f"{name} imports {target}"
        for name, path in known.items()
        if layer_of(name) == "relay.core"
        for target in imports_of(name, path)
        if target.split(".")[0] in IMPURE
    ]
    assert impure == []


def test_no_import_cycle() -> None:
    sorter = graphlib.TopologicalSorter(graph())
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_no_module_is_over_500_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_checks_see_real_arrows() -> None:
    """Guards the checker itself: known edges are found, so an empty graph cannot pass."""
    g = graph()
    assert "relay.core.delivery" in g["relay.runtime.drainer"]
    assert "relay.journal" in g["relay.runtime.drainer"]
    assert "relay.cli.run" in g["relay.cli.main"]
    assert "relay.emulator._model" in g["relay.emulator._state"]  # a relative import
    assert layer_of("relay.app.wiring") == "relay.app"
