"""Reading one workflow task's keys: each checked, its templates compiled.

Problems go to the :class:`Scope` (every one is reported, with its line, when the file has been
read in full). :mod:`flowkit.wf_kinds` turns the checked keys into a Step.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import suggest
from .policy import Backoff, Trigger
from .wf_expr import Expr, ExprError, Template, compile_condition, parse_template
from .wf_schema import HINTS
from .wf_tasks import OUTCOME_KEYS
from .wf_yaml import Lined, LinedList

__all__ = ["IDENT", "Fields", "Scope", "line_of", "where"]

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
        self.deps: dict[str, tuple[int | None, set[str]]] = {}
        self.flow_name = path.stem
        self._hashes: dict[str, str] = {}
        self._scripts: dict[str, tuple[Path, str | None, str]] = {}

    def fail(self, line: int | None, message: str) -> None:
        """Record a problem (all are reported together)."""
        self.problems.append((line, message))

    def check_cycles(self) -> None:
        """Report a dependency cycle among the tasks read (with the other problems)."""
        import networkx as nx  # here only: `import flowkit` does not load networkx

        graph: nx.DiGraph[str] = nx.DiGraph()
        for name, (_, deps) in self.deps.items():
            graph.add_node(name)
            graph.add_edges_from((d, name) for d in deps)
        try:
            cycle = [u for u, _ in nx.find_cycle(graph)]
        except nx.NetworkXNoCycle:
            return
        path = " → ".join([*cycle, cycle[0]])
        self.fail(
            self.deps[cycle[0]][0],
            f"cycle in flow {self.flow_name!r}: {path}. Remove one of these dependencies "
            "(a depends_on entry, or a template or condition that reads a task)",
        )

    def hint(self, key: str, known: Iterable[str]) -> str:
        """The " Did you mean 'x'?" that follows a message about a misspelt or foreign key."""
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
                h.update(self._digest(f).encode())
        self._hashes[pattern] = result = h.hexdigest()
        return result

    def script(self, rel: str) -> tuple[Path, str | None, str]:
        """A script's absolute path, the problem with it (or None), and its content hash."""
        known = self._scripts.get(rel)
        if known is None:
            path = (self.folder / rel).resolve()
            shown = os.path.normpath(rel)
            problem = None
            if not path.is_file():
                problem = f"script {rel!r} not found (looked for {path})"
            elif path.suffix != ".py" and not os.access(path, os.X_OK):
                problem = (
                    f"script {rel!r} is not executable: chmod +x {shown}, or use "
                    f"command: [interpreter, {shown}]"
                )
            known = self._scripts[rel] = (path, problem, "" if problem else self._digest(path))
        return known

    def _digest(self, path: str | Path) -> str:
        h = hashlib.blake2b(digest_size=8)
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()


def where(path: Path, line: int | None) -> str:
    """``path:line`` (or the path when the line is unknown)."""
    return f"{path}:{line}" if line else str(path)


def line_of(box: Any, key: Any) -> int | None:
    """The line of ``key`` in a mapping (or item in a list) read from a file, when known."""
    if isinstance(box, (Lined, LinedList)):
        return box.line_of(key)
    return None


class Fields:
    """One task's keys, read and checked one by one (problems go to the Scope)."""

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
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or (v <= minimum if strict else v < minimum):
            rel = ">" if strict else ">="
            self.fail(key, f"{key}={v!r} is invalid: expected a finite number {rel} {minimum:g}")
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
            if not isinstance(k, str) or not IDENT.match(k):
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
            if not isinstance(t, str) or t not in {x.value for x in Trigger}:
                hint = suggest(str(t), [x.value for x in Trigger])
                did = f" Did you mean {hint!r}?" if hint else ""
                self.fail(
                    "trigger",
                    f"trigger={t!r} is invalid: one of {', '.join(x.value for x in Trigger)}.{did}",
                )
            else:
                o["trigger"] = t
        cache = self.get("cache")
        if cache == "shared":
            o["cache"] = cache
        elif cache is not None:
            if not isinstance(cache, bool):
                self.fail("cache", f"cache={cache!r} is invalid: expected true, false or shared")
            else:
                o["cache"] = cache
        v = self.flag("isolate")
        if v is not None:
            o["isolate"] = v
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

    def depends_on(self) -> list[str]:
        d = self.get("depends_on")
        if d is None:
            return []
        items = [d] if isinstance(d, str) else d
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            self.fail("depends_on", "depends_on must be a task name or a list of them")
            return []
        out: dict[str, None] = {}
        for i, dep in enumerate(items):
            if dep in self.ld.names:
                out[dep] = None
                continue
            line = line_of(d, i) or self.opts["depends_on"][0]
            if set("*?[") & set(dep):  # a glob pattern, matched as --rerun matches names
                hits = sorted(n for n in fnmatch.filter(self.ld.names, dep) if n != self.name)
                if hits:
                    out.update(dict.fromkeys(hits))
                    continue
                message = f"{self.what} depends on {dep!r}, a pattern that matches no other task"
                self.ld.fail(line, message)
                continue
            hint = self.ld.hint(dep, self.ld.names)
            self.ld.fail(line, f"{self.what} depends on {dep!r}, which is not a task.{hint}")
        return list(out)
