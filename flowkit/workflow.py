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

import dataclasses
import glob
import hashlib
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from .dsl import SPEC_ATTR, Step
from .errors import FlowDefinitionError, UsageError, suggest
from .events import ListenerLike
from .flow import Flow
from .keys import code_hash, digest
from .policy import Backoff, Trigger
from .result import RunResult
from .wf_expr import Expr, ExprError, Template, compile_condition, parse_template
from .wf_notify import EVENTS, channel_keys, make_notifier
from .wf_schema import HINTS, TASK_KEYS, TOP_KEYS, canonical
from .wf_tasks import OUTCOME_KEYS, STATUS_KEYS, Condition, FnTask, Names, ScriptTask
from .wf_yaml import Lined, LinedList, YamlLimitError, read_yaml

__all__ = ["WorkflowError", "WorkflowFlow", "load_workflow"]

_TOP = canonical(TOP_KEYS)
_TASK = canonical(TASK_KEYS)
_DEFAULTABLE = {k.name for k in TASK_KEYS if k.defaultable}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TASK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_KINDS = ("script", "command", "fn")


class WorkflowError(FlowDefinitionError):
    """A workflow file is invalid. ``problems``: every (line, message) found, in line order."""

    def __init__(
        self, path: Path, line: int | None, message: str, problems: list[tuple[int | None, str]]
    ) -> None:
        self.path, self.line = path, line
        self.problems = problems or [(line, message)]
        text = "\n".join(f"{_where(path, ln)}: {msg}" for ln, msg in self.problems)
        if len(self.problems) > 1:
            text = f"{len(self.problems)} problems in {path}:\n{text}"
        super().__init__(text)

    @classmethod
    def one(cls, path: Path, line: int | None, message: str) -> WorkflowError:
        return cls(path, line, message, [(line, message)])


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line else str(path)


class WorkflowFlow(Flow):
    """A Flow read from a workflow file; it carries the file's notifications and parallelism."""

    def __init__(self, name: str, *, path: Path, pools: Mapping[str, int]) -> None:
        super().__init__(name, pools=pools)
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
        for entry, on, where in self._notifications:
            try:
                rendered = _render_entry(entry)
                out.append(make_notifier(rendered, on, where))
            except (ExprError, ValueError) as exc:
                raise UsageError(f"{where}: {exc}") from None
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


def _line(box: Any, key: Any) -> int | None:
    if isinstance(box, (Lined, LinedList)):
        return box.line_of(key)
    return None


def _own_line(box: Any) -> int | None:
    return box.line if isinstance(box, (Lined, LinedList)) else None


