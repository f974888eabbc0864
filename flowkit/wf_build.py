"""Building one workflow task: its keys checked, its templates compiled, its Step made.

Problems go to the :class:`Scope` (every one is reported, with its line, when the file has been
read in full); a task with problems makes no Step.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib
import inspect
import os
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .dsl import SPEC_ATTR, Step
from .errors import FlowDefinitionError, suggest
from .keys import code_hash, digest
from .policy import Backoff, Trigger
from .wf_expr import Expr, ExprError, Template, compile_condition, parse_template
from .wf_schema import HINTS
from .wf_tasks import OUTCOME_KEYS, STATUS_KEYS, Condition, FnTask, Names, ScriptTask
from .wf_yaml import Lined, LinedList

__all__ = ["IDENT", "Scope", "TaskBuilder", "line_of", "where"]

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENT = IDENT
_KINDS = ("script", "command", "fn")


class Scope:
    """What one workflow file's tasks share while they are built: the problems found so far, the
    params and task names, the pools, hints and workers the tasks ask for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.folder = path.resolve().parent
        self.problems: list[tuple[int | None, str]] = []
        self.params: Mapping[Any, Any] = {}
        self.names: list[str] = []
        self.pools: dict[str, int] = {}
        self.hints: dict[str, dict[str, Any]] = {}
        self.default_workers = 1
        self.unknown_keys: list[str] = []
        self._hashes: dict[str, str] = {}

    def fail(self, line: int | None, message: str) -> None:
        """Record a problem (all are reported together)."""
        self.problems.append((line, message))

    def hint(self, key: str, known: Iterable[str]) -> str:
        """ " Did you mean 'x'?" for a misspelt or foreign key, or ""."""
        meant = HINTS.get(key.lower())
        known = list(known)
        if meant is None or meant not in known:
            meant = suggest(key, known)
        return f" Did you mean {meant!r}?" if meant else ""

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


def where(path: Path, line: int | None) -> str:
    """``path:line`` (or the path when the line is unknown)."""
    return f"{path}:{line}" if line else str(path)


def line_of(box: Any, key: Any) -> int | None:
    """The line of ``key`` in a mapping (or item in a list) read from a file, when known."""
    if isinstance(box, (Lined, LinedList)):
        return box.line_of(key)
    return None


class TaskBuilder:
    """Turns one task's keys into a Step (problems go to the loader)."""

    def __init__(
        self,
        loader: Scope,
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
        step = dataclasses.replace(step, location=where(self.ld.path, self.line))
        setattr(fn, SPEC_ATTR, step)
        self.ld.hints[self.name] = {
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
                self.ld.pools[pool] = p
                self.opts["pool"] = (self.opts["parallelism"][0], pool)
                self.ld.default_workers = max(self.ld.default_workers, p)
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
            if not isinstance(pool, str) or pool not in self.ld.pools:
                declared = ", ".join(self.ld.pools) or "none"
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
                line = line_of(d, i) or self.opts["depends_on"][0]
                self.ld.fail(line, f"{self.what} depends on {dep!r}, which is not a task.{hint}")
        return [x for x in items if x in self.ld.names]

    def script_task(self, kind: str, matrix: Mapping[str, Any]) -> tuple[Any, list[str]]:
        parts: list[str] = []
        args = self.get("args") or []
        if not isinstance(args, list):
            self.fail("args", "args must be a list")
            args = []
        arg_t = [self.template("args", a, line_of(self.get("args"), i)) for i, a in enumerate(args)]
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
                command = [self.template("command", x, line_of(cmd, i)) for i, x in enumerate(cmd)]
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
                env_t[str(k)] = self.template("environment", text, line_of(env, k))
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
    return " ".join([cmd, *(shlex.quote(str(a)) for a in args)])


def _inputs(b: TaskBuilder) -> list[str]:
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
