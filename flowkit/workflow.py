"""Workflows of scripts, written in YAML (or JSON) instead of Python.

```yaml
name: Daily ETL
params: {date: "2026-11-25"}          # $FLOWKIT_PARAM_DATE, {{ params.date }}
defaults: {retries: 1}
tasks:                                # or steps:
  extract:
    script: ./etl/extract.py          # .py runs with flowkit's Python; others run directly
    timeout_minutes: 5
  transform:
    script: ./etl/transform.py
    depends_on: [extract]
    matrix: {batch: [0, 1, 2, 3]}
    parallelism: 2
    environment: {BATCH: "{{ matrix.batch }}"}
  alert:
    command: ["./alert.sh"]
    depends_on: [transform]
    condition: "{{ transform.failed }}"
```

The file becomes a :class:`~flowkit.Flow` of the same steps a ``pipeline.py`` makes, so every
command works on it. Every key is in one table (:mod:`flowkit.wf_schema`); the file is checked in
full before anything runs, and *all* its problems are reported at once, each with ``file:line``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .errors import FlowDefinitionError, UsageError
from .events import ListenerLike
from .flow import Flow, check_cron
from .result import RunResult
from .wf_build import IDENT, Scope, line_of, where
from .wf_expr import ExprError, parse_template
from .wf_kinds import TaskBuilder
from .wf_notify import EVENTS, channel_keys, make_notifier
from .wf_schema import TASK_KEYS, TOP_KEYS, canonical
from .wf_yaml import Lined, LinedList, YamlLimitError, read_yaml

__all__ = ["WorkflowError", "WorkflowFlow", "load_workflow"]

_TOP = canonical(TOP_KEYS)
_TASK = canonical(TASK_KEYS)
_DEFAULTABLE = {k.name for k in TASK_KEYS if k.defaultable}
_TASK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class WorkflowError(FlowDefinitionError):
    """A workflow file is invalid. ``problems``: every (line, message) found, in line order."""

    def __init__(
        self, path: Path, line: int | None, message: str, problems: list[tuple[int | None, str]]
    ) -> None:
        self.path, self.line = path, line
        self.problems = problems or [(line, message)]
        text = "\n".join(f"{where(path, ln)}: {msg}" for ln, msg in self.problems)
        if len(self.problems) > 1:
            text = f"{len(self.problems)} problems in {path}:\n{text}"
        super().__init__(text)

    @classmethod
    def one(cls, path: Path, line: int | None, message: str) -> WorkflowError:
        return cls(path, line, message, [(line, message)])


class WorkflowFlow(Flow):
    """A Flow read from a workflow file; it carries the file's notifications and parallelism."""

    def __init__(
        self, name: str, *, path: Path, pools: Mapping[str, int], schedule: str | None = None
    ) -> None:
        super().__init__(name, pools=pools, schedule=schedule)
        self.path = path
        self.version: str | None = None
        self.description = ""
        self.default_workers = 1
        self.hints: dict[str, dict[str, Any]] = {}
        self._notifications: list[tuple[dict[str, Any], tuple[str, ...], str]] = []

    def notifiers(self) -> list[Any]:
        """The notifiers of the ``notifications:`` block, templates rendered now.

        Raises:
            UsageError: an ``{{ env.X }}`` is unset, or an entry is invalid.
        """
        out = []
        for entry, on, place in self._notifications:
            try:
                rendered = _render_entry(entry)
                out.append(make_notifier(rendered, on, place))
            except (ExprError, ValueError) as exc:
                text = str(exc)
                raise UsageError(text if text.startswith(place) else f"{place}: {text}") from None
        return out

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        workers: int | None = None,
        listeners: Iterable[ListenerLike] = (),
        **options: Any,
    ) -> RunResult:
        """:meth:`Flow.run`, with the file's notifiers, and as many workers as its largest
        ``parallelism`` unless ``workers`` is given."""
        notifiers = self.notifiers()
        return super().run(
            params,
            workers=workers or self.default_workers,
            listeners=[*listeners, *notifiers],
            **options,
        )


def _render_entry(value: Any) -> Any:
    if isinstance(value, str):
        return parse_template(value).render({"env": _env_names()})
    if isinstance(value, list):
        return [_render_entry(v) for v in value]
    if isinstance(value, dict):
        return {k: _render_entry(v) for k, v in value.items()}
    return value


def _env_names() -> Any:
    from .wf_tasks import EnvView

    return EnvView()


# --- reading ------------------------------------------------------------------------------------