class _Loader:
    def __init__(self, path: Path, data: Any) -> None:
        self.path, self.data = path, data
        self.folder = path.resolve().parent
        self.problems: list[tuple[int | None, str]] = []
        self._hashes: dict[str, str] = {}
        self.unknown_keys: list[Any] = []

    def fail(self, line: int | None, message: str) -> None:
        self.problems.append((line, message))

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
            if not isinstance(p, str) or not _IDENT.match(p):
                self.fail(_line(top["params"][1], p), f"param name {p!r} must be an identifier")
        pools = self.mapping(top, "pools")
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
        if "tasks" not in top:
            self.fail(_own_line(doc) or 1, "the workflow has no 'tasks' (or 'steps') mapping")
        tasks = top.get("tasks", (None, {}))[1]
        if "tasks" in top and (not isinstance(tasks, Mapping) or not tasks):
            self.fail(top["tasks"][0], "'tasks' must map task names to tasks")
            tasks = {}
        self.noun = "step" if _spelled(doc, "steps") else "task"
        self.check()
        flow = WorkflowFlow(str(name), path=self.path, pools=_pools(pools))
        version = top.get("version", (None, None))[1]
        flow.version = None if version is None else str(version)
        flow.description = str(top.get("description", (None, ""))[1] or "")
        self.names = [str(t) for t in tasks]
        self.flow = flow
        specs = []
        for task, spec in tasks.items():
            got = self.task(str(task), spec, _line(tasks, task), defaults)
            if got is not None:
                specs.append(got)
        if "notifications" in top:
            self.notifications(top["notifications"])
        self.check()
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

    def hint(self, key: str, known: Iterable[str]) -> str:
        meant = HINTS.get(key.lower())
        known = list(known)
        if meant is None or meant not in known:
            meant = suggest(key, known)
        return f" Did you mean {meant!r}?" if meant else ""

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

    def file_hash(self, pattern: str) -> str:
        """Content hash of the files matching ``pattern`` (relative to the workflow's folder)."""
        if pattern in self._hashes:
            return self._hashes[pattern]
        h = hashlib.blake2b(digest_size=8)
        base = str(self.folder)
        for f in sorted(glob.glob(os.path.join(base, pattern), recursive=True)):
            if os.path.isfile(f):
                h.update(os.path.relpath(f, base).encode() + b"\0")
                with open(f, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
        self._hashes[pattern] = result = h.hexdigest()
        return result

    # --- one task -------------------------------------------------------------------------------

    def task(
        self, name: str, spec: Any, line: int | None, defaults: Mapping[Any, Any]
    ) -> tuple[Any, int | None] | None:
        what = f"{self.noun} {name!r}"
        if not _TASK_NAME.match(name) or name in ("matrix", "params", "env"):
            self.fail(line, f"{what}: names use letters, digits, _ . - (and not matrix/params/env)")
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
        if "environment" in opts and "environment" in given:
            merged = {**(opts["environment"][1] or {}), **(given["environment"][1] or {})}
            given["environment"] = (given["environment"][0], merged)
        opts.update(given)
        return _TaskBuilder(self, name, what, line, opts).build()

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
                where = f"notifications.{event}[{i}]"
                il = _line(items, i)
                if not isinstance(item, Mapping) or item.get("type") not in kinds:
                    typ = item.get("type") if isinstance(item, Mapping) else None
                    self.fail(
                        il, f"{where}: 'type' must be one of {', '.join(kinds)} (got {typ!r})"
                    )
                    continue
                accepted = kinds[str(item["type"])]
                for key, value in item.items():
                    if key not in accepted:
                        hint = self.hint(str(key), accepted)
                        self.fail(
                            _line(item, key) or il,
                            f"{where}: {item['type']} has no key "
                            f"{key!r}.{hint} Accepted: {', '.join(accepted)}",
                        )
                    self.entry_templates(value, _line(item, key) or il, where)
                on = EVENTS[str(event)]
                self.flow._notifications.append(
                    (dict(item), on, f"{_where(self.path, il)}: {where}")
                )

    def entry_templates(self, value: Any, line: int | None, where: str) -> None:
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str):
                continue
            try:
                refs = parse_template(v).refs
            except ExprError as exc:
                self.fail(line, f"{where}: {exc}")
                continue
            for root, key in refs:
                if root != "env" or key is None:
                    self.fail(line, f"{where}: notifications may read env.NAME only, not {root}")


def _spelled(doc: Mapping[Any, Any], key: str) -> bool:
    return key in doc


def _pools(pools: Mapping[Any, Any]) -> dict[str, int]:
    return {str(k): v for k, v in pools.items()}


