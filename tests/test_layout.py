"""The package's shape (docs/development.md, "The map"): no import circle anywhere in drs/, imports
inside functions counted; stage modules imported by nobody (drs/cli.py loads them by name from its
command table); models import only models and errors. Read from the modules' syntax trees."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from drs.cli import COMMANDS
from helpers import REPO

PACKAGE = REPO / "drs"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The drs modules ``name`` imports, at the top or inside functions (``from a import b``: a.b when
    that is a module, else a)."""
    path = MODULES[name]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_graph_is_read():
    """The reader finds imports of every form (a guard against a check that passes on an empty graph)."""
    assert "drs.errors" in GRAPH["drs.models.vgg"] or "drs.models.drs" in GRAPH["drs.models.vgg"]
    assert "drs.inference.maps" in GRAPH["drs.stages.extract_maps"]
    assert sum(map(len, GRAPH.values())) > 200


def test_no_import_circle():
    """Depth-first search for a back edge; the message names one circle."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                circle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_stages_are_leaves_loaded_by_the_command_table():
    stages = {name for name in MODULES if name.startswith("drs.stages.") and name != "drs.stages"}
    importers = {s: sorted(m for m, deps in GRAPH.items() if s in deps) for s in stages}
    assert {s: i for s, i in importers.items() if i} == {}
    # every stage module is a command, and every command's module exists and has the stage interface
    assert {module for module, _ in COMMANDS.values()} == stages
    for module, _ in COMMANDS.values():
        stage = importlib.import_module(module)
        assert callable(stage.add_arguments) and callable(stage.run), module
        assert stage.__doc__, module


def test_models_import_only_models_and_errors():
    wrong = {
        name: sorted(d for d in deps if not (d == "drs.errors" or d.startswith("drs.models")))
        for name, deps in GRAPH.items()
        if name.startswith("drs.models")
    }
    assert {name: deps for name, deps in wrong.items() if deps} == {}
