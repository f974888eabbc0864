"""The floor: the design card done in the fewest lines, measured beside flowkit in one run.

A minimal checkpointing engine: a networkx DiGraph, a topological sort, each step called with its
upstream's value, one orjson line appended and flushed per finished step. Its resume replays that
journal and skips the steps it names. flowkit does much more per step (cache keys, validation,
retries, events, reports); these rows say how many times the floor's cost that is, so the figure
does not drift with the machine.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import networkx as nx
import orjson

from benchmarks.harness import (
    Fn,
    Row,
    chain_flow,
    chain_functions,
    median,
    plain_chain,
    repeat,
    state_dir,
    timed,
)
from benchmarks.overhead import _run, _variant


def floor_run(fns: list[Fn], journal: Path) -> dict[str, Any]:
    """Run the steps in dependency order, journalling each; skip those the journal names."""
    by_name = {fn.__name__: fn for fn in fns}
    g: nx.DiGraph[str] = nx.DiGraph()
    for name, fn in by_name.items():
        g.add_node(name)
        code = fn.__code__
        for dep in code.co_varnames[: code.co_argcount]:
            g.add_edge(dep, name)
    outputs: dict[str, Any] = {}
    if journal.exists():  # resume: replay the journal
        for line in journal.read_bytes().splitlines():
            rec = orjson.loads(line)
            outputs[rec["step"]] = rec["out"]
    with open(journal, "ab") as j:
        for name in nx.topological_sort(g):
            if name in outputs:
                continue
            fn = by_name[name]
            outputs[name] = fn(*(outputs[d] for d in g.predecessors(name)))
            j.write(orjson.dumps({"step": name, "out": outputs[name]}) + b"\n")
            j.flush()
    return outputs


def vs_floor(n: int, reps: int, key: str, run_target: float, resume_target: float) -> list[Row]:
    """A chain of ``n`` steps: flowkit's run and cached resume, each ÷ the floor's, same trial."""
    plain: list[float] = []
    floor: list[float] = []
    replay: list[float] = []
    resumed: list[float] = []

    def trial() -> float:
        fns = chain_functions(n, _variant())
        plain.append(timed(lambda: plain_chain(fns)))
        with state_dir() as d:
            journal = d / "floor.jsonl"
            floor.append(timed(lambda: floor_run(fns, journal)))
            replay.append(timed(lambda: floor_run(fns, journal)))
        with state_dir() as d:
            t = timed(_run(chain_flow(fns), d, "succeeded", n, fresh=True))
            again = chain_flow(chain_functions(n, _variant()))  # new functions: a new process
            resumed.append(timed(_run(again, d, "cached", n)))
        return t

    eng = repeat(reps, trial)
    base = median(plain)
    floor_step = median(floor) - base
    flowkit_step = eng.median - base
    return [
        Row(
            key,
            f"chain {n:,}: run overhead per step ÷ the floor's",
            flowkit_step / floor_step,
            unit="×",
            n=n,
            target=run_target,
            target_text=f"≤ {run_target:g}×",
            note=(
                f"flowkit {flowkit_step / n * 1e6:.1f} µs/step over a plain loop, the floor "
                f"{floor_step / n * 1e6:.1f} (networkx sort + one orjson line flushed per step)"
            ),
        ),
        Row(
            key + "r",
            f"chain {n:,}: cached resume ÷ the floor's replay",
            median(resumed) / median(replay),
            unit="×",
            n=n,
            target=resume_target,
            target_text=f"≤ {resume_target:g}×",
            note=(
                f"flowkit {median(resumed):.3f} s (new Flow, new functions), the floor "
                f"{median(replay):.3f} s (replay the journal, skip every step)"
            ),
        ),
    ]


def memory_per_step(n: int, key: str, target: float) -> Row:
    """Bytes per step a finished run holds (its RunResult and anything still alive), and the
    peak during the run, traced by ``tracemalloc`` over an ``n``-step chain."""
    fns = chain_functions(n, _variant())
    flow = chain_flow(fns)
    flow.graph()  # registration and the graph are the flow's, not the run's
    with state_dir() as d:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            result = flow.run(state_dir=d, fresh=True)
            held, peak = tracemalloc.get_traced_memory()
            del result
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    return Row(
        key,
        f"chain {n:,}: memory a finished run holds per step",
        (held - after) / n,
        unit="B",
        n=n,
        target=target,
        target_text=f"≤ {target:g} B",
        note=f"peak during the run {(peak - base) / n:.0f} B/step (tracemalloc)",
    )


def all_rows(quick: bool, big: bool, reps: int) -> list[Row]:
    """The floor rows: 10,000 steps (1,000 quick), and 100,000 with ``big``."""
    rows = vs_floor(1_000 if quick else 10_000, reps, "0a", 4.0, 4.0)
    rows.append(memory_per_step(1_000 if quick else 10_000, "0m", 1024.0))
    if big:
        rows += vs_floor(100_000, max(1, min(reps, 3)), "0b", 4.0, 4.0)
    return rows
