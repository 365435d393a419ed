"""The import graph of every gossiplab module (read with ast, function-level imports included)
against the layers declared in docs/architecture.md: no module imports from a layer above its own,
and no import cycle exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gossiplab"
DOC = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, source: str | None = None) -> set[str]:
    """gossiplab modules ``name`` imports anywhere in its file (top level or inside functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {m: imports(m) for m in MODULES}


def declared_layers() -> list[tuple[str, list[str]]]:
    """(layer name, module patterns) from the layer table of docs/architecture.md, top first."""
    text = DOC.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.match(r"\d+\b", cells[0]):
            layers.append((cells[0], re.findall(r"`([^`]+)`", cells[1])))
    return layers


def layer_of(module: str, layers) -> int | None:
    rel = module.removeprefix("gossiplab").lstrip(".").replace(".", "/")
    for i, (_, patterns) in enumerate(layers):
        for p in patterns:
            if p.endswith("/") and (rel + "/").startswith(p):
                return i
            if p.endswith(".py") and (rel + ".py" == p or (rel == "" and p == "__init__.py")):
                return i
    return None


def test_the_doc_declares_layers_that_cover_every_module():
    layers = declared_layers()
    assert len(layers) >= 8, layers
    missing = [m for m in MODULES if layer_of(m, layers) is None]
    assert not missing, f"modules in no layer of docs/architecture.md: {missing}"


def test_no_module_imports_from_a_layer_above_its_own():
    layers = declared_layers()
    up = [f"{m} ({layers[layer_of(m, layers)][0]}) imports {d} ({layers[layer_of(d, layers)][0]})"
          for m, deps in GRAPH.items() for d in deps if layer_of(d, layers) < layer_of(m, layers)]
    assert not up, "imports that point up:\n" + "\n".join(sorted(up))


def test_there_is_no_import_cycle():
    g = nx.DiGraph([(m, d) for m, deps in GRAPH.items() for d in deps])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, cycles


@pytest.mark.parametrize("source, expected", [
    ("from gossiplab.engine import simulator\n", {"gossiplab.engine", "gossiplab.engine.simulator"}),
    ("def f():\n    from gossiplab.setup import prepare\n", {"gossiplab.setup"}),
    ("import gossiplab.topology as t\n", {"gossiplab.topology"}),
    ("from . import checkpointing\n", {"gossiplab.run", "gossiplab.run.checkpointing"}),
])
def test_the_checker_sees_every_kind_of_import(source, expected):
    assert imports("gossiplab.run.loop", source) == expected


def test_an_upward_import_would_be_caught():
    layers = declared_layers()
    assert layer_of("gossiplab.run.loop", layers) < layer_of("gossiplab.engine.base", layers)
    assert layer_of("gossiplab.setup", layers) < layer_of("gossiplab.algorithms", layers)
    assert layer_of("gossiplab.algorithms", layers) < layer_of("gossiplab.gossip", layers)
    assert layer_of("gossiplab.gossip", layers) < layer_of("gossiplab.topology", layers)
