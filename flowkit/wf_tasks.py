"""The callables behind workflow tasks: a script or command, a Python function, a condition.

They are plain picklable objects (process and Dask workers run them) with a ``__signature__``
that tells flowkit what they take: the run parameters, the matrix keys, ``ctx``, and the
upstream tasks whose output a template reads (those become data dependencies, so a changed
upstream output re-runs the task). What a template sees of an upstream task is its outcome:
``exit_code``, ``status``, ``failed``, ``succeeded``, ``skipped``, ``output``, ``duration``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson

from .result import Status
from .shell import ShellCommand, ShellCommandError, ShellTimeoutError
from .wf_expr import Expr, ExprError, Template, to_text

__all__ = ["OUTCOME_KEYS", "Condition", "EnvView", "FnTask", "Names", "ScriptTask", "outcome"]

#: What ``{{ task.X }}`` may read of an upstream task.
OUTCOME_KEYS = ("exit_code", "status", "failed", "succeeded", "skipped", "output", "duration")
#: Those that only exist when the upstream's outcome is known whether or not it succeeded.
STATUS_KEYS = frozenset({"exit_code", "status", "failed", "succeeded", "skipped"})


class EnvView(Mapping[str, str]):
    """``env.X`` in templates: the process environment; an unset variable is an error naming it."""

    def __getitem__(self, key: str) -> str:
        try:
            return os.environ[key]
        except KeyError:
            raise ExprError(
                f"environment variable {key} is not set (read by {{{{ env.{key} }}}}); "
                f"export {key}=... before running"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def outcome(result: Any, output: Any) -> dict[str, Any]:
    """An upstream task's outcome as templates see it (``result``: its StepResult, or None)."""
    status: Status = result.status if result is not None else Status.PENDING
    exit_code: int | None = None
    if status.ok:
        exit_code = 0
    elif status is Status.FAILED:
        code = getattr(result.error, "exit_code", None) if result is not None else None
        exit_code = code if isinstance(code, int) else 1
    return {
        "exit_code": exit_code,
        "status": status.value,
        # as the trigger rules count it: not run because an upstream failed is a failure too
        # (``status == "upstream_failed"`` tells the two apart)
        "failed": status.failed or status is Status.UPSTREAM_FAILED,
        "succeeded": status.ok,
        "skipped": status is Status.SKIPPED,
        "output": output if status.ok else None,
        "duration": round(result.duration_s, 6) if result is not None else 0.0,
    }