def load_workflow(path: Path) -> WorkflowFlow:
    """Read a ``.yaml`` / ``.yml`` / ``.json`` workflow and build its Flow.

    Raises:
        WorkflowError: the file does not parse, or describes an invalid workflow (every
            problem found, each with its line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError.one(path, None, f"cannot read the workflow: {exc}") from None
    if path.suffix == ".json":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            at = text.count("\n", 0, exc.pos) + 1
            raise WorkflowError.one(path, at, f"not valid JSON: {exc.msg}") from None
    else:
        try:
            data = read_yaml(text)
        except YamlLimitError as exc:
            raise WorkflowError.one(path, exc.line, f"not valid YAML: {exc}") from None
    return _Loader(path, data).load()


_line = line_of


def _own_line(box: Any) -> int | None:
    return box.line if isinstance(box, (Lined, LinedList)) else None


class _Loader(Scope):
    """Reads the document: top-level keys, defaults, tasks, notifications."""

    def __init__(self, path: Path, data: Any) -> None:
        self.data = data
        super().__init__(path)
        self.notes: list[tuple[dict[str, Any], tuple[str, ...], str]] = []

    def check(self) -> None:
        if self.problems:
            found = sorted(self.problems, key=lambda p: p[0] or 0)
            raise WorkflowError(self.path, found[0][0], found[0][1], found)

    # --- the document ---------------------------------------------------------------------------

    def load(self) -> WorkflowFlow:
        doc = self.data
        if isinstance(doc, Mapping) and "workflow" in doc:
            if len(doc) > 1:
                others = ", ".join(str(k) for k in doc if k != "workflow")
                self.fail(_line(doc, "workflow"), f"put {others} inside 'workflow:', not beside")
            doc = doc["workflow"]
        if not isinstance(doc, Mapping):
            raise WorkflowError.one(
                self.path, _own_line(doc) or 1, "a workflow is a mapping with a 'tasks' key"
            )
        top = self.keys(doc, _TOP, "the workflow")
        self.check()
        name = top.get("name", (None, self.path.stem))[1]
        if not isinstance(name, (str, int, float)) or not str(name).strip():
            self.fail(top["name"][0], "'name' must be a non-empty string")
            name = self.path.stem
        self.params = self.mapping(top, "params")
        for p in self.params:
            if not isinstance(p, str) or not IDENT.match(p):
                self.fail(_line(top["params"][1], p), f"param name {p!r} must be an identifier")
        pools = self.mapping(top, "pools")
        for pool, size in pools.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                self.fail(
                    _line(pools, pool), f"pool {pool!r}: size {size!r}; a pool needs an int >= 1"
                )
        defaults = self.mapping(top, "defaults")
        for key in defaults:
            spelled = _TASK.get(key)
            if spelled is None or spelled not in _DEFAULTABLE:
                hint = self.hint(str(key), _DEFAULTABLE)
                self.fail(
                    _line(top["defaults"][1], key),
                    f"defaults cannot set {key!r}.{hint} They can set "
                    f"{', '.join(sorted(_DEFAULTABLE))}",
                )
        self.default_opts = {
            _TASK[k]: (_line(defaults, k), v)
            for k, v in defaults.items()
            if _TASK.get(k) in _DEFAULTABLE
        }
        if "cache" in top and "cache" not in self.default_opts:  # `cache: shared` at the top
            self.default_opts["cache"] = top["cache"]
        env_default = self.default_opts.get("environment")
        if env_default is not None and not isinstance(env_default[1], Mapping):
            self.fail(env_default[0], "defaults.environment must map names to values")
        if "tasks" not in top:
            self.fail(_own_line(doc) or 1, "the workflow has no 'tasks' (or 'steps') mapping")
        tasks = top.get("tasks", (None, {}))[1]
        if "tasks" in top and (not isinstance(tasks, Mapping) or not tasks):
            self.fail(top["tasks"][0], "'tasks' must map task names to tasks")
            tasks = {}
        self.noun = "step" if _spelled(doc, "steps") else "task"
        self.check()
        self.pools = _pools(pools)
        self.flow_name = str(name)
        self.names = [str(t) for t in tasks]
        specs = []
        for task, spec in tasks.items():
            got = self.task(str(task), spec, _line(tasks, task), defaults)
            if got is not None:
                specs.append(got)
        if "notifications" in top:
            self.notifications(top["notifications"])
        self.check_cycles()
        self.check()
        schedule = self.schedule(top)
        self.check()
        flow = WorkflowFlow(str(name), path=self.path, pools=self.pools, schedule=schedule)
        version = top.get("version", (None, None))[1]
        flow.version = None if version is None else str(version)
        flow.description = str(top.get("description", (None, ""))[1] or "")
        flow.hints, flow.default_workers = self.hints, self.default_workers
        flow._notifications = self.notes
        for step, line in specs:
            try:
                flow.add(step)
            except FlowDefinitionError as exc:
                self.fail(line, str(exc))
        self.check()
        try:
            flow.graph()  # cycles, reported with the file
        except FlowDefinitionError as exc:
            raise WorkflowError.one(self.path, None, str(exc)) from None
        return flow

    def keys(
        self, box: Mapping[Any, Any], table: Mapping[str, str], what: str
    ) -> dict[str, tuple[int | None, Any]]:
        """``{canonical key: (line, value)}``; unknown and doubled keys are problems."""
        out: dict[str, tuple[int | None, Any]] = {}
        for key, value in box.items():
            line = _line(box, key)
            name = table.get(key) if isinstance(key, str) else None
            if name is None:
                hint = self.hint(str(key), table)
                self.fail(
                    line,
                    f"{what}: unknown key {key!r}.{hint} Accepted: "
                    f"{', '.join(dict.fromkeys(table.values()))}",
                )
                continue
            if name in out:
                self.fail(line, f"{what}: {key!r} and another spelling of {name!r} both given")
                continue
            out[name] = (line, value)
        return out

    def schedule(self, top: Mapping[str, tuple[int | None, Any]]) -> str | None:
        """``schedule: '0 2 * * *'``: checked as Flow(schedule=) checks it, with the line."""
        if "schedule" not in top:
            return None
        line, value = top["schedule"]
        try:
            return check_cron(self.path.stem, value if value is None else str(value))
        except FlowDefinitionError as exc:
            self.fail(line, str(exc).replace(f"flow {self.path.stem!r}: schedule=", "schedule: "))
            return None

    def mapping(self, top: Mapping[str, tuple[int | None, Any]], key: str) -> Mapping[Any, Any]:
        if key not in top:
            return {}
        line, value = top[key]
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(line, f"{key!r} must be a mapping")
            return {}
        return value

    # --- one task -------------------------------------------------------------------------------

    def task(
        self, name: str, spec: Any, line: int | None, defaults: Mapping[Any, Any]
    ) -> tuple[Any, int | None] | None:
        what = f"{self.noun} {name!r}"
        if name in ("matrix", "params", "env"):
            self.fail(line, f"{what}: the name is reserved (templates read {name}.X); rename it")
        elif not _TASK_NAME.match(name):
            self.fail(line, f"{what}: task names use letters, digits and _ . - only")
        if name in self.params:
            self.fail(line, f"{what} has the name of a param; rename one of them")
        if isinstance(spec, (str, list)):
            spec = {"command": spec}
        if not isinstance(spec, Mapping):
            self.fail(line, f"{what}: give a command, or a mapping with 'script' or 'command'")
            return None
        self.unknown_keys = [k for k in spec if k not in _TASK]
        given = self.keys(spec, _TASK, what)
        opts = dict(self.default_opts)
        if "fn" in given:  # defaults for processes do not apply to a Python function
            for key in ("environment", "working_dir"):
                opts.pop(key, None)
        base_env = opts.get("environment", (None, None))[1]
        own_env = given.get("environment", (None, None))[1]
        if isinstance(base_env, Mapping) and isinstance(own_env, Mapping):
            merged = Lined(_line(own_env, None) if isinstance(own_env, Lined) else None)
            for source in (base_env, own_env):  # the task's own values win
                for k, v in source.items():
                    merged[k] = v
                    merged.lines[k] = _line(source, k) or 0
            given["environment"] = (given["environment"][0], merged)
        opts.update(given)
        built: tuple[Any, int | None] | None = TaskBuilder(self, name, what, line, opts).build()
        return built

    # --- notifications --------------------------------------------------------------------------

    def notifications(self, entry: tuple[int | None, Any]) -> None:
        line, block = entry
        if block is None:
            return
        if not isinstance(block, Mapping):
            self.fail(line, "'notifications' maps on_success / on_failure / on_finish to lists")
            return
        kinds = channel_keys()
        for event, items in block.items():
            at = _line(block, event)
            if event not in EVENTS:
                hint = self.hint(str(event), EVENTS)
                self.fail(
                    at, f"notifications: unknown key {event!r}.{hint} Accepted: {', '.join(EVENTS)}"
                )
                continue
            if not isinstance(items, list):
                self.fail(at, f"notifications.{event} must be a list of channels")
                continue
            for i, item in enumerate(items):
                label = f"notifications.{event}[{i}]"
                il = _line(items, i)
                if not isinstance(item, Mapping) or str(item.get("type")) not in kinds:
                    typ = item.get("type") if isinstance(item, Mapping) else None
                    self.fail(
                        il, f"{label}: 'type' must be one of {', '.join(kinds)} (got {typ!r})"
                    )
                    continue
                accepted = kinds[str(item["type"])]
                for key, value in item.items():
                    if key not in accepted:
                        hint = self.hint(str(key), accepted)
                        self.fail(
                            _line(item, key) or il,
                            f"{label}: {item['type']} has no key "
                            f"{key!r}.{hint} Accepted: {', '.join(accepted)}",
                        )
                    self.entry_templates(value, _line(item, key) or il, label)
                on = EVENTS[str(event)]
                self.notes.append((dict(item), on, f"{where(self.path, il)}: {label}"))

    def entry_templates(self, value: Any, line: int | None, label: str) -> None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str):
                continue
            try:
                refs = parse_template(v).refs
            except ExprError as exc:
                self.fail(line, f"{label}: {exc}")
                continue
            for root, key in refs:
                if root != "env" or key is None:
                    self.fail(line, f"{label}: notifications may read env.NAME only, not {root}")


def _spelled(doc: Mapping[Any, Any], key: str) -> bool:
    return key in doc


def _pools(pools: Mapping[Any, Any]) -> dict[str, int]:
    return {str(k): v for k, v in pools.items()}
