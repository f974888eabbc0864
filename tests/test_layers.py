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
        "readyset",
        "timers",
        "wf_yaml",
        "wf_schema",
        "wf_expr",
        "secret",
        "stopping",
        "pipes",
        "params",
        "remote",
        "cli_help",
    },
    {"orphans"},
    {"ship", "cost"},
    {"dask_executor"},
    {
        "events",
        "dsl",
        "codec",
        "records",
        "isolate",
        "shell",
        "executors",
        "rules",
        "interrupt",
        "options",
    },
    {"graph", "store", "limits", "listeners", "wf_tasks", "attempts", "config", "serializers"},
    {
        "fanout",
        "views",
        "otel",
        "progress",
        "notify",
        "dispatch",
        "wf_build",
        "reclaim",
        "stepview",
    },
    {"resume", "wf_notify", "wf_kinds"},
    {"ledger", "decide", "inspect_json"},
    {"outcomes", "planner"},
    {"engine"},
    {"flow"},
    {"report", "workflow", "schedule", "cancel"},
    {"loader", "cmd_schedule", "cmd_project", "inspect_cmds"},
    {"serve"},  # a package: the dashboard, imported only by `flowkit serve`
    {"cli"},
    {"__init__", "__main__"},
]


def _imports(path: Path) -> set[str]:
    """The top-level flowkit modules ``path`` imports (a subpackage's own modules excluded)."""
    level = 1 if path.parent == PACKAGE else 2  # files of a subpackage reach flowkit with `..`
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == level:
            if node.module:
                found.add(node.module.split(".")[0])
            else:  # `from . import capture` (modules), not `from . import __version__`
                found.update(a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists())
    return found


def _modules() -> dict[str, list[Path]]:
    """Each top-level module or subpackage, with its source files."""
    out = {p.stem: [p] for p in PACKAGE.glob("*.py")}
    for init in PACKAGE.glob("*/__init__.py"):
        out[init.parent.name] = sorted(init.parent.glob("*.py"))
    return out


def test_every_module_has_a_layer() -> None:
    placed = set().union(*LAYERS)
    modules = set(_modules())
    assert modules - placed == set(), "place new modules in LAYERS"
    assert placed - modules == set(), "LAYERS names modules that do not exist"


def test_modules_import_only_from_lower_layers() -> None:
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    wrong = [
        f"{name} (layer {rank[name]}) imports {dep} (layer {rank[dep]})"
        for name, paths in _modules().items()
        for path in paths
        for dep in _imports(path)
        if rank[dep] >= rank[name]
    ]
    assert wrong == []


def _absolute_flowkit_import(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] == "flowkit"
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "flowkit" for a in node.names)
    return False


def test_modules_import_flowkit_only_relatively() -> None:
    # `from flowkit.x import y` inside the package would slip past the layer check above
    absolute = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for paths in _modules().values()
        for path in paths
        for node in ast.walk(ast.parse(path.read_text()))
        if _absolute_flowkit_import(node)
    ]
    assert absolute == []
