"""Code hashes and run ids: what invalidates a cache and what does not."""

from __future__ import annotations

import importlib.util
import itertools
import json
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from flowkit.keys import code_hash, run_id_for, safe_name

_counter = itertools.count()


def _load(tmp_path: Path, source: str, helpers: str | None = None) -> ModuleType:
    """Import ``source`` as a fresh module (with an optional sibling ``helpers`` module)."""
    n = next(_counter)
    folder = tmp_path / f"m{n}"
    folder.mkdir()
    if helpers is not None:
        (folder / f"helpers{n}.py").write_text(textwrap.dedent(helpers))
        source = source.replace("import helpers", f"import helpers{n} as helpers")
    path = folder / f"pipeline{n}.py"
    path.write_text(textwrap.dedent(source))
    import sys

    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location(f"pipeline{n}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


BASE = """
def helper(x):
    return x + 1

LIMIT = 10

def step(x):
    return helper(x) * LIMIT
"""


def test_comments_docstrings_and_formatting_do_not_change_the_hash(tmp_path: Path) -> None:
    edited = """
    # a new comment at the top
    def helper(x):
        '''Now with a docstring.'''
        return x + 1   # and a trailing comment

    LIMIT = 10

    def step( x ):
        \"\"\"Documented.\"\"\"
        return   helper(x)*LIMIT
    """
    a = _load(tmp_path, BASE)
    b = _load(tmp_path, edited)
    assert code_hash(a.step) == code_hash(b.step)


def test_editing_a_called_helper_changes_the_hash(tmp_path: Path) -> None:
    a = _load(tmp_path, BASE)
    b = _load(tmp_path, BASE.replace("return x + 1", "return x + 2"))
    assert code_hash(a.step) != code_hash(b.step)


def test_editing_a_helper_in_a_sibling_module_changes_the_hash(tmp_path: Path) -> None:
    src = """
    import helpers

    def step(x):
        return helpers.clean(x)
    """
    a = _load(tmp_path, src, helpers="def clean(x):\n    return x.strip()\n")
    b = _load(tmp_path, src, helpers="def clean(x):\n    return x.strip().lower()\n")
    same = _load(tmp_path, src, helpers="def clean(x):\n    # tidy\n    return x.strip()\n")
    assert code_hash(a.step) != code_hash(b.step)
    assert code_hash(a.step) == code_hash(same.step)


def test_changing_a_module_constant_the_step_reads_changes_the_hash(tmp_path: Path) -> None:
    a = _load(tmp_path, BASE)
    b = _load(tmp_path, BASE.replace("LIMIT = 10", "LIMIT = 11"))
    unrelated = _load(tmp_path, BASE + "\nOTHER = 5\n")
    assert code_hash(a.step) != code_hash(b.step)
    assert code_hash(a.step) == code_hash(unrelated.step)


def test_installed_packages_are_not_followed(tmp_path: Path) -> None:
    src = """
    import json

    def step(x):
        return json.dumps(x)
    """
    a = _load(tmp_path, src)
    b = _load(tmp_path, src)
    assert code_hash(a.step) == code_hash(b.step)
    assert json.dumps  # the stdlib function exists but is not part of the hash


def test_factory_closures_with_different_values_never_share_a_hash() -> None:
    def make(table: str, limit: int) -> Any:
        def load() -> str:
            return f"select * from {table} limit {limit}"

        return load

    assert code_hash(make("users", 10)) != code_hash(make("orders", 10))
    assert code_hash(make("users", 10)) != code_hash(make("users", 11))
    assert code_hash(make("users", 10)) == code_hash(make("users", 10))


def test_mutable_closure_contents_do_not_change_the_hash() -> None:
    seen: list[int] = []

    def step() -> None:
        seen.append(1)

    before = code_hash(step)
    seen.extend([1, 2, 3])
    assert code_hash(step) == before


def test_recursive_helpers_terminate(tmp_path: Path) -> None:
    src = """
    def ping(n):
        return pong(n - 1) if n else 0

    def pong(n):
        return ping(n - 1) if n else 1

    def step():
        return ping(5)
    """
    m = _load(tmp_path, src)
    assert len(code_hash(m.step)) == 24


def test_run_id_depends_on_flow_and_params_only() -> None:
    assert run_id_for("daily", {}) == "daily"
    a = run_id_for("daily", {"date": "2026-11-24"})
    b = run_id_for("daily", {"date": "2026-11-25"})
    assert a != b and a.startswith("daily-")
    assert run_id_for("daily", {"a": 1, "b": 2}) == run_id_for("daily", {"b": 2, "a": 1})


def test_safe_name_keeps_simple_names_and_disambiguates_others() -> None:
    assert safe_name("load[batch=3]") == "load[batch=3]"
    weird = safe_name("a/b")
    assert "/" not in weird and weird != safe_name("a_b")


def test_saved_source_hashes_are_reused_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    import os

    from flowkit import keys

    src = tmp_path / "cached_mod.py"
    src.write_text("def step(x):\n    return x + 1\n")
    cache = tmp_path / "code-hashes.json"

    def fresh_hash() -> str:
        keys._by_code.clear()  # as in a new process
        spec = importlib.util.spec_from_file_location("cached_mod", src)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return code_hash(module.step)

    first = fresh_hash()
    keys.save_code_cache(cache)
    entries = json.loads(cache.read_text())
    assert any(k.startswith(str(src)) for k in entries)
    keys.SOURCE_HASHES.entries.clear()
    keys.load_code_cache(cache)
    assert fresh_hash() == first
    # same size, new content: the mtime moves, the saved hash must not be used
    src.write_text("def step(x):\n    return x + 2\n")
    os.utime(src, ns=(1, os.stat(cache).st_mtime_ns + 10**9))
    assert fresh_hash() != first
