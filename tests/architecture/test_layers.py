"""The import graph of `workers/` and `service/`, read from the source (nothing is imported):
no import from a lower layer to a higher one, no cycle between packages nor between modules at
import time, and `service` never reaches the CLI or the model code (DESIGN.md, "Layout")."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Top to bottom; a module may import its own layer's package or any layer below. Packages
#: sharing a layer are independent of each other.
LAYERS: list[set[str]] = [
    {"workers.cli"},
    {"service", "workers.live"},
    {"workers.queue"},
    {"workers.notify"},
    {"workers.evaluation"},
    {"workers.scoring", "workers.report"},
    {"workers.store", "workers.scenes", "workers.caption", "workers.sources"},
    {"workers.media"},
    {"workers.net"},
    {"workers.domain"},
    {"workers.config", "workers.hashing", "workers.int8_store", "workers.diskcache"},
    {"workers.errors"},
]
#: The API process stays small: no command line, no model, no task bodies.
SERVICE_NEVER = ("workers.cli", "workers.scoring", "workers.caption", "workers.queue.tasks")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(imported module, at module level)], TYPE_CHECKING imports left out."""
    out: dict[str, list[tuple[str, bool]]] = {}
    for pkg in ("workers", "service"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            mod = _module(path)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
            found = []
            for node in ast.walk(tree):
                if _in_type_checking(node, parents):
                    continue
                top = parents.get(node) is tree
                if isinstance(node, ast.Import):
                    found += [(a.name, top) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.append((node.module, top))
                    # `from workers.caption import cues` imports the module workers.caption.cues
                    found += [(f"{node.module}.{a.name}", top) for a in node.names]
            out[mod] = [(m, t) for m, t in found if m.split(".")[0] in ("workers", "service")]
    return out


def _known(imports: dict[str, list[tuple[str, bool]]]) -> dict[str, list[tuple[str, bool]]]:
    return {m: [(i, t) for i, t in deps if i in imports] for m, deps in imports.items()}


def _layer(mod: str) -> tuple[int, str] | None:
    for i, layer in enumerate(LAYERS):
        for pkg in layer:
            if mod == pkg or mod.startswith(pkg + "."):
                return i, pkg
    return None


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    bad = []
    for mod, deps in _known(_imports()).items():
        here = _layer(mod)
        for dep, _top in deps:
            there = _layer(dep)
            if here is None or there is None or here[1] == there[1]:
                continue
            if there[0] < here[0] or (there[0] == here[0]):
                bad.append(f"{mod} -> {dep}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(set(bad)))


def test_service_never_imports_the_cli_or_the_models() -> None:
    bad = [
        f"{mod} -> {dep}"
        for mod, deps in _imports().items()
        if mod.startswith("service")
        for dep, _top in deps
        if dep.startswith(SERVICE_NEVER)
    ]
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_cycle_between_modules_at_import_time() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, deps in _known(_imports()).items():
        for dep, top in deps:
            # A package imports its own modules by name; that is not a cycle of its parts.
            if top and dep != mod and not dep.startswith(mod + "."):
                graph[mod].add(dep)
    assert _cycles(graph) == []


def test_no_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, deps in _known(_imports()).items():
        here = _layer(mod)
        for dep, _top in deps:
            there = _layer(dep)
            if here and there and here[1] != there[1]:
                graph[here[1]].add(there[1])
    assert _cycles(graph) == []


def test_every_module_has_a_layer() -> None:
    """A new top-level module must be placed in LAYERS, or the checks above skip it."""
    tops = ("workers", "service")
    unplaced = sorted(m for m in _imports() if m not in tops and _layer(m) is None)
    assert unplaced == [], f"add these to LAYERS (DESIGN.md, 'Layout'): {unplaced}"
