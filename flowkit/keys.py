"""Run ids and cache keys.

A step's cache key covers its code (see :func:`code_hash`), the run parameters it takes, the
content of the outputs it receives, and the keys of its order-only upstreams. So an upstream that
re-runs and returns an equal value leaves its data dependents cached, while an order-only
dependent (which relies on the upstream's side effects) re-runs whenever the upstream's key moves.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import linecache
import marshal
import os
import re
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

import orjson

__all__ = ["code_hash", "digest", "params_bytes", "run_id_for", "safe_name", "step_key"]

_SAFE = re.compile(r"[^A-Za-z0-9_.=\[\]-]+")
_blake2b = hashlib.blake2b


def digest(*parts: bytes | str) -> str:
    """A short, stable content hash of the given parts."""
    # one update over the parts joined (each followed by a NUL): the same hash as feeding them
    # one by one, at a fraction of the calls
    data = b"\x00".join([p.encode() if isinstance(p, str) else p for p in parts]) + b"\x00"
    return _blake2b(data, digest_size=12).hexdigest()  # 96 bits: ample, short in the journal


#: Longer names are shortened (with a hash) in file names: file systems allow 255 bytes, and
#: flowkit adds suffixes (``.previous``, ``.pkl``, temporary-file names).
NAME_MAX = 200


def safe_name(name: str) -> str:
    """``name`` made safe as a file or folder name (same name, same result): unsafe characters
    are replaced and long names shortened, both with a hash of the name added."""
    if len(name) <= NAME_MAX and name.isascii() and name.isidentifier():
        return name  # the common case, without the regular expression
    cleaned = _SAFE.sub("_", name).strip(".") or "_"
    if cleaned == name and len(name) <= NAME_MAX:
        return name
    return f"{cleaned[:80]}-{digest(name)[:8]}"


def canonical(params: Mapping[str, Any]) -> bytes:
    """Parameters as canonical JSON bytes (sorted keys), for ids and keys."""
    return orjson.dumps(dict(params), option=orjson.OPT_SORT_KEYS, default=_param_default)


def _param_default(value: Any) -> Any:
    # a path keeps the id and keys it had as the text given on the command line
    return str(value) if isinstance(value, PurePath) else repr(value)


def run_id_for(flow: str, params: Mapping[str, Any]) -> str:
    """The run id derived from a flow's name and the parameters given to it."""
    if not params:
        return safe_name(flow)
    return f"{safe_name(flow)}-{digest(canonical(params))[:10]}"


def params_bytes(params: tuple[tuple[str, Any], ...]) -> bytes:
    """How a step's parameter values enter its cache key."""
    return orjson.dumps(params, default=_param_default) if params else b"[]"


def step_key(
    code: str,
    params: tuple[tuple[str, Any], ...],
    data_inputs: Iterable[tuple[str, str]],
    order_inputs: Iterable[tuple[str, str]],
    encoded_params: bytes | None = None,
) -> str:
    """The cache key of one step execution (see the module docstring).

    ``encoded_params``: ``params_bytes(params)``, when the caller keeps it from step to step.
    """
    data = "|".join([f"{n}={h}" for n, h in data_inputs]) if data_inputs else ""
    order = "|".join([f"{n}={h}" for n, h in order_inputs]) if order_inputs else ""
    p = encoded_params if encoded_params is not None else params_bytes(params)
    # digest() of the one part, spelled out: this runs once per step
    text = f"{code}\x00{data}\x00{order}\x00".encode()
    return _blake2b(b"%b%b\x00" % (text, p), digest_size=12).hexdigest()


# --- code hashing -------------------------------------------------------------------------------

_LIB_DIRS = tuple(
    {
        p
        for p in (
            sysconfig.get_paths().get("stdlib"),
            sysconfig.get_paths().get("purelib"),
            sysconfig.get_paths().get("platlib"),
        )
        if p
    }
)
_CONST_TYPES = (int, float, str, bytes, bool, type(None), complex)
#: code hashes by ``id(code)``, each with its code object (kept alive, so the id stays its own):
#: hashing a code object itself (as a dict key) costs as much as the rest of a lookup
_by_code: dict[int, tuple[types.CodeType, str]] = {}


