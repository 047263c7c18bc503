"""The import graph of the project's packages: no cycles (counting imports inside functions, which
must not hide one) and imports that point down the layers (docs/DESIGN.md, "Layering")."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures import ROOT

PACKAGES = ("tgd", "pipeline", "trainers", "serving", "cluster")
COMPOSITION_ROOT = {"tgd.cli", "tgd.stages"}  # they import the stages; nothing imports them


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imported(name: str, path: Path, node: ast.AST) -> list[str]:
    """Dotted names an import statement can load (``from a import b`` may load the module ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its body (top level, functions, classes).
    A package's ``__init__`` run by importing one of its modules is not counted as an import of it."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _imported(name, path, node):
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_imports_inside_functions():
    graph = import_graph()
    assert "trainers.raytrain" in graph["trainers.distill.loop"]  # imported inside train_on_ray
    assert "trainers.distill.fit" in graph["trainers.distill.loop"]  # top level
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    graph = import_graph()
    wrong = []
    for mod, targets in graph.items():
        for t in targets:
            top, target_top = mod.split(".")[0], t.split(".")[0]
            if top == "pipeline" and target_top in ("trainers", "serving"):
                wrong.append(f"{mod} -> {t} (pipeline/ never imports trainers/ or serving/)")
            if top == "trainers" and target_top == "serving":
                wrong.append(f"{mod} -> {t} (trainers/ never imports serving/)")
            if t in COMPOSITION_ROOT and mod not in COMPOSITION_ROOT:
                wrong.append(f"{mod} -> {t} (only the composition root imports tgd.cli / tgd.stages)")
    assert wrong == []
