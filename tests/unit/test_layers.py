"""The tree's architecture, held: every module found by walking the tree, no import cycle, and
no import that climbs a layer (docs/architecture.md draws the layers). Read from the source
with ``ast``: nothing is imported, so this runs in a second."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Lowest first: a module may import its own layer and the layers before it, never one after.
LAYERS: list[tuple[str, ...]] = [
    ("engine.run",),
    ("engine.data",),
    ("engine.ranks",),
    ("engine.train",),
    ("engine.session",),
    ("engine.options", "engine.headless", "engine.cli", "engine.__main__", "engine", "engine.sweep"),
    ("tui.format", "tui.series", "tui.state", "tui.keys", "tui.telemetry", "tui.view_settings", "tui.sweep_view"),
    ("tui.widgets",),
    ("tui.screens",),
    ("tui",),
]


def modules() -> dict[str, Path]:
    """Every module of engine/ and tui/, by dotted name (a package by its ``__init__``)."""
    found = {}
    for package in ("engine", "tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def layer_of(module: str) -> int:
    """The index of the most specific layer prefix that holds ``module``."""
    best, best_len = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, wherever the import stands: one deferred into a
    function is still a dependency (it only hides a cycle until that function runs)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_every_module_is_in_a_layer() -> None:
    unplaced = [m for m in modules() if layer_of(m) < 0]
    assert not unplaced, f"modules in no layer (add them to LAYERS and docs/architecture.md): {unplaced}"


def test_no_import_climbs_a_layer() -> None:
    known = modules()
    climbs = [
        f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
        for name, path in known.items()
        for target in sorted(imports_of(name, path, known))
        if layer_of(target) > layer_of(name)
        and not (name == "engine" or target == "engine")  # the package itself holds only its version
    ]
    assert not climbs, "\n".join(climbs)


def test_no_import_cycle() -> None:
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
