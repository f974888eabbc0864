"""What a cluster's workers need to run a flow: its code and its folders of scripts, as zip files.

A worker of a Dask cluster runs in a folder of its own, often on another machine, where the
pipeline module is not importable and a YAML workflow's scripts do not exist. When a run starts,
flowkit packs

* the **code**: the top-level module or package of every Python step, with every other module the
  client imported from the same folders (``helpers.py`` next to ``pipeline.py``), and
* the **folders** of workflow tasks (a YAML workflow's folder: its scripts and small files),

each into a zip whose name is the digest of its content. The Dask executor installs them on every
worker, now and on workers that join later (see :mod:`flowkit.dask_executor`). A worker that
already sees the very same files at the same paths (the same machine, or a shared file system)
uses them in place, so that data files next to the code and files one task writes for another
are where the steps expect them; any other worker uses its own copy (always, with
``FLOWKIT_SHIP_COPY=1`` in the worker's environment). Installed
packages (``site-packages``), the standard library and flowkit itself are not shipped: the
workers need them installed. Steps defined in ``__main__`` or made by factory functions are sent
by value with cloudpickle instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FlowkitError

__all__ = [
    "MAX_BYTES",
    "Bundle",
    "ShippingError",
    "code_bundle",
    "folder_bundles",
    "in_place",
    "unpack",
]

#: The most a bundle may hold: a workflow folder is shipped to every worker at each run.
MAX_BYTES = 100 * 2**20

#: Folders never shipped: state, version control, environments, caches.
SKIP_DIRS = frozenset(
    {
        ".flowkit",
        ".git",
        ".hg",
        ".venv",
        "venv",
        "__pycache__",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
    }
)

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same content has the same digest


class ShippingError(FlowkitError):
    """Something a run needs cannot be sent to the cluster's workers."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Bundle:
    """One zip to install on every worker.

    Attributes:
        name: ``flowkit-code-<digest>`` or ``flowkit-folder-<digest>`` (the folder it unpacks to).
        data: the zip file's bytes.
        modules: top-level modules to import afresh from it (empty for a folder of scripts).
        source: the folder on the client it stands for (a folder bundle), or ``""``.
        files: each file's name in the zip and its path on the client.
    """

    name: str
    data: bytes
    modules: tuple[str, ...] = ()
    source: str = ""
    files: tuple[tuple[str, str], ...] = ()

    def bases(self) -> list[str]:
        """The folders on the client the files' names are relative to (``sys.path`` entries)."""
        out: list[str] = []
        for arcname, path in self.files:
            base = path[: len(path) - len(arcname)].rstrip("/") or "/"
            if base not in out:
                out.append(base)
        return out


def _installed(path: Path) -> bool:
    """Whether ``path`` belongs to an installed distribution or the standard library."""
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return True
    for key in ("stdlib", "platstdlib"):
        lib = sysconfig.get_paths().get(key)
        if lib and path.is_relative_to(lib):
            return True
    return False


def _files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` worth shipping (caches, state and environments left out)."""
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for f in sorted(filenames):
            if not f.endswith((".pyc", ".pyo")):
                yield Path(dirpath) / f


def _zip(entries: list[tuple[Path, str]], what: str) -> bytes:
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, arcname in sorted(entries, key=lambda e: e[1]):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ShippingError(f"cannot ship {path} ({what}) to the cluster: {exc}") from None
            total += len(data)
            if total > MAX_BYTES:
                raise ShippingError(
                    f"cannot ship {what} to the cluster: it holds more than "
                    f"{MAX_BYTES // 2**20} MB. Keep data files out of it (read them from "
                    "shared storage), or install the code on the workers."
                )
            info = zipfile.ZipInfo(arcname, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (path.stat().st_mode & 0o777) << 16  # scripts stay executable
            zf.writestr(info, data)
    return buf.getvalue()


def _name(kind: str, data: bytes) -> str:
    return f"flowkit-{kind}-{hashlib.sha256(data).hexdigest()[:16]}"


def _top_root(name: str) -> tuple[Path, Path] | None:
    """(the folder on ``sys.path`` it was imported from, its file or package folder)."""
    mod = sys.modules.get(name)
    file = getattr(mod, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    root = path.parent if path.name == "__init__.py" else path
    if _installed(root) or (root.is_file() and root.suffix != ".py"):  # compiled: not ours
        return None
    return root.parent, root


def code_bundle(functions: Iterable[Any]) -> Bundle | None:
    """The modules and packages that define ``functions``, and their neighbours; None if none.

    Raises:
        ShippingError: a file cannot be read, or the bundle is too large.
    """
    flowkit_dir = Path(__file__).resolve().parent
    tops: set[str] = set()
    for fn in functions:
        module = getattr(fn, "__module__", None)
        if not isinstance(module, str):
            continue
        top = module.partition(".")[0]
        if top in ("__main__", "flowkit") or top in sys.stdlib_module_names:
            continue
        tops.add(top)
    roots = {top: r for top in tops if (r := _top_root(top)) is not None}
    if not roots:
        return None
    bases = {base for base, _ in roots.values()}
    # what the step modules import from their own folders (helpers next to the pipeline)
    for name in list(sys.modules):
        if "." in name or name in roots or name in sys.stdlib_module_names:
            continue
        r = _top_root(name)
        if r is not None and r[0] in bases and not r[1].is_relative_to(flowkit_dir):
            roots[name] = r
    entries = [
        (f, f.relative_to(base).as_posix()) for base, root in roots.values() for f in _files(root)
    ]
    what = "the flow's code (" + ", ".join(sorted(roots)) + ")"
    data = _zip(entries, what)
    files = tuple(sorted((a, str(f)) for f, a in entries))
    return Bundle(_name("code", data), data, tuple(sorted(roots)), "", files)


def folder_bundles(folders: Iterable[str]) -> list[Bundle]:
    """One bundle per folder (a folder inside another goes with it).

    Raises:
        ShippingError: a folder is missing or unreadable, or holds too much.
    """
    paths = sorted({Path(f).resolve() for f in folders})
    roots = [p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths)]
    out = []
    for root in roots:
        if not root.is_dir():
            raise ShippingError(
                f"cannot ship the folder {root} to the cluster: it does not exist "
                "(a workflow's folder)"
            )
        entries = [(f, f.relative_to(root).as_posix()) for f in _files(root)]
        data = _zip(entries, f"{root}")
        files = tuple(sorted((a, str(f)) for f, a in entries))
        out.append(Bundle(_name("folder", data), data, (), str(root), files))
    return out


def in_place(bundle: Bundle) -> bool:
    """Whether this machine sees every file of ``bundle`` at its client path, with the same
    content (the same machine, or a shared file system), and copies are not asked for."""
    if os.environ.get("FLOWKIT_SHIP_COPY", "") not in ("", "0") or not bundle.files:
        return False
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf:
        for arcname, path in bundle.files:
            try:
                with open(path, "rb") as f:
                    if f.read() != zf.read(arcname):
                        return False
            except OSError:
                return False
    return True


def unpack(bundle: Bundle, into: str) -> str:
    """Unpack ``bundle`` under the folder ``into`` (once: a second call finds it there); returns
    the folder it is in. Safe when several processes unpack the same bundle at once."""
    target = os.path.join(into, bundle.name)
    if os.path.isdir(target):
        return target
    os.makedirs(into, exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf:
        for info in zf.infolist():
            dest = os.path.join(tmp, info.filename)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(zf.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(dest, mode)
    try:
        os.rename(tmp, target)
    except OSError:  # another process was first: theirs is the same content
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target
