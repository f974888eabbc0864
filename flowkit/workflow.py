"""Workflows of scripts, written in YAML (or JSON) instead of Python.

```yaml
name: nightly                      # default: the file's name
params: {date: "2026-11-25"}       # run parameters and their defaults: $FLOWKIT_PARAM_DATE
defaults: {retries: 1, timeout: 600}
pools: {db: 2}
steps:
  extract: python extract.py       # a string is the command
  load:
    run: ["psql", "-f", "load.sql"]   # a list runs without a shell
    depends_on: [extract]
    pool: db
```

Each step is a shell step (see :mod:`flowkit.shell`). Commands run in the workflow file's folder
unless ``cwd`` says otherwise (relative to that folder). Every error names the file, the line and
the step, and says what is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from .dsl import DEFAULTABLE
from .errors import ExtraUnavailableError, FlowDefinitionError, suggest
from .flow import Flow

__all__ = ["WorkflowError", "load_workflow"]

TOP_KEYS = ("name", "description", "params", "defaults", "pools", "steps")
STEP_KEYS = (
    "run",
    "depends_on",
    "cwd",
    "env",
    "timeout",
    "retries",
    "backoff",
    "trigger",
    "cache",
    "cache_ttl",
    "pool",
    "cpus",
    "memory",
    "isolate",
    "description",
)


class WorkflowError(FlowDefinitionError):
    """A workflow file is invalid: names the file, the line when known, and the fix."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path, self.line = path, line
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


def load_workflow(path: Path) -> Flow:
    """Read a ``.yaml`` / ``.yml`` / ``.json`` workflow and build its Flow.

    Raises:
        WorkflowError: the file does not parse, or describes an invalid workflow.
        ExtraUnavailableError: a YAML file, and PyYAML is not installed.
    """
    text = path.read_text(encoding="utf-8")
    data, lines = _parse(path, text)
    if not isinstance(data, Mapping):
        raise WorkflowError(path, 1, "a workflow is a mapping with a 'steps' key")
    _check_keys(path, lines.get(("",), 1), "the workflow", data, TOP_KEYS)
    steps = data.get("steps")
    if not isinstance(steps, Mapping) or not steps:
        raise WorkflowError(path, lines.get(("steps",)), "'steps' must map step names to commands")
    params = data.get("params") or {}
    if not isinstance(params, Mapping):
        raise WorkflowError(path, lines.get(("params",)), "'params' must map names to defaults")
    defaults = _mapping(path, lines, data, "defaults")
    bad_default = next((k for k in defaults if k not in DEFAULTABLE), None)
    if bad_default is not None:
        raise WorkflowError(
            path,
            lines.get(("defaults",)),
            f"defaults cannot set {bad_default!r}; they can set {', '.join(sorted(DEFAULTABLE))}",
        )
    name = str(data.get("name") or path.stem)
    try:
        flow = Flow(name, defaults=defaults, pools=_mapping(path, lines, data, "pools"))
    except FlowDefinitionError as exc:
        raise WorkflowError(path, 1, str(exc)) from None
    folder = path.resolve().parent
    for step_name, spec in steps.items():
        line = lines.get(("steps", str(step_name)))
        if isinstance(spec, (str, list)):
            spec = {"run": spec}
        if not isinstance(spec, Mapping):
            raise WorkflowError(
                path, line, f"step {step_name!r}: give a command, or a mapping with 'run'"
            )
        _check_keys(path, line, f"step {step_name!r}", spec, STEP_KEYS)
        if "run" not in spec:
            raise WorkflowError(path, line, f"step {step_name!r} has no 'run' command")
        options = {k: v for k, v in spec.items() if k not in ("run", "cwd", "env", "description")}
        depends = options.pop("depends_on", [])
        if isinstance(depends, str):
            depends = [depends]
        cwd = str(folder / str(spec["cwd"])) if spec.get("cwd") else str(folder)
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        try:
            flow.shell(
                str(step_name),
                _command(path, line, step_name, spec["run"]),
                depends_on=depends,
                params=dict(params),
                cwd=cwd,
                env=env,
                **options,
            )
        except FlowDefinitionError as exc:
            raise WorkflowError(path, line, str(exc)) from None
    try:
        flow.graph()  # unknown dependencies and cycles, reported with the file
    except FlowDefinitionError as exc:
        raise WorkflowError(path, None, str(exc)) from None
    return flow


def _command(path: Path, line: int | None, step: Any, run: Any) -> str | list[str]:
    if isinstance(run, str) and run.strip():
        return run
    if isinstance(run, list) and run and all(isinstance(x, (str, int, float)) for x in run):
        return [str(x) for x in run]
    raise WorkflowError(
        path, line, f"step {step!r}: 'run' must be a command string or a list of arguments"
    )


def _mapping(
    path: Path, lines: Mapping[tuple[str, ...], int], data: Mapping[str, Any], key: str
) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, Mapping):
        raise WorkflowError(path, lines.get((key,)), f"{key!r} must be a mapping")
    return dict(value)


def _check_keys(
    path: Path, line: int | None, what: str, data: Mapping[str, Any], allowed: tuple[str, ...]
) -> None:
    for key in data:
        if key not in allowed:
            close = suggest(str(key), allowed)
            hint = f" Did you mean {close!r}?" if close else ""
            raise WorkflowError(
                path, line, f"{what}: unknown key {key!r}.{hint} Accepted: {', '.join(allowed)}"
            )


def _parse(path: Path, text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """The document, and the line of each top-level key and step (for messages)."""
    if path.suffix == ".json":
        try:
            return orjson.loads(text), {}
        except orjson.JSONDecodeError as exc:
            at = text.count("\n", 0, exc.pos) + 1
            raise WorkflowError(path, at, f"not valid JSON: {exc.msg}") from None
    try:
        import yaml
    except ImportError:
        raise ExtraUnavailableError("YAML workflows", "yaml", "PyYAML") from None
    _check_depth(path, text, yaml)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line: int | None = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise WorkflowError(path, line, f"not valid YAML: {problem}") from None
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(str(key.value),)] = key.start_mark.line + 1
            if key.value == "steps" and isinstance(value, yaml.MappingNode):
                for step_key, _ in value.value:
                    lines[("steps", str(step_key.value))] = step_key.start_mark.line + 1
    return data, lines


#: Deeper YAML is refused before it is built: PyYAML builds documents recursively.
MAX_DEPTH = 64


def _check_depth(path: Path, text: str, yaml: Any) -> None:
    """Refuse a document nested deeper than MAX_DEPTH (the event scan itself does not recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise WorkflowError(
                        path,
                        event.start_mark.line + 1,
                        f"nested more than {MAX_DEPTH} levels deep; a workflow needs a few",
                    )
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return  # reported with its line by the parse that follows