def _is_project_code(code: types.CodeType) -> bool:
    """True for functions written in the user's project (not the stdlib or installed packages)."""
    filename = code.co_filename
    if filename.startswith("<") and not filename.startswith("<stdin"):
        return filename.startswith("<string") or filename.startswith("<ipython")
    return not filename.startswith(_LIB_DIRS) and "site-packages" not in filename


class _Strip(ast.NodeTransformer):
    """Drop what does not change behaviour: docstrings and decorators (comments never parse)."""

    def _strip(self, node: Any) -> Any:
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        if hasattr(node, "decorator_list"):
            node.decorator_list = []
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


class SourceHashes:
    """AST hashes of functions in files, kept across processes (see :func:`load_code_cache`):
    ``"file|line|qualname" -> [mtime_ns, size, hash]``, each valid while its file's mtime and
    size hold. ``dirty``: it gained entries since it was loaded or saved."""

    __slots__ = ("dirty", "entries")

    def __init__(self) -> None:
        self.entries: dict[str, list[Any]] = {}
        self.dirty = False

    def put(self, key: str, stat: os.stat_result, value: str) -> None:
        self.entries[key] = [stat.st_mtime_ns, stat.st_size, value]
        self.dirty = True


#: The process's source hashes, shared by the flows it runs.
SOURCE_HASHES = SourceHashes()


def _source(code: types.CodeType) -> str:
    """The source of the function ``code`` belongs to (decorators included).

    Like ``inspect.getsource`` without its per-call scan of ``sys.modules`` and of the rest of the
    file, which make it slow in large modules.
    """
    filename = code.co_filename
    linecache.checkcache(filename)
    lines = linecache.getlines(filename)
    if not lines:
        raise OSError(f"no source for {code.co_name}")
    start, size = code.co_firstlineno - 1, 64
    while True:
        chunk = lines[start : start + size]
        block = inspect.getblock(chunk)
        if len(block) < len(chunk) or start + size >= len(lines):
            return "".join(block)
        size *= 4


def _own_code_hash(code: types.CodeType, fn: Callable[..., Any]) -> str:
    cached = _by_code.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    filename = code.co_filename
    if filename.startswith("<") and filename not in linecache.cache:
        result = _bytecode_hash(code)  # exec'd code: there is no source to read
    else:
        result = _source_hash(code, filename)
    _by_code[id(code)] = (code, result)
    return result


def _bytecode_hash(code: types.CodeType) -> str:
    """Without source (exec'd code, a REPL), the bytecode is the next best identity."""
    shape = repr((code.co_consts, code.co_names, code.co_varnames)).encode()
    # digest("bytecode", marshal.dumps(code.co_code), shape), without its generic loop
    data = b"bytecode\x00%b\x00%b\x00" % (marshal.dumps(code.co_code), shape)
    return _blake2b(data, digest_size=12).hexdigest()


