"""Start-up: ``import flowkit`` and a CLI command, each in a new interpreter (figure 6)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from functools import partial
from pathlib import Path

from benchmarks.harness import Row, repeat, timed

TINY = textwrap.dedent(
    """
    from flowkit import Flow

    tiny = Flow("tiny")


    @tiny.step()
    def a() -> int:
        return 1


    @tiny.step()
    def b(a: int) -> int:
        return a + 1
    """
)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    return timed(
        lambda: subprocess.run(
            cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    )


def heaviest_imports(top: int = 5) -> str:
    """What ``import flowkit`` pulls in from outside flowkit, heaviest first (``-X importtime``).

    Lists the modules imported directly by a flowkit module, with their cumulative time.
    """
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import flowkit"],
        capture_output=True,
        text=True,
        check=True,
    )
    entries: list[tuple[int, str, int]] = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        raw = parts[2].rstrip()
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2
        entries.append((depth, raw.strip(), int(parts[1])))
    stack: list[str] = []
    direct: dict[str, int] = {}
    for depth, name, cumulative in reversed(entries):  # importtime prints children first
        del stack[depth:]
        parent = stack[-1] if stack else ""
        if parent.startswith("flowkit") and not name.startswith("flowkit"):
            direct[name] = max(direct.get(name, 0), cumulative)
        stack.append(name)
    best = sorted(direct.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in best)


def all_rows(reps: int) -> list[Row]:
    """Figure 6: medians of ``reps`` runs each, after one untimed run of each command."""
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="flowkit-bench-") as tmp:
        cwd = Path(tmp)
        (cwd / "tiny.py").write_text(TINY)
        env = {**os.environ, "FLOWKIT_STATE_DIR": str(cwd / "state")}
        commands = {
            "pass": [py, "-c", "pass"],
            "import": [py, "-c", "import flowkit"],
            "cli": [py, "-m", "flowkit", "graph", "tiny.py:tiny"],
            "nx": [py, "-c", "import networkx, orjson"],  # the floor's imports
            "run": [py, "-m", "flowkit", "run", "tiny.py:tiny"],  # cached after the first
        }
        for cmd in commands.values():  # warm the page cache (and finish the run once)
            _run(cmd, cwd, env)
        stats = {k: repeat(reps, partial(_run, cmd, cwd, env)) for k, cmd in commands.items()}
    base = stats["pass"].median
    floor = stats["nx"].median
    return [
        Row(
            "6a",
            "python -c 'import flowkit'",
            stats["import"].median,
            base,
            "python -c pass",
            note=(
                f"import alone ≈ {(stats['import'].median - base) * 1e3:.0f} ms; heaviest "
                f"top-level imports: {heaviest_imports()}"
            ),
        ),
        Row(
            "6b",
            "python -m flowkit graph tiny.py:tiny",
            stats["cli"].median,
            floor,
            "import networkx, orjson",
            target=1.5 * floor,
            target_text="≤ 1.5× baseline",
            note=(
                f"CLI start ≈ {(stats['cli'].median - base) * 1e3:.0f} ms over a bare interpreter; "
                f"the baseline (the floor's imports) ≈ {(floor - base) * 1e3:.0f} ms over it"
            ),
        ),
        Row(
            "6c",
            "python -m flowkit run tiny.py:tiny (cached)",
            stats["run"].median,
            floor,
            "import networkx, orjson",
            target=1.5 * floor,
            target_text="≤ 1.5× baseline",
            note="a two-step flow whose steps are all cached: start, load, decide, report",
        ),
    ]
