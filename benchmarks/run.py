"""Run every flowkit benchmark and print the figures.

    python benchmarks/run.py            # full figures (medians of 5 repetitions)
    python benchmarks/run.py --quick    # smoke test: small sizes, 1 repetition
    python benchmarks/run.py --big      # also the 100,000-step chain (resume, state size, depth)
    python benchmarks/run.py --parts floor,startup   # only some parts (floor, overhead,
                                                     # parallel, startup)

Every figure is a median over repetitions, next to a plain-Python baseline measured in the same
process run; ``ratio`` is flowkit / baseline and ``µs/step`` is (flowkit - baseline) / steps.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

import flowkit
from benchmarks import floor, overhead, parallel, startup
from benchmarks.harness import Row, notes, table, warm_up


def machine() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"flowkit {flowkit.__version__} at {revision()}"
    )


def revision() -> str:
    """The git commit flowkit is at (``+dirty`` with uncommitted changes under flowkit/)."""
    root = Path(flowkit.__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "flowkit"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown revision"
    return (head or "unknown revision") + ("+dirty" if dirty else "")


def load() -> str:
    """The 1-minute load average: other work on the machine disturbs wall-clock figures."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


PARTS = ("floor", "overhead", "parallel", "startup")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, 1 repetition (smoke test)")
    p.add_argument("--big", action="store_true", help="also the 100,000-step chain")
    p.add_argument("--reps", type=int, help="repetitions per figure (default 5; quick: 1)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default: all of {', '.join(PARTS)})",
    )
    args = p.parse_args(argv)
    chosen = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        p.error(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    reps = args.reps or (1 if args.quick else 5)

    print(f"flowkit benchmarks — {machine()}")
    mode = "quick (sizes reduced; absolute targets not judged)" if args.quick else "full"
    print(f"mode: {mode}{', big' if args.big else ''}; {reps} repetition(s), medians")
    print(f"load average at start: {load()} (on {os.cpu_count()} cores)\n")
    t0 = time.perf_counter()
    warm_up()
    rows: list[Row] = []
    parts: list[tuple[str, Callable[[], list[Row]]]] = [
        ("floor", partial(floor.all_rows, args.quick, args.big, reps)),
        ("overhead", partial(overhead.all_rows, args.quick, args.big, reps)),
        ("parallel", partial(parallel.all_rows, args.quick, reps)),
        ("startup", partial(startup.all_rows, max(reps, 2 if args.quick else 5))),
    ]
    for part, run in parts:
        if part not in chosen:
            continue
        t = time.perf_counter()
        rows += run()
        print(f"  [{part} done in {time.perf_counter() - t:.1f} s]", file=sys.stderr)

    print(table(rows))
    print("\nnotes:")
    print(notes(rows))
    judged = [r for r in rows if r.met is not None]
    missed = [r for r in judged if not r.met]
    print(
        f"\ntargets: {len(judged) - len(missed)}/{len(judged)} met"
        + (f"; missed: {', '.join(r.key for r in missed)}" if missed else "")
    )
    print(f"total benchmark time {time.perf_counter() - t0:.0f} s; load average at end: {load()}")
    if args.json:
        doc = {
            "machine": machine(),
            "mode": mode,
            "reps": reps,
            "rows": [{**asdict(r), "ratio": r.ratio, "met": r.met} for r in rows],
        }
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
