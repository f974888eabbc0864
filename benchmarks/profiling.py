"""Profile one benchmark workload: where does flowkit spend its time per step?

    python benchmarks/profiling.py chain            # fresh run of a 10,000-step chain
    python benchmarks/profiling.py resume           # resume of it (all cached)
    python benchmarks/profiling.py fanout -n 10000  # independent no-ops on 4 threads
    python benchmarks/profiling.py chain --cprofile # cProfile (deterministic) instead

Uses pyinstrument (statistical, low overhead; ``pip install pyinstrument``) when it is installed,
cProfile otherwise. Only ``Flow.run`` is profiled: building the functions and the flow is not.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import chain_flow, chain_functions, fanout_flow, state_dir, warm_up


def profile(fn: Callable[[], Any], use_cprofile: bool) -> str:
    if not use_cprofile:
        try:
            from pyinstrument import Profiler
        except ImportError:
            use_cprofile = True
        else:
            p = Profiler(interval=0.0005)
            p.start()
            fn()
            p.stop()
            return str(p.output_text(unicode=True))
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(os.environ.get("PROFSORT", "tottime")).print_stats(30)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("workload", choices=["chain", "resume", "fanout"])
    p.add_argument("-n", type=int, default=10_000, help="steps (default 10,000)")
    p.add_argument("--cprofile", action="store_true", help="use cProfile even with pyinstrument")
    args = p.parse_args(argv)
    n = args.n
    warm_up()
    with state_dir() as d:
        if args.workload == "fanout":
            f = fanout_flow(n)
            print(profile(lambda: f.run(state_dir=d, fresh=True, workers=4), args.cprofile))
            return 0
        f = chain_flow(chain_functions(n, 1))
        if args.workload == "chain":
            print(profile(lambda: f.run(state_dir=d, fresh=True), args.cprofile))
            return 0
        f.run(state_dir=d, fresh=True)
        again = chain_flow(chain_functions(n, 2))  # new code objects: a cold code-hash cache
        print(profile(lambda: again.run(state_dir=d), args.cprofile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
