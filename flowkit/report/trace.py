"""Tracebacks as a report shows them: the user's frames only.

A stored traceback already leaves out flowkit's frames and the pools that ran the step, but it
keeps the standard library's (``json/decoder.py`` under the user's ``json.loads``), and older
journals, shell steps and remote workers may hold anything. :func:`user_frames` drops the frames
of flowkit and of the standard library and keeps every other line, the exception lines above
all. The step's log keeps the whole traceback.
"""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

__all__ = ["is_library_frame", "user_frames"]

_FRAME = re.compile(r'^(\s*)File "([^"]*)", line \d+')
_OWN = str(Path(__file__).resolve().parents[1]) + "/"
_STDLIB = tuple(
    {p.rstrip("/") + "/" for k in ("stdlib", "platstdlib") if (p := sysconfig.get_paths().get(k))}
)
# a Python installation elsewhere (a Dask worker, another interpreter): .../lib/python3.X/...
_ANY_STDLIB = re.compile(r"[\\/]lib[\\/]python3\.\d+[\\/](?!site-packages|dist-packages)")
_ANY_OWN = re.compile(r"[\\/](?:site|dist)-packages[\\/]flowkit[\\/]")


def is_library_frame(filename: str) -> bool:
    """A frame of flowkit itself or of Python's standard library (``<frozen ...>`` too)."""
    if filename.startswith("<frozen ") or filename.startswith(_OWN):
        return True
    if any(filename.startswith(p) for p in _STDLIB):
        return "-packages/" not in filename
    return bool(_ANY_STDLIB.search(filename) or _ANY_OWN.search(filename))


def user_frames(tb: str) -> str:
    """``tb`` without the frames of flowkit and the standard library; each run of dropped frames
    is replaced by one line that says how many were left out."""
    lines = tb.rstrip("\n").split("\n")
    out: list[str] = []
    dropped = 0
    i = 0
    while i < len(lines):
        m = _FRAME.match(lines[i])
        if m is None:
            if dropped:
                out.append(_left_out(dropped))
                dropped = 0
            out.append(lines[i])
            i += 1
            continue
        depth = len(m.group(1))
        j = i + 1  # the frame's own lines: its source line and the ^^^ markers, indented deeper
        while j < len(lines) and _depth(lines[j]) > depth and not _FRAME.match(lines[j]):
            j += 1
        if is_library_frame(m.group(2)):
            dropped += 1
        else:
            if dropped:
                out.append(_left_out(dropped))
                dropped = 0
            out.extend(lines[i:j])
        i = j
    if dropped:
        out.append(_left_out(dropped))
    return "\n".join(out)


def _left_out(n: int) -> str:
    return f"  [{n} frame{'s' if n != 1 else ''} of flowkit or the standard library left out]"


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip(" ")) if line.strip() else 1 << 30
