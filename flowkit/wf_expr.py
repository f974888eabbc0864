"""Templates (``{{ matrix.batch_id }}``) and conditions, with a small safe evaluator.

An expression is parsed with :mod:`ast` and accepted only if every node is on a short list:
literals, names, ``a.b`` and ``a["b"]`` lookups into the namespaces, comparisons (``in`` too),
``and`` / ``or`` / ``not``, ``x if c else y`` and arithmetic on numbers. There are no calls, no
attributes of Python objects (``.b`` looks a key up in a mapping; names starting with ``_`` are
refused), no comprehensions or lambdas — so ``__class__``, ``__import__`` and friends are refused
when the workflow is loaded, not when it runs. Nothing is ever passed to ``eval``.

The names an expression may use are ``matrix``, ``params``, ``env`` and upstream task names;
:attr:`Expr.refs` lists what it reads so the loader can check every name before anything runs.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

__all__ = ["Expr", "ExprError", "Template", "compile_condition", "parse_template", "to_text"]

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LITERAL_NAMES: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "none": None,
    "True": True,
    "False": False,
    "None": None,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_REFUSED = {
    ast.Call: "calls are not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.NamedExpr: "assignments are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "* is not allowed",
    ast.Slice: "slices are not allowed",
}


class ExprError(ValueError):
    """An expression or template that cannot be used (at load time) or evaluated (at run time)."""


class Expr:
    """One compiled expression: what it reads (:attr:`refs`) and how to evaluate it."""

    __slots__ = ("refs", "source", "tree")

    def __init__(self, source: str) -> None:
        self.source = source.strip()
        if not self.source:
            raise ExprError("an empty expression")
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"{self.source!r} is not a valid expression ({exc.msg})") from None
        self.refs: set[tuple[str, str | None]] = set()
        _check(tree.body, self.source, self.refs)
        self.tree = tree.body

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_compiled, (self.source,))

    def evaluate(self, names: Mapping[str, Any]) -> Any:
        """The expression's value over ``names`` (root name -> mapping or value).

        Raises:
            ExprError: a name or key is missing, or an operation does not apply to the values.
        """
        try:
            return _eval(self.tree, names)
        except ExprError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ExprError(f"{self.source!r}: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> Expr:
    return Expr(source)


def _check(node: ast.AST, source: str, refs: set[tuple[str, str | None]]) -> None:
    """Refuse any node not on the list; collect (root name, first key) pairs into ``refs``."""
    todo = [node]
    while todo:
        n = todo.pop()
        refused = _REFUSED.get(type(n))
        if refused is not None:
            raise ExprError(f"{source!r}: {refused} in expressions")
        if isinstance(n, ast.Name):
            if n.id.startswith("_"):
                raise ExprError(f"{source!r}: names starting with '_' are not allowed")
            if n.id not in _LITERAL_NAMES:
                refs.add((n.id, None))
        elif isinstance(n, ast.Attribute):
            if n.attr.startswith("_"):
                raise ExprError(f"{source!r}: '.{n.attr}' is not allowed (names starting with _)")
            if isinstance(n.value, ast.Name):
                refs.add((n.value.id, n.attr))
                if n.value.id.startswith("_"):
                    raise ExprError(f"{source!r}: names starting with '_' are not allowed")
                continue
            todo.append(n.value)
        elif isinstance(n, ast.Subscript):
            key = n.slice
            if not (isinstance(key, ast.Constant) and isinstance(key.value, (str, int))):
                raise ExprError(f"{source!r}: [...] takes a literal key, like x['name'] or x[0]")
            if isinstance(key.value, str) and key.value.startswith("_"):
                raise ExprError(f"{source!r}: keys starting with '_' are not allowed")
            if isinstance(n.value, ast.Name):
                refs.add((n.value.id, key.value if isinstance(key.value, str) else None))
                continue
            todo.append(n.value)
        elif isinstance(n, ast.Constant):
            if not isinstance(n.value, (str, int, float, bool, type(None))):
                raise ExprError(f"{source!r}: literal {n.value!r} is not allowed")
        elif isinstance(n, (ast.BoolOp, ast.Compare, ast.IfExp, ast.List, ast.Tuple, ast.Set)):
            todo.extend(ast.iter_child_nodes(n))
        elif isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.Not, ast.USub, ast.UAdd)):
            todo.append(n.operand)
        elif isinstance(n, ast.BinOp) and type(n.op) in _ARITH:
            todo.extend((n.left, n.right))
        elif isinstance(n, (ast.And, ast.Or, ast.Load, *_COMPARE)):
            continue
        else:
            what = type(n).__name__
            raise ExprError(
                f"{source!r}: {what} is not allowed; use comparisons, and/or/not, in, literals, "
                "and names like matrix.x, params.x, env.X, task.status"
            )


def _lookup(container: Any, key: Any, where: str) -> Any:
    if isinstance(container, Mapping):
        try:
            return container[key]
        except KeyError:
            raise ExprError(f"{where}: no key {key!r}") from None
    if isinstance(container, (list, tuple, str)) and isinstance(key, int):
        try:
            return container[key]
        except IndexError:
            raise ExprError(f"{where}: index {key} is out of range") from None
    raise ExprError(f"{where}: cannot look up {key!r} in a {type(container).__name__}")


def _eval(n: ast.AST, names: Mapping[str, Any]) -> Any:
    if isinstance(n, ast.Constant):
        return n.value
    if isinstance(n, ast.Name):
        if n.id in _LITERAL_NAMES:
            return _LITERAL_NAMES[n.id]
        return _lookup(names, n.id, "name")
    if isinstance(n, ast.Attribute):
        return _lookup(_eval(n.value, names), n.attr, ast.unparse(n))
    if isinstance(n, ast.Subscript):
        key = n.slice.value if isinstance(n.slice, ast.Constant) else None
        return _lookup(_eval(n.value, names), key, ast.unparse(n))
    if isinstance(n, ast.BoolOp):
        is_and = isinstance(n.op, ast.And)
        value: Any = is_and
        for v in n.values:
            value = _eval(v, names)
            if bool(value) != is_and:
                return value
        return value
    if isinstance(n, ast.UnaryOp):
        operand = _eval(n.operand, names)
        if isinstance(n.op, ast.Not):
            return not operand
        _number(operand, n)
        return -operand if isinstance(n.op, ast.USub) else +operand
    if isinstance(n, ast.Compare):
        left = _eval(n.left, names)
        for op, comp in zip(n.ops, n.comparators, strict=True):
            right = _eval(comp, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(n, ast.BinOp):
        a, b = _eval(n.left, names), _eval(n.right, names)
        if not (isinstance(n.op, ast.Add) and isinstance(a, str) and isinstance(b, str)):
            _number(a, n)
            _number(b, n)
        return _ARITH[type(n.op)](a, b)
    if isinstance(n, ast.IfExp):
        return _eval(n.body if _eval(n.test, names) else n.orelse, names)
    if isinstance(n, (ast.List, ast.Tuple)):
        return [_eval(e, names) for e in n.elts]
    if isinstance(n, ast.Set):
        return {_eval(e, names) for e in n.elts}
    raise ExprError(f"cannot evaluate {type(n).__name__}")  # refused by _check already


def _number(value: Any, n: ast.AST) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"{ast.unparse(n)!r}: arithmetic needs numbers, got {value!r}")


class Template:
    """A string with ``{{ expr }}`` parts. A string that is one template keeps its value's type."""

    __slots__ = ("parts", "source")

    def __init__(self, source: str, literal: bool = False) -> None:
        self.source = source
        if literal:  # a path or argument used as is, even if it holds "{{"
            self.parts: tuple[str | Expr, ...] = (source,) if source else ()
            return
        parts: list[str | Expr] = []
        pos = 0
        for m in _TEMPLATE.finditer(source):
            if m.start() > pos:
                parts.append(source[pos : m.start()])
            parts.append(_compiled(m.group(1)))
            pos = m.end()
        if "{{" in source[pos:]:
            raise ExprError(f"{source!r}: '{{{{' without a closing '}}}}'")
        if pos < len(source):
            parts.append(source[pos:])
        self.parts = tuple(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Template, (self.source, self.is_static))

    @property
    def is_static(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def refs(self) -> set[tuple[str, str | None]]:
        out: set[tuple[str, str | None]] = set()
        for p in self.parts:
            if isinstance(p, Expr):
                out |= p.refs
        return out

    def render(self, names: Mapping[str, Any]) -> Any:
        """The value (a lone ``{{ expr }}``) or the string with every part rendered."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Expr):
            return self.parts[0].evaluate(names)
        return "".join(p if isinstance(p, str) else to_text(p.evaluate(names)) for p in self.parts)

    def text(self, names: Mapping[str, Any]) -> str:
        """The rendered string (for environment variables, arguments, paths)."""
        if self.is_static:
            return self.source
        return to_text(self.render(names))


def to_text(value: Any) -> str:
    """How a value appears in a string: text as is, numbers plainly, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return orjson.dumps(value, default=str).decode()


def parse_template(source: str) -> Template:
    """Compile a string that may hold ``{{ ... }}`` parts; raises ExprError for a bad part."""
    return Template(source)


def compile_condition(value: Any) -> Expr | bool:
    """A ``condition``/``skip_if`` value: ``"{{ expr }}"``, a bare ``"expr"``, or a boolean."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ExprError(f"{value!r} is not an expression; write one as a string")
    text = value.strip()
    m = _TEMPLATE.fullmatch(text)
    if m is not None:
        return _compiled(m.group(1))
    if "{{" in text:
        raise ExprError(f"{value!r}: write the whole condition as one {{{{ ... }}}} expression")
    return _compiled(text)
