"""Building one workflow task's Step: a script or command, or a Python function (``fn:``).

A :class:`TaskBuilder` reads the task's keys (:class:`~flowkit.wf_build.Fields`), picks the
callable (:mod:`flowkit.wf_tasks`), works out what it reads of its upstream tasks and which
trigger rule follows from that, and makes the Step, whose ``code_version`` names the script,
input files or function it covers so that a change can be reported by name.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from .dsl import SPEC_ATTR, Step
from .errors import FlowDefinitionError, suggest
from .keys import code_hash, digest
from .policy import Trigger
from .wf_build import IDENT, Fields, line_of, where
from .wf_expr import Template
from .wf_schema import HINTS
from .wf_tasks import STATUS_KEYS, Condition, FnTask, Names, ScriptTask

__all__ = ["TaskBuilder"]

_KINDS = ("script", "command", "fn")


class TaskBuilder(Fields):
    """Turns one task's keys into a Step (problems go to the Scope)."""

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
        upstream = self.upstream()
        self.ld.deps[self.name] = (self.line, set(depends) | upstream)  # for cycles
        if fn is None:
            return None
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
            u for u in upstream | (set(depends) if runs_after else set()) if IDENT.match(u)
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

    def upstream(self) -> set[str]:
        """Tasks whose outcome a template or condition reads."""
        refs = self.refs | self.cond_refs
        return {r for r, _ in refs if r in self.ld.names and r != self.name}

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
            path, problem, digest_ = self.ld.script(rel)
            if problem is not None:  # reported; the rest of the task is still checked
                self.fail("script", problem)
            parts.append(f"script:{os.path.normpath(rel)}={digest_}")
            argv = [sys.executable, str(path)] if path.suffix == ".py" else [str(path)]
            command = [Template(a, literal=True) for a in argv] + arg_t
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
        task = ScriptTask(
            self.name,
            command,
            names=Names([], [], []),
            env=env_t,
            cwd=cwd_t,
            base=folder,
            timeout=self.timeout(),
            script=os.path.normpath(self.get("script")) if kind == "script" else None,
        )
        return task, parts

    def fn_task(self) -> tuple[Any, list[str]]:
        for key in ("args", "environment", "working_dir", "command"):
            if key in self.opts:
                self.fail(key, f"{key} does not apply to an fn task (a Python function)")
        ref = self.get("fn")
        mod, _, attr = str(ref).partition(":")
        if not (isinstance(ref, str) and mod and attr):
            self.fail("fn", f"fn={ref!r} is invalid: write module:function")
            return None, []
        try:
            module = _import_from(self.ld.folder, mod)
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
        inputs = [f"input:{p}={self.ld.file_hash(p)}" for p in _inputs(self)]
        return task, [f"fn:{ref}={code_hash(target)}", *inputs]


def _import_from(folder: Path, name: str) -> ModuleType:
    """Import module ``name``, preferring the workflow's folder: a module of that name imported
    earlier from elsewhere (another workflow's ``helpers``) is replaced by this folder's."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    base = folder.joinpath(*name.split("."))
    path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
    existing = sys.modules.get(name)
    if path is None or existing is None or getattr(existing, "__file__", None) == str(path):
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return importlib.import_module(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first, so process workers can pickle its functions
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules[name] = existing
        raise
    return module


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
        text = repr((srcs, sorted((k, t.source) for k, t in fn.env.items()), fn.cwd.source))
        # where the project and the interpreter live is not what the task does: moving the
        # folder or the virtualenv keeps the results
        return text.replace(sys.executable, "<python>").replace(fn.base, "<folder>")
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
