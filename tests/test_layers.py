"""flowkit's modules import one way: each only from layers below its own."""

from __future__ import annotations

import ast
import subprocess
import sys
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
    {"orphans", "objects", "fnshape"},
    {"ship", "cost", "procpool"},
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
    {"runlock"},
    {
        "graph",
        "store",
        "limits",
        "listeners",
        "wf_tasks",
        "attempts",
        "config",
        "serializers",
        "streaming",
    },
    {
        "fanout",
        "views",
        "otel",
        "progress",
        "notify",
        "dispatch",
        "wf_build",
        "reclaim",
        "definition",
        "shared",
        "stepview",
    },
    {"resume", "wf_notify", "wf_kinds", "listening"},
    {"ledger", "decide", "inspect_json"},
    {"outcomes", "planner"},
    {"expiry", "runfolder"},
    {"engine"},
    {"flow"},
    {"report", "workflow", "schedule", "cancel"},
    {"loader", "cmd_schedule", "cmd_project", "inspect_cmds"},
    {"cmd_run", "cmd_runs"},
    {"serve"},  # a package: the dashboard, imported only by `flowkit serve`
    {"cli"},
    {"__init__", "__main__"},
]


def _imports(path: Path) -> set[str]:
    """The top-level flowkit modules ``path`` imports (a subpackage's own modules excluded)."""
    return _imported(path.read_text(), in_subpackage=path.parent != PACKAGE)


def _imported(source: str, *, in_subpackage: bool) -> set[str]:
    """The top-level flowkit modules (or subpackages) that ``source`` imports: relatively or
    absolutely (``from flowkit.x import y``, ``import flowkit.x``), at module level or inside a
    function. ``import flowkit`` is the public namespace, ``__init__``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _in_flowkit(a.name):
                    found.add(a.name[len("flowkit.") :].split(".")[0] or "__init__")
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            if not _in_flowkit(node.module or ""):
                continue
            base = (node.module or "")[len("flowkit.") :]
        elif node.level == 1 + in_subpackage:
            base = node.module or ""
        else:  # `from .pages import x` in a subpackage: its own module
            continue
        if base:
            found.add(base.split(".")[0])
        else:  # `from . import capture` (modules), not `from . import __version__`
            found.update(a.name for a in node.names if _is_module(a.name))
    return found


def _in_flowkit(dotted: str) -> bool:
    return dotted == "flowkit" or dotted.startswith("flowkit.")


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def _modules() -> dict[str, list[Path]]:
    """Each top-level module or subpackage, with its source files."""
    out = {p.stem: [p] for p in PACKAGE.glob("*.py")}
    for init in PACKAGE.glob("*/__init__.py"):
        out[init.parent.name] = sorted(init.parent.glob("*.py"))
    return out


def test_imports_are_found_however_they_are_written() -> None:
    source = """
from .store import RunStore
from . import capture, __version__
from . import notify
from flowkit.engine import Engine
import flowkit.report.html
import flowkit

def lazy():
    from .serve.app import app
    from flowkit import cli
    import flowkit.dsl as dsl
"""
    assert _imported(source, in_subpackage=False) == {
        "store", "capture", "notify", "engine", "report", "__init__", "serve", "cli", "dsl",
    }  # fmt: skip
    nested = "from .pages import page\nfrom ..flow import Flow\nfrom flowkit.cli import main\n"
    assert _imported(nested, in_subpackage=True) == {"flow", "cli"}


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


def test_import_flowkit_loads_no_heavy_module_it_does_not_use() -> None:
    # each of these is imported where it is needed (a process pool, an async step, a lock, a
    # cycle to report, a workflow file, the live view): a plain run of a Python flow needs none
    heavy = ["networkx", "multiprocessing", "asyncio", "concurrent.futures.process", "filelock"]
    heavy += ["rich", "yaml"]
    code = f"import sys, flowkit; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
