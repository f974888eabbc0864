"""Finding a flow from a command-line target: ``module:attr`` or ``path/to/file.py:attr``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType

from .errors import FlowDefinitionError, UsageError
from .flow import Flow

__all__ = ["load_flow"]


def load_flow(target: str) -> Flow:
    """Import the target and return its Flow.

    ``pipeline:daily`` imports module ``pipeline`` (the working directory is on the path);
    ``nightly.yaml`` (``.yml``, ``.json``) reads a workflow of scripts (:mod:`flowkit.workflow`);
    ``path/to/pipeline.py:daily`` loads that file (its folder goes on the path, so it can import
    its neighbours). Without ``:attr``, the module's only Flow is used.

    Raises:
        UsageError: the module, the file or the attribute cannot be found or imported.
        FlowDefinitionError: raised by the module itself while defining the flow.
    """
    spec, _, attr = target.partition(":")
    if not spec:
        raise UsageError(f"target {target!r} is empty; use module:flow or path/to/file.py:flow")
    if spec.endswith((".yaml", ".yml", ".json")):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"no such workflow file: {path}")
        from .workflow import load_workflow  # YAML and the workflow dialect: only for these

        return load_workflow(path)
    module = _import(spec)
    if attr:
        obj = getattr(module, attr, None)
        if not isinstance(obj, Flow):
            flows = _flows(module)
            found = ", ".join(sorted(flows)) or "none"
            what = "is not a Flow" if obj is not None else "does not exist"
            raise UsageError(f"{spec}:{attr} {what}. Flows in {spec}: {found}.")
        return obj
    flows = _flows(module)
    if len(flows) == 1:
        return next(iter(flows.values()))
    if not flows:
        hint = ""
        if spec in sys.stdlib_module_names:
            hint = (
                f" ({spec} is a module of the Python standard library, found before a file of "
                f"yours with that name: rename your file, e.g. to {spec}_flow.py)"
            )
        raise UsageError(f"{spec} defines no Flow; create one with flowkit.Flow('name'){hint}")
    raise UsageError(
        f"{spec} defines several flows ({', '.join(sorted(flows))}); "
        f"name one: {spec}:{sorted(flows)[0]}"
    )


def _library_module(name: str, existing: ModuleType | None) -> str | None:
    """What a module named ``name`` already is, if it must not be replaced: the standard
    library's, or an installed package's (flowkit's own dependencies among them)."""
    if name in sys.stdlib_module_names or name in sys.builtin_module_names:
        return "the Python standard library module"
    origin = getattr(existing, "__file__", None) if existing is not None else None
    if name == "flowkit" or (origin and str(Path(origin).resolve()).startswith(_LIB_DIRS)):
        return "the installed module"
    return None


_LIB_DIRS = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_paths().get(k) for k in ("stdlib", "purelib", "platlib")}
    if p
)


def _flows(module: ModuleType) -> dict[str, Flow]:
    return {k: v for k, v in vars(module).items() if isinstance(v, Flow)}


def _import(spec: str) -> ModuleType:
    is_file = spec.endswith(".py") or "/" in spec or "\\" in spec
    try:
        if is_file:
            return _import_file(Path(spec))
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(spec)
    except (FlowDefinitionError, UsageError):
        raise
    except ModuleNotFoundError as exc:
        if exc.name == spec or (exc.name and spec.startswith(exc.name + ".")):
            raise UsageError(
                f"cannot find module {spec!r} (run from the folder that holds it, or give a file "
                f"path like path/to/{spec.replace('.', '/')}.py)"
            ) from None
        raise UsageError(_import_failed(spec, exc)) from None
    except Exception as exc:
        raise UsageError(_import_failed(spec, exc)) from None


def _import_failed(spec: str, exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
    return f"importing {spec} failed: {type(exc).__name__}: {exc}\n{tb.rstrip()}"


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    path = path.resolve()
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path):
        return existing
    shadowed = _library_module(name, existing)
    if shadowed:
        raise UsageError(
            f"{path}: a pipeline file cannot have the name of {shadowed} {name!r}: loading it "
            f"would replace that module for flowkit and your steps. Rename the file, e.g. to "
            f"{name}_flow.py"
        )
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # registered before executing, so pickling its functions (process workers) finds it
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