class _TaskBuilder:
    """Turns one task's keys into a Step (problems go to the loader)."""

    def __init__(
        self,
        loader: _Loader,
        name: str,
        what: str,
        line: int | None,
        opts: dict[str, tuple[int | None, Any]],
    ) -> None:
        self.ld, self.name, self.what, self.line, self.opts = loader, name, what, line, opts
        self.refs: set[tuple[str, str | None]] = set()
        self.cond_refs: set[tuple[str, str | None]] = set()
        self.unknown = [str(k) for k in loader.unknown_keys]

    def fail(self, key: str | None, message: str) -> None:
        line = self.opts[key][0] if key in self.opts else self.line
        self.ld.fail(line, f"{self.what}: {message}")

    def get(self, key: str, default: Any = None) -> Any:
        return self.opts[key][1] if key in self.opts else default

    def number(self, key: str, minimum: float = 0.0, strict: bool = True) -> float | None:
        v = self.get(key)
        if v is None:
            return None
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        if not ok or (v <= minimum if strict else v < minimum):
            rel = ">" if strict else ">="
            self.fail(key, f"{key}={v!r} is invalid: expected a number {rel} {minimum:g}")
            return None
        return float(v)

    def flag(self, key: str) -> bool | None:
        v = self.get(key)
        if v is not None and not isinstance(v, bool):
            self.fail(key, f"{key}={v!r} is invalid: expected true or false")
            return None
        return v

    def template(self, key: str, text: Any, line: int | None = None) -> Template:
        line = line or self.opts.get(key, (self.line,))[0]
        try:
            t = parse_template(text if isinstance(text, str) else str(text))
        except ExprError as exc:
            self.ld.fail(line, f"{self.what}: {key}: {exc}")
            return Template("")
        self.refs |= t.refs
        self.check_refs(t.refs, key, line)
        return t

    def build(self) -> tuple[Any, int | None] | None:
        kinds = [k for k in _KINDS if k in self.opts]
        misspelt = [k for k in self.unknown if HINTS.get(k) in _KINDS or suggest(k, _KINDS)]
        if not kinds and misspelt:
            return None  # the unknown key is reported with its suggestion
        if not kinds:
            self.ld.fail(
                self.line,
                f"{self.what} has no 'run' command: give it 'script', 'command' (or 'run') or 'fn'",
            )
            return None
        if len(kinds) > 1:
            self.fail(kinds[1], f"give one of {', '.join(kinds)}, not several")
            return None
        matrix = self.matrix()
        options = self.options(matrix)
        conditions = self.conditions()
        kind = kinds[0]
        depends = self.depends_on()
        fn, parts = self.fn_task() if kind == "fn" else self.script_task(kind, matrix)
        if fn is None:
            return None
        upstream = self.upstream()
        if isinstance(fn, FnTask):
            timeout = self.timeout()
            if timeout is not None:
                options["timeout"] = timeout
        reads_status = any(k in STATUS_KEYS for r, k in conditions[2] if r in upstream)
        trigger = options.get("trigger")
        if self.get("run_always"):
            if trigger not in (None, "always") and "trigger" in self.opts:
                self.fail("run_always", "run_always and trigger both given; keep one")
            options["trigger"] = "always"
        elif trigger is None and reads_status:
            options["trigger"] = Trigger.ALL_DONE.value  # it reads how its upstream ended
        runs_after = Trigger(options.get("trigger", "all_success")).runs_after_failure
        data = sorted(
            u for u in upstream | (set(depends) if runs_after else set()) if _IDENT.match(u)
        )
        names = Names(list(matrix), list(self.ld.params), sorted(upstream | set(data)))
        if isinstance(fn, FnTask):
            sig = _fn_signature(fn, self.ld.params, data)
        else:
            fn.names = names
            sig = names.signature(data, self.ld.params)
        fn.__signature__ = sig
        if conditions[0] is not None or conditions[1] is not None:
            options["when"] = Condition(conditions[0], conditions[1], names)
        version = "wf|" + "|".join([*parts, f"task={digest(fn_text(fn))}"])
        try:
            step = Step.of(
                fn,
                name=self.name,
                depends_on=sorted(set(depends) | upstream),
                code_version=version,
                **options,
            )
        except FlowDefinitionError as exc:
            self.ld.fail(self.line, str(exc))
            return None
        step = dataclasses.replace(step, location=_where(self.ld.path, self.line))
        setattr(fn, SPEC_ATTR, step)
        self.ld.flow.hints[self.name] = {
            k: self.get(k) for k in ("description", "disk_gb") if k in self.opts
        }
        return fn, self.line

    # --- parts ----------------------------------------------------------------------------------

    def matrix(self) -> dict[str, list[Any]]:
        m = self.get("matrix")
        if m is None:
            if "parallelism" in self.opts:
                self.number("parallelism", 1, strict=False)  # accepted; means nothing more
            return {}
        if not isinstance(m, Mapping) or not m:
            self.fail("matrix", "matrix must map names to lists of values")
            return {}
        out: dict[str, list[Any]] = {}
        for k, values in m.items():
            if not isinstance(k, str) or not _IDENT.match(k):
                self.fail("matrix", f"matrix key {k!r} must be an identifier")
            elif k in self.ld.params or k in self.ld.names:
                self.fail("matrix", f"matrix key {k!r} is also a param or task name; rename it")
            elif not isinstance(values, list) or not values:
                self.fail("matrix", f"matrix.{k} must be a non-empty list")
            else:
                out[k] = list(values)
        p = self.get("parallelism")
        if p is not None:
            if isinstance(p, bool) or not isinstance(p, int) or p < 1:
                self.fail("parallelism", f"parallelism={p!r} is invalid: expected an integer >= 1")
            elif "pool" in self.opts:
                self.fail("parallelism", "parallelism and pool both given; keep one")
            else:
                pool = f"{self.name}.parallelism"
                self.ld.flow.pools[pool] = p
                self.opts["pool"] = (self.opts["parallelism"][0], pool)
                self.ld.flow.default_workers = max(self.ld.flow.default_workers, p)
        return out

    def options(self, matrix: Mapping[str, Any]) -> dict[str, Any]:
        o: dict[str, Any] = {}
        if matrix:
            o["matrix"] = matrix
        r = self.get("retries")
        if r is not None:
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                self.fail("retries", f"retries={r!r} is invalid: expected an integer >= 0")
            else:
                o["retries"] = r
        backoff = self.backoff()
        if backoff is not None:
            o["backoff"] = backoff
        t = self.get("trigger")
        if t is not None:
            if t not in {x.value for x in Trigger}:
                hint = suggest(str(t), [x.value for x in Trigger])
                did = f" Did you mean {hint!r}?" if hint else ""
                self.fail(
                    "trigger",
                    f"trigger={t!r} is invalid: one of {', '.join(x.value for x in Trigger)}.{did}",
                )
            else:
                o["trigger"] = t
        for key in ("cache", "isolate"):
            v = self.flag(key)
            if v is not None:
                o[key] = v
        self.flag("run_always")
        ttl = self.number("cache_ttl")
        if ttl is not None:
            o["cache_ttl"] = ttl
        cpus = self.number("cpu_cores")
        if cpus is not None:
            o["cpus"] = cpus
        if "memory" in self.opts and "memory_mb" in self.opts:
            self.fail("memory_mb", "memory and memory_mb both given; keep one")
        mb = self.number("memory_mb")
        if mb is not None:
            o["memory"] = int(mb * 2**20)
        elif self.get("memory") is not None:
            o["memory"] = self.get("memory")
        self.number("disk_gb", 0, strict=False)
        pool = self.get("pool")
        if pool is not None:
            if not isinstance(pool, str) or pool not in self.ld.flow.pools:
                declared = ", ".join(self.ld.flow.pools) or "none"
                self.fail("pool", f"pool {pool!r} is not declared under 'pools' ({declared})")
            else:
                o["pool"] = pool
        desc = self.get("description")
        if desc is not None and not isinstance(desc, str):
            self.fail("description", "description must be a string")
        return o

    def backoff(self) -> Backoff | None:
        kind = self.get("retry_backoff")
        delay_ms = self.number("retry_delay_ms", 0, strict=False)
        first = 1.0 if delay_ms is None else delay_ms / 1000
        if kind is None:
            return Backoff.fixed(first) if delay_ms is not None else None
        if kind == "fixed":
            return Backoff.fixed(first)
        if kind == "exponential":
            return Backoff.exponential(initial=first)
        if isinstance(kind, (int, float)) and not isinstance(kind, bool) and kind >= 0:
            return Backoff.fixed(float(kind))
        self.fail("retry_backoff", f"retry_backoff={kind!r} is invalid: fixed or exponential")
        return None

    def timeout(self) -> float | None:
        s, m = self.number("timeout_seconds"), self.number("timeout_minutes")
        if s is not None and m is not None:
            self.fail("timeout_minutes", "timeout_seconds and timeout_minutes both given")
        return s if s is not None else (m * 60 if m is not None else None)

    def conditions(self) -> tuple[Expr | bool | None, Expr | bool | None, set[Any]]:
        out: list[Expr | bool | None] = []
        refs: set[tuple[str, str | None]] = set()
        for key in ("condition", "skip_if"):
            if key not in self.opts:
                out.append(None)
                continue
            try:
                e = compile_condition(self.get(key))
            except ExprError as exc:
                self.fail(key, f"{key}: {exc}")
                out.append(None)
                continue
            if isinstance(e, Expr):
                refs |= e.refs
                self.check_refs(e.refs, key)
                self.cond_refs |= e.refs
            out.append(e)
        return out[0], out[1], refs

    def check_refs(
        self, refs: set[tuple[str, str | None]], key: str, line: int | None = None
    ) -> None:
        """Every name a template or condition reads must exist (problems at ``line``)."""
        matrix = self.get("matrix") if isinstance(self.get("matrix"), Mapping) else {}
        at = line or self.opts.get(key, (self.line,))[0]

        def fail(_: str, message: str) -> None:
            self.ld.fail(at, f"{self.what}: {message}")

        for root, attr in sorted(refs, key=lambda r: (r[0], r[1] or "")):
            if root == "matrix":
                if attr not in matrix:
                    known = ", ".join(matrix) or "none: this task has no matrix"
                    fail(key, f"{key}: matrix.{attr} is not a matrix key ({known})")
            elif root == "params":
                if attr not in self.ld.params:
                    hint = self.ld.hint(str(attr), [str(p) for p in self.ld.params])
                    known = ", ".join(map(str, self.ld.params)) or "none declared"
                    fail(key, f"{key}: params.{attr} is not a param ({known}).{hint}")
            elif root == "env":
                if attr is None:
                    fail(key, f"{key}: write env.NAME")
            elif root in self.ld.names:
                if root == self.name:
                    fail(key, f"{key}: a task cannot read its own outcome")
                elif attr not in OUTCOME_KEYS:
                    fail(
                        key,
                        f"{key}: {root}.{attr} is not known; use {root}."
                        f"{f', {root}.'.join(OUTCOME_KEYS)}",
                    )
            else:
                hint = self.ld.hint(root, [*self.ld.names, "matrix", "params", "env"])
                self.fail(
                    key,
                    f"{key}: unknown name {root!r}: not a task, and not matrix, params or "
                    f"env.{hint}",
                )

    def upstream(self) -> set[str]:
        """Tasks whose outcome a template or condition reads."""
        refs = self.refs | self.cond_refs
        return {r for r, _ in refs if r in self.ld.names and r != self.name}

    def depends_on(self) -> list[str]:
        d = self.get("depends_on")
        if d is None:
            return []
        items = [d] if isinstance(d, str) else d
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            self.fail("depends_on", "depends_on must be a task name or a list of them")
            return []
        for i, dep in enumerate(items):
            if dep not in self.ld.names:
                hint = self.ld.hint(dep, self.ld.names)
                line = _line(d, i) or self.opts["depends_on"][0]
                self.ld.fail(line, f"{self.what} depends on {dep!r}, which is not a task.{hint}")
        return [x for x in items if x in self.ld.names]

    def script_task(self, kind: str, matrix: Mapping[str, Any]) -> tuple[Any, list[str]]:
        parts: list[str] = []
        args = self.get("args") or []
        if not isinstance(args, list):
            self.fail("args", "args must be a list")
            args = []
        arg_t = [self.template("args", a, _line(self.get("args"), i)) for i, a in enumerate(args)]
        command: list[Template] | Template
        if kind == "script":
            rel = self.get("script")
            if not isinstance(rel, str) or not rel.strip():
                self.fail("script", "script must be a path")
                return None, parts
            path = (self.ld.folder / rel).resolve()
            shown = os.path.normpath(rel)
            if not path.is_file():  # reported; the rest of the task is still checked
                self.fail("script", f"script {rel!r} not found (looked for {path})")
            elif path.suffix != ".py" and not os.access(path, os.X_OK):
                self.fail(
                    "script",
                    f"script {rel!r} is not executable: chmod +x {shown}, or "
                    f"use command: [interpreter, {shown}]",
                )
            parts.append(
                f"script:{shown}={self.ld.file_hash(os.path.relpath(path, self.ld.folder))}"
            )
            argv = [sys.executable, str(path)] if path.suffix == ".py" else [str(path)]
            command = [Template(a.replace("{{", "{ {")) for a in argv] + arg_t
        else:
            cmd = self.get("command")
            if isinstance(cmd, str) and cmd.strip():
                # arguments are quoted for the shell; templates in them render inside the quotes
                command = self.template("command", _shell_join(cmd, args) if args else cmd)
            elif (
                isinstance(cmd, list)
                and cmd
                and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in cmd)
            ):
                command = [self.template("command", x, _line(cmd, i)) for i, x in enumerate(cmd)]
                command += arg_t
            else:
                self.fail("command", "command must be a string or a list of arguments")
                return None, parts
        env = self.get("environment") or {}
        env_t: dict[str, Template] = {}
        if not isinstance(env, Mapping):
            self.fail("environment", "environment must map names to values")
        else:
            for k, v in env.items():
                if not isinstance(v, (str, int, float, bool)):
                    self.fail("environment", f"environment.{k} must be a string or number")
                    continue
                text = ("true" if v else "false") if isinstance(v, bool) else str(v)
                env_t[str(k)] = self.template("environment", text, _line(env, k))
        cwd = self.get("working_dir")
        cwd_t = self.template("working_dir", cwd) if isinstance(cwd, str) else Template("")
        if cwd is not None and not isinstance(cwd, str):
            self.fail("working_dir", "working_dir must be a path")
        for pattern in _inputs(self):
            parts.append(f"input:{pattern}={self.ld.file_hash(pattern)}")
        folder = str(self.ld.folder)
        cwd_full = Template(os.path.join(folder, cwd_t.source) if cwd_t.source else folder)
        task = ScriptTask(
            self.name,
            command,
            names=Names([], [], []),
            env=env_t,
            cwd=cwd_full,
            timeout=self.timeout(),
        )
        return task, parts

    def fn_task(self) -> tuple[Any, list[str]]:
        for key in ("args", "environment", "working_dir", "command", "inputs"):
            if key in self.opts:
                self.fail(key, f"{key} does not apply to an fn task (a Python function)")
        ref = self.get("fn")
        mod, _, attr = str(ref).partition(":")
        if not (isinstance(ref, str) and mod and attr):
            self.fail("fn", f"fn={ref!r} is invalid: write module:function")
            return None, []
        folder = str(self.ld.folder)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            module = importlib.import_module(mod)
        except Exception as exc:
            self.fail("fn", f"cannot import {mod!r} ({type(exc).__name__}: {exc})")
            return None, []
        target = getattr(module, attr, None)
        if not callable(target):
            self.fail("fn", f"{mod} has no function {attr!r}")
            return None, []
        if inspect.iscoroutinefunction(target):
            self.fail("fn", f"{ref} is async; fn tasks call plain functions")
            return None, []
        params = inspect.signature(target).parameters
        wanted = [p for p in params if p != "ctx"]
        task = FnTask(self.name, target, wanted, "ctx" in params)
        return task, [f"fn:{ref}={code_hash(target)}"]