class Names:
    """How a task builds the names its templates and conditions read, from its call arguments."""

    __slots__ = ("matrix", "params", "upstream")

    def __init__(
        self, matrix: Sequence[str], params: Sequence[str], upstream: Sequence[str]
    ) -> None:
        self.matrix, self.params, self.upstream = tuple(matrix), tuple(params), tuple(upstream)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Names, (self.matrix, self.params, self.upstream))

    def build(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        ctx = kwargs.get("ctx")
        results: Mapping[str, Any] = getattr(ctx, "upstream", None) or {}
        names: dict[str, Any] = {
            "matrix": {k: kwargs[k] for k in self.matrix if k in kwargs},
            "params": {k: kwargs[k] for k in self.params if k in kwargs},
            "env": EnvView(),
        }
        for u in self.upstream:
            names[u] = outcome(results.get(u), kwargs.get(u))
        return names

    def signature(self, data_deps: Sequence[str], defaults: Mapping[str, Any]) -> inspect.Signature:
        kw = inspect.Parameter.KEYWORD_ONLY
        ps = [inspect.Parameter(d, kw) for d in data_deps]
        ps += [inspect.Parameter(m, kw) for m in self.matrix]
        ps += [inspect.Parameter(p, kw, default=defaults[p]) for p in self.params]
        ps.append(inspect.Parameter("ctx", kw))
        return inspect.Signature(ps)


class ScriptTask:
    """Runs a script or a command with rendered templates, like a shell step, in ``cwd``
    (relative to ``base``, the workflow file's folder).

    Its output is the JSON the process wrote to the file named by ``$FLOWKIT_OUTPUT``, or, when
    it wrote none, its stdout and stderr text.
    """

    def __init__(
        self,
        task: str,
        command: list[Template] | Template,
        *,
        names: Names,
        env: Mapping[str, Template],
        cwd: Template,
        base: str,
        timeout: float | None,
        script: str | None = None,
    ) -> None:
        self.task, self.command, self.names = task, command, names
        self.env, self.cwd, self.base, self.timeout = dict(env), cwd, base, timeout
        self.script = script  # the script's path as the file gives it, for messages

    def __repr__(self) -> str:
        return f"ScriptTask({self.task!r})"

    def shipped_folder(self) -> str:
        """The folder a cluster's workers need a copy of: the workflow's (see flowkit.ship)."""
        return self.base

    def relocated(self, folder: str) -> ScriptTask:
        """This task as it runs from a copy of its workflow's folder at ``folder`` (on a Dask
        worker): script paths point into the copy, and a ``.py`` script runs with this
        interpreter."""
        old = self.base.rstrip(os.sep) + os.sep

        def moved(t: Template) -> Template:
            if t.is_static and t.source.startswith(old):
                return Template(os.path.join(folder, t.source[len(old) :]), literal=True)
            return t

        copy = ScriptTask.__new__(ScriptTask)
        copy.__dict__.update(self.__dict__)
        copy.base = folder
        if isinstance(self.command, list):
            command = [moved(t) for t in self.command]
            if self.script is not None and self.script.endswith(".py") and len(command) > 1:
                command[0] = Template(sys.executable, literal=True)  # not the client's Python
            copy.command = command
        return copy

    def __call__(self, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        names = self.names.build(kwargs)
        cmd: str | list[str]
        env = {k: t.text(names) for k, t in self.env.items()}
        if isinstance(self.command, Template):
            cmd = shell_text(self.command, names, env)
        else:
            cmd = [t.text(names) for t in self.command]
        for k in self.names.matrix:
            env[f"FLOWKIT_MATRIX_{k.upper()}"] = str(names["matrix"].get(k, ""))
        if ctx is not None:
            env["FLOWKIT_RUN_ID"] = ctx.run_id
            env["FLOWKIT_TASK"] = ctx.step
            env["FLOWKIT_ATTEMPT"] = str(ctx.attempt)
        fd, out_path = tempfile.mkstemp(prefix="flowkit-output-", suffix=".json")
        os.close(fd)
        env["FLOWKIT_OUTPUT"] = out_path
        try:
            cwd = os.path.join(self.base, self.cwd.text(names))  # relative to the workflow file
            shell = ShellCommand(cmd, cwd=cwd, env=env, timeout=self.timeout)
            text = shell(**{p: kwargs[p] for p in self.names.params if p in kwargs})
            with open(out_path, "rb") as f:
                published = f.read()
        except ShellCommandError as exc:
            if self.script is None:
                raise
            raise ShellCommandError(self.script, exc.code, exc.tail, "script") from None
        except ShellTimeoutError:
            if self.script is None:
                raise
            raise ShellTimeoutError(
                f"script {self.script!r} timed out after {self.timeout:g}s; its process group "
                "was killed"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(out_path)
        if not published.strip():
            return text
        try:
            return orjson.loads(published)
        except orjson.JSONDecodeError as exc:
            raise ValueError(
                f"task {self.task!r} wrote to $FLOWKIT_OUTPUT something that is not JSON "
                f"({exc}); write one JSON value, e.g. json.dump(result, open(os.environ"
                "['FLOWKIT_OUTPUT'], 'w'))"
            ) from None


def shell_text(t: Template, names: Mapping[str, Any], env: dict[str, str]) -> str:
    """A shell command string with its templates rendered as data, never as shell code.

    A value inside single quotes is escaped for them; anywhere else it is passed in an
    environment variable (``FLOWKIT_VALUE_<n>``) that the command expands inside double quotes,
    so an upstream output holding ``; rm -rf ~`` or ``$(...)`` stays one literal word.
    """
    if t.is_static:
        return t.source
    pieces: list[str] = []
    quote = ""  # the quote the command is inside at this point: "", "'" or '"'
    n = 0
    for part in t.parts:
        if isinstance(part, str):
            pieces.append(part)
            quote = _quote_after(part, quote)
            continue
        value = to_text(part.evaluate(names))
        if quote == "'":
            pieces.append(value.replace("'", "'\\''"))
        else:
            var = f"FLOWKIT_VALUE_{n}"
            env[var] = value
            pieces.append(f"${{{var}}}" if quote == '"' else f'"${{{var}}}"')
        n += 1
    return "".join(pieces)


def _quote_after(text: str, quote: str) -> str:
    """The shell quoting state after ``text``, starting in state ``quote``."""
    i = 0
    while i < len(text):
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif c == "\\":
            i += 1  # the next character is escaped
        elif quote == '"':
            if c == '"':
                quote = ""
        elif c in "'\"":
            quote = c
        i += 1
    return quote


class FnTask:
    """Calls a Python function with the arguments its own signature asks for."""

    def __init__(self, task: str, fn: Callable[..., Any], wanted: Sequence[str], ctx: bool) -> None:
        self.task, self.fn, self.wanted, self.wants_ctx = task, fn, tuple(wanted), ctx

    def __repr__(self) -> str:
        return f"FnTask({self.task!r}, {getattr(self.fn, '__qualname__', self.fn)!r})"

    def __call__(self, **kwargs: Any) -> Any:
        args = {k: kwargs[k] for k in self.wanted if k in kwargs}
        if self.wants_ctx:
            args["ctx"] = kwargs.get("ctx")
        return self.fn(**args)


class Condition:
    """A task's ``condition`` and ``skip_if``, as the ``when=`` predicate of its step."""

    def __init__(self, condition: Expr | bool | None, skip_if: Expr | bool | None, names: Names):
        self.condition, self.skip_if, self.names = condition, skip_if, names

    def __call__(self, **kwargs: Any) -> bool:
        names = self.names.build(kwargs)
        go = True
        if self.condition is not None:
            go = bool(_value(self.condition, names))
        if go and self.skip_if is not None:
            go = not _value(self.skip_if, names)
        return go


def _value(e: Expr | bool, names: Mapping[str, Any]) -> Any:
    return e if isinstance(e, bool) else e.evaluate(names)
