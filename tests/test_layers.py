"""flowkit's modules import one way: each only from layers below its own."""

from __future__ import annotations

import ast
from pathlib import Path

import flowkit

PACKAGE = Path(flowkit.__file__).parent

#: Bottom to top. A module may import only from layers below its own.
LAYERS: list[set[str]] = [
    {
        "errors",
        "result",
        "keys",
        "policy",
        "context",
        "capture",
        "usage",
        "gcpause",
        "interrupt",
        "readyset",
        "timers",
    },
    {"events", "dsl", "codec", "isolate", "shell", "executors", "rules", "options"},
    {"graph", "store", "limits", "listeners"},
    {"fanout", "views", "otel", "progress", "notify", "dispatch"},
    {"resume"},
    {"ledger", "decide"},
    {"engine", "planner"},
    {"flow"},
    {"report", "workflow", "schedule"},
    {"loader"},
    {"cli"},
    {"__init__", "__main__"},
]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # `from . import capture` (modules), not `from . import __version__`
                found.update(a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists())
    return found


def test_every_module_has_a_layer() -> None:
    placed = set().union(*LAYERS)
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - placed == set(), "place new modules in LAYERS"
    assert placed - modules == set(), "LAYERS names modules that do not exist"


def test_modules_import_only_from_lower_layers() -> None:
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    wrong = [
        f"{path.stem} (layer {rank[path.stem]}) imports {dep} (layer {rank[dep]})"
        for path in PACKAGE.glob("*.py")
        for dep in _imports(path)
        if rank[dep] >= rank[path.stem]
    ]
    assert wrong == []