def _source_hash(code: types.CodeType, filename: str) -> str:
    """The hash of the function's AST, from the disk cache while its file is unchanged."""
    stat: os.stat_result | None = None
    key = f"{filename}|{code.co_firstlineno}|{getattr(code, 'co_qualname', code.co_name)}"
    if not filename.startswith("<"):
        try:
            stat = os.stat(filename)
        except OSError:
            stat = None
        hit = SOURCE_HASHES.entries.get(key) if stat is not None else None
        if hit is not None and stat is not None and hit[:2] == [stat.st_mtime_ns, stat.st_size]:
            return str(hit[2])
    try:
        tree = ast.parse(textwrap.dedent(_source(code)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return _bytecode_hash(code)
    text = ast.dump(_Strip().visit(tree), annotate_fields=False, include_attributes=False)
    result = digest("ast", text)
    if stat is not None:
        SOURCE_HASHES.put(key, stat, result)
    return result


def load_code_cache(path: Path) -> None:
    """Merge a saved cache of source hashes (a missing or unreadable file is ignored: it is a
    cache, and every entry is checked against its file's mtime and size before use)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return
    if isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, list) and len(v) == 3 and k not in SOURCE_HASHES.entries:
                SOURCE_HASHES.entries[k] = v


def save_code_cache(path: Path) -> None:
    """Write the cache of source hashes if it gained entries (atomically; failures ignored)."""
    if not SOURCE_HASHES.dirty:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(SOURCE_HASHES.entries))
        os.replace(tmp, path)
        SOURCE_HASHES.dirty = False
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _value_token(value: Any) -> str:
    """Identify a captured value: immutable values by content, anything else by type only.

    Mutable objects (lists, dicts, connections, ...) change while a program runs, so hashing
    their content would invalidate caches for no reason; ``code_version=`` covers that case.
    """
    if isinstance(value, _CONST_TYPES):
        return repr(value)
    if isinstance(value, tuple):
        return "(" + ",".join(_value_token(v) for v in value) + ")"
    if isinstance(value, frozenset):
        return "{" + ",".join(sorted(_value_token(v) for v in value)) + "}"
    if isinstance(value, types.FunctionType):
        return code_hash(value)
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


_names_by_code: dict[int, tuple[types.CodeType, tuple[str, ...]]] = {}  # by id, as _by_code


def _names(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` (and code nested in it) may read, sorted; cached per code."""
    cached = _names_by_code.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    nested = [k for k in code.co_consts if k.__class__ is types.CodeType]
    if not nested:  # the common case: no inner functions, comprehensions or lambdas
        result = tuple(sorted(set(code.co_names))) if code.co_names else ()
        _names_by_code[id(code)] = (code, result)
        return result
    names: set[str] = set(code.co_names)
    while nested:
        c = nested.pop()
        names.update(c.co_names)
        nested.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    result = tuple(sorted(names))
    _names_by_code[id(code)] = (code, result)
    return result


def code_hash(fn: Callable[..., Any]) -> str:
    """A hash of what ``fn`` does, stable across formatting, comments and docstrings.

    Covers the function's AST, its closure values, the constants it reads from its module, and
    (transitively) the project functions it calls, so that editing a helper changes the hash of
    every step that uses it. Functions of the stdlib and installed packages are not followed.
    """
    code = getattr(fn, "__code__", None)
    if code.__class__ is types.CodeType and getattr(fn, "__closure__", None) is None:
        # the common case: no closure, and no global name it reads is defined in its module
        # (so nothing to follow): its own hash is the whole hash, as the loop below would find
        if not code.co_names:  # it reads no global name at all (nor does code nested in it?)
            for k in code.co_consts:
                if k.__class__ is types.CodeType:
                    break
            else:
                return _own_code_hash(code, fn)
        g = getattr(fn, "__globals__", None)
        if g is not None and g.keys().isdisjoint(_names(code)):
            return _own_code_hash(code, fn)
    parts: list[str] = []
    seen: set[types.CodeType] = set()
    todo: list[Callable[..., Any]] = [fn]
    while todo:
        f = todo.pop()
        code = getattr(f, "__code__", None)
        if not isinstance(code, types.CodeType) or code in seen:
            continue
        seen.add(code)
        parts.append(_own_code_hash(code, f))
        for cell in getattr(f, "__closure__", None) or ():
            try:
                parts.append(_value_token(cell.cell_contents))
            except ValueError:  # an empty cell
                parts.append("<empty>")
        g = getattr(f, "__globals__", {})
        names = _names(code)
        for name in names:
            if name not in g:
                continue
            value = g[name]
            if isinstance(value, types.FunctionType):
                if _is_project_code(value.__code__):
                    todo.append(value)
            elif isinstance(value, types.ModuleType):
                for attr in names:
                    member = getattr(value, attr, None)
                    if isinstance(member, types.FunctionType) and _is_project_code(member.__code__):
                        todo.append(member)
            elif isinstance(value, (*_CONST_TYPES, tuple, frozenset)) and not name.startswith("__"):
                parts.append(f"{name}={_value_token(value)}")
    if len(parts) == 1:  # nothing but its own code: that hash identifies it already
        return parts[0]
    return digest(*parts)