def _shell_join(cmd: str, args: list[Any]) -> str:
    import shlex

    return " ".join([cmd, *(shlex.quote(str(a)) for a in args)])


def _inputs(b: _TaskBuilder) -> list[str]:
    v = b.get("inputs")
    if v is None:
        return []
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
        b.fail("inputs", "inputs must be a path or glob, or a list of them")
        return []
    return list(items)


def fn_text(fn: Any) -> str:
    """What of a task's callable belongs in its cache key besides its parts."""
    if isinstance(fn, ScriptTask):
        cmd = fn.command
        srcs = cmd.source if isinstance(cmd, Template) else [t.source for t in cmd]
        return repr((srcs, sorted((k, t.source) for k, t in fn.env.items()), fn.cwd.source))
    return ""


def _fn_signature(fn: FnTask, params: Mapping[Any, Any], data: list[str]) -> inspect.Signature:
    kw = inspect.Parameter.KEYWORD_ONLY
    target = inspect.signature(fn.fn).parameters
    out = []
    for name, p in target.items():
        if name == "ctx":
            continue
        if p.default is not p.empty:
            out.append(inspect.Parameter(name, kw, default=p.default))
        elif name in params:
            out.append(inspect.Parameter(name, kw, default=params[name]))
        else:
            out.append(inspect.Parameter(name, kw))
    out += [inspect.Parameter(d, kw) for d in data if d not in target]
    out.append(inspect.Parameter("ctx", kw))
    fn.wanted = tuple(n for n in target if n != "ctx")
    return inspect.Signature(out)
