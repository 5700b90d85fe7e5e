"""No import cycle inside relay.emulator.

Every import counts: at the top, inside functions and under ``if TYPE_CHECKING``. A
lazy or type-only import still means each module needs the other to be read, which is
the tangle this guards against. The graph is read from the source with ``ast``; nothing
is imported.
"""

from __future__ import annotations

import ast
import graphlib
import textwrap
from pathlib import Path

import pytest

import relay.emulator

Graph = dict[str, set[str]]


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Module name -> file, for every ``.py`` file of the package (sub-packages included)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement may load, most specific first per name."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(root: Path, package: str) -> Graph:
    """Module -> the modules of the same package it imports, anywhere in its source."""
    modules = _modules(root, package)
    graph: Graph = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            candidates = _imported(node, name, path.name == "__init__.py")
            if isinstance(node, ast.ImportFrom):
                # ``from pkg import sub`` counts as pkg.sub when that is a module, else as
                # pkg. The parents Python loads on the way (``from . import _x`` runs the
                # package's __init__ first) are not counted: they are loaded before any of
                # their modules, so every package would otherwise be one big cycle.
                names = [c for c in candidates[:-1] if c in modules] or candidates[-1:]
            else:
                names = candidates
            graph[name].update(n for n in names if n in modules and n != name)
    return graph


def find_cycle(graph: Graph) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_the_emulator_package_has_no_import_cycle() -> None:
    root = Path(relay.emulator.__file__).parent
    graph = import_graph(root, "relay.emulator")
    # the parse sees the edges it must see, so an empty graph cannot pass for an acyclic one
    assert "relay.emulator._control" in graph["relay.emulator._server"]
    assert "relay.emulator._directory" in graph["relay.emulator._state"]
    assert "relay.emulator._model" in graph["relay.emulator._directory"]
    assert "relay.emulator._http" in graph["relay.emulator._control"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


BACK_EDGES = {
    "top level": "from .a import A\n",
    "inside a function": "def f():\n    from .a import A\n    return A\n",
    "under TYPE_CHECKING": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n"
    ),
    "the module from its package": "from . import a\n",
    "absolute": "import pkg.a\n",
    "absolute from": "from pkg.a import A\n",
}


@pytest.mark.parametrize("back_edge", BACK_EDGES.values(), ids=BACK_EDGES.keys())
def test_a_cycle_is_found_however_the_import_is_written(tmp_path: Path, back_edge: str) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import B\nA = 1\n")
    (pkg / "b.py").write_text(textwrap.dedent(back_edge) + "B = 2\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.a"}
    assert set(find_cycle(graph) or ()) == {"pkg.a", "pkg.b"}


def test_imports_of_the_package_itself_and_of_other_packages(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import A\n")
    (pkg / "a.py").write_text("import json\nfrom . import VERSION\nfrom .sub import c\nA = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\nfrom ..a import A\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg", "pkg.sub.c"},
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a"},
    }
    assert find_cycle(graph) is not None  # pkg -> pkg.a -> pkg
    del graph["pkg.a"]
    assert find_cycle(graph) is None
