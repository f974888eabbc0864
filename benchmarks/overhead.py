"""Per-step overhead, durability, resume and deep graphs (figures 1, 2 and 5 of the README)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import orjson

from benchmarks.harness import (
    Fn,
    Row,
    chain_flow,
    chain_functions,
    dir_size,
    fanout_flow,
    fmt_value,
    median,
    noop,
    plain_chain,
    repeat,
    state_dir,
    timed,
    timed_cpu,
)
from flowkit import Flow, RunResult

_variants = itertools.count(1)


def _variant() -> int:
    """A new line offset per built chain: fresh code objects, so code hashing starts cold."""
    return next(_variants)


def expect(result: RunResult, status: str, n: int) -> RunResult:
    """Fail loudly if a benchmark run did not do what it is supposed to measure."""
    counts = result.counts()
    if counts.get(status) != n:
        raise RuntimeError(f"{result.flow}: expected {n} steps {status}, got {counts}")
    return result


def _us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def _run(f: Flow, d: Path, status: str, n: int, **kwargs: Any) -> Callable[[], RunResult]:
    """A thunk that runs ``f`` and checks that all ``n`` steps ended ``status``."""
    return lambda: expect(f.run(state_dir=d, **kwargs), status, n)


# --- figure 1: a linear chain, sequential, checkpointing on ------------------------------------


def chain_overhead(n: int, reps: int, key: str, label: str, target: float | None) -> list[Row]:
    """W1: engine run of an n-step chain vs a plain loop over the same functions.

    Engine time is ``Flow.run`` on a freshly registered flow: it includes validating the graph
    (networkx), hashing each step's code (cold cache), journalling every step, the snapshot and
    the report. Registration (``flow.step(...)`` per function) is reported on its own row.
    """
    register: list[float] = []
    plain: list[float] = []
    cpu: list[float] = []

    def trial() -> float:
        fns = chain_functions(n, _variant())
        plain.append(timed(lambda: plain_chain(fns)))
        flows: list[Flow] = []
        register.append(timed(lambda: flows.append(chain_flow(fns))))
        f = flows[0]
        with state_dir() as d:
            results: list[RunResult] = []
            t = timed_cpu(lambda: results.append(f.run(state_dir=d, fresh=True)), cpu)
        expect(results[0], "succeeded", n)
        assert results[0].steps[f"s{n - 1}"].output == 0
        return t

    eng = repeat(reps, trial)
    floor, reg = median(plain), median(register)
    return [
        Row(
            key,
            label,
            eng.median,
            floor,
            "plain loop",
            n=n,
            per_step_us=_us(eng.median - floor, n),
            target=target,
            target_of="per_step",
            target_text=f"≤ {target:g} µs/step" if target is not None else "",
            note=(
                f"runs {eng.spread}; CPU {_us(median(cpu), n):.1f} µs/step; includes graph "
                "validation and cold code hashing"
            ),
        ),
        Row(
            key + "r",
            f"register {n:,} steps (flow.step per fn)",
            reg,
            n=n,
            per_step_us=_us(reg, n),
            note="definition-time cost, not part of the run figure above",
        ),
    ]


def _module_chain(n: int, folder: Path, variant: int) -> list[Fn]:
    """The chain's functions defined in a real ``.py`` file, so their source can be read.

    flowkit caches code hashes by code object, and code objects compare equal across modules
    when their code and line numbers are equal: ``variant`` shifts the lines, as in
    :func:`benchmarks.harness.chain_functions`, so every repetition hashes cold.
    """
    name = f"flowkit_bench_chain_{variant}"
    path = folder / f"{name}.py"
    body = ["\n" * variant, "def s0():\n    return 0\n"]  # new line numbers: cold hashes
    body += [f"def s{i}(s{i - 1}):\n    return s{i - 1}\n" for i in range(1, n)]
    path.write_text("".join(body))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return [getattr(module, f"s{i}") for i in range(n)]


def chain_from_source(n: int, reps: int) -> Row:
    """The chain again, with functions from a file: flowkit hashes their source (AST)."""
    plain: list[float] = []
    cpu: list[float] = []

    def trial() -> float:
        with state_dir() as d:
            fns = _module_chain(n, d, _variant())
            plain.append(timed(lambda: plain_chain(fns)))
            f = chain_flow(fns)
            return timed_cpu(_run(f, d, "succeeded", n, fresh=True), cpu)

    eng = repeat(reps, trial)
    floor = median(plain)
    return Row(
        "1s",
        f"chain {n:,}, functions from a .py file",
        eng.median,
        floor,
        "plain loop",
        n=n,
        per_step_us=_us(eng.median - floor, n),
        note=(
            f"CPU {_us(median(cpu), n):.1f} µs/step; as 1a, but the source of each function can "
            "be read, so the cold code hash parses its AST"
        ),
    )


def _fsync_loop(fns: list[Fn], path: Path) -> None:
    """The durability floor: the plain loop, plus one JSON line written, flushed, fsynced."""
    with open(path, "ab") as j:
        it = iter(fns)
        value = next(it)()
        for fn in it:
            value = fn(value)
            j.write(orjson.dumps({"step": fn.__name__, "out": value}) + b"\n")
            j.flush()
            os.fsync(j.fileno())


def fsync_chain(n: int, reps: int) -> Row:
    """The chain with ``durability="fsync"``: one fsync per step (nothing finishes together)."""
    raw: list[float] = []
    flush: list[float] = []

    def trial() -> float:
        with state_dir() as d:
            fns = chain_functions(n, _variant())
            raw.append(timed(lambda: _fsync_loop(fns, d / "raw.jsonl")))
            g = chain_flow(chain_functions(n, _variant()))
            flush.append(timed(_run(g, d, "succeeded", n, fresh=True)))
            f = chain_flow(fns)
            return timed(_run(f, d, "succeeded", n, fresh=True, durability="fsync"))

    eng = repeat(reps, trial)
    floor, fl = median(raw), median(flush)
    return Row(
        "1b",
        f"chain {n:,}, durability=fsync",
        eng.median,
        floor,
        "loop + fsync/step",
        n=n,
        per_step_us=_us(eng.median - floor, n),
        note=(
            f"an fsync on this disk ≈ {_us(floor, n):.0f} µs; fsync mode costs "
            f"{_us(eng.median - fl, n):.0f} µs/step more than flush mode ({fmt_value(fl)})"
        ),
        extra={"fsync_us": _us(floor, n)},
    )


def fsync_parallel(n: int, workers: int, reps: int) -> Row:
    """n independent no-ops on thread workers, fsync vs flush: group commit at work."""
    flush: list[float] = []

    def trial() -> float:
        with state_dir() as d:
            flush.append(
                timed(_run(fanout_flow(n), d, "succeeded", n, fresh=True, workers=workers))
            )
            g = fanout_flow(n)
            return timed(
                _run(g, d, "succeeded", n, fresh=True, workers=workers, durability="fsync")
            )

    eng = repeat(reps, trial)
    fl = median(flush)
    return Row(
        "1c",
        f"{n:,} independent, {workers} threads, fsync",
        eng.median,
        fl,
        "same, flush mode",
        n=n,
        per_step_us=_us(eng.median - fl, n),
        note="µs/step: what fsync adds over flush mode (steps finishing together share an fsync)",
    )


# --- figure 2: resume --------------------------------------------------------------------------


def _load_floor(d: Path) -> float:
    """Read every state file and parse it with orjson: the I/O floor of loading a run's state."""

    def load() -> None:
        for p in d.rglob("*"):
            if p.suffix == ".jsonl":
                for line in p.read_bytes().splitlines():
                    orjson.loads(line)
            elif p.suffix == ".json":
                orjson.loads(p.read_bytes())

    return timed(load)


def _minimal_journal_mb(n: int) -> float:
    return sum(len(orjson.dumps({"step": f"s{i}", "out": 0})) + 1 for i in range(n)) / 1e6


def resume(
    n: int,
    reps: int,
    key: str,
    target: float | None,
    size_target: float | None,
    *,
    from_file: bool = False,
) -> list[Row]:
    """Re-run a finished n-step chain: every step is restored from the journal.

    Each resume uses a brand-new Flow built from brand-new function objects (same code), so it
    pays what a resuming process pays after its imports: graph validation, cold code hashing,
    loading the state, deciding and journalling each step as cached. ``from_file``: the
    functions come from ``.py`` files (their source is hashed) instead of ``exec``.
    """
    floor: list[float] = []
    graph: list[float] = []
    sizes: list[float] = []
    fresh_runs: list[float] = []
    plain: list[float] = []
    cpu: list[float] = []

    def trial() -> float:
        with state_dir() as d, state_dir() as src:

            def make() -> list[Fn]:
                v = _variant()
                return _module_chain(n, src, v) if from_file else chain_functions(n, v)

            fns = make()
            plain.append(timed(lambda: plain_chain(fns)))
            fresh_runs.append(timed(_run(chain_flow(fns), d, "succeeded", n, fresh=True)))
            sizes.append(dir_size(d) / 1e6)
            floor.append(_load_floor(d))
            probe = chain_flow(make())
            graph.append(timed(probe.graph))
            again = chain_flow(make())
            results: list[RunResult] = []
            t = timed_cpu(lambda: results.append(_run(again, d, "cached", n)()), cpu)
            assert results[0].steps[f"s{n - 1}"].output == 0
            return t

    eng = repeat(reps, trial)
    rows = [
        Row(
            key,
            f"resume finished chain {n:,}{', .py file' if from_file else ''} (all cached)",
            eng.median,
            median(floor),
            "orjson-load state",
            n=n,
            per_step_us=_us(eng.median, n),
            target=target,
            target_text=f"≤ {target:g} s" if target is not None else "",
            note=(
                f"resumes {eng.spread}; CPU {median(cpu):.3f} s; of which graph validation ≈ "
                f"{median(graph):.3f} s (new Flow, new functions: as in a new process)"
            ),
        ),
        Row(
            key + "s",
            f"state on disk, chain {n:,}",
            median(sizes),
            _minimal_journal_mb(n),
            "1 JSON line/step",
            n=n,
            unit="MB",
            target=size_target,
            target_text=f"≤ {size_target:g} MB" if size_target is not None else "",
            note=(
                "after the first run: journal + snapshot + report; baseline: one "
                '{"step", "out"} line per step'
            ),
        ),
    ]
    if n >= 100_000:
        fr, pl = median(fresh_runs), median(plain)
        rows.append(
            Row(
                key + "f",
                f"deep chain {n:,}: fresh run",
                fr,
                pl,
                "plain loop",
                n=n,
                per_step_us=_us(fr - pl, n),
                note=(
                    f"built, validated, run and resumed at the default recursion limit "
                    f"({sys.getrecursionlimit()}): no RecursionError"
                ),
            )
        )
    return rows


# --- figure 5: independent steps on pools ------------------------------------------------------


def _bare_pool(pool: Executor, n: int) -> None:
    with pool:
        wait([pool.submit(noop) for _ in range(n)])


def pool_overhead(kind: str, n: int, workers: int, reps: int, key: str) -> Row:
    """n independent no-ops on flowkit's ``kind`` executor vs the same bare stdlib pool.

    Both sides create and shut down their pool inside the timed region (flowkit does so in run).
    """
    bare: list[float] = []
    loop: list[float] = []

    def make() -> Executor:
        if kind == "thread":
            return ThreadPoolExecutor(max_workers=workers)
        return ProcessPoolExecutor(max_workers=workers)

    def trial() -> float:
        fns = [noop] * n
        loop.append(timed(lambda: [fn() for fn in fns]))
        bare.append(timed(lambda: _bare_pool(make(), n)))
        f = fanout_flow(n)
        with state_dir() as d:
            return timed(_run(f, d, "succeeded", n, fresh=True, workers=workers, executor=kind))

    eng = repeat(reps, trial)
    b, lp = median(bare), median(loop)
    return Row(
        key,
        f"{n:,} independent no-ops, {workers} {kind} workers",
        eng.median,
        b,
        f"bare {kind} pool",
        n=n,
        per_step_us=_us(eng.median - b, n),
        note=(
            f"runs {eng.spread}; µs/step over the bare pool (all submitted at once); over a "
            f"plain loop ({fmt_value(lp)}): {_us(eng.median - lp, n):.0f} µs/step"
        ),
    )


def dask_overhead(n: int, workers: int, reps: int, key: str) -> Row | None:
    """n independent no-ops on an already running LocalCluster: flowkit vs the bare executor.

    The cluster starts once, outside the timed region (with ``--executor dask --address``, users
    reuse a running cluster the same way). None when ``distributed`` is not installed.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return None
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    bare: list[float] = []
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            processes=True,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        address = cluster.scheduler_address

        def trial() -> float:
            bare.append(timed(lambda: _bare_pool(client.get_executor(pure=False), n)))
            f = fanout_flow(n)
            with state_dir() as d:
                return timed(
                    _run(
                        f,
                        d,
                        "succeeded",
                        n,
                        fresh=True,
                        workers=workers,
                        executor="dask",
                        address=address,
                    )
                )

        eng = repeat(reps, trial)
    b = median(bare)
    return Row(
        key,
        f"{n:,} independent no-ops, {workers} Dask workers",
        eng.median,
        b,
        "bare Dask executor",
        n=n,
        per_step_us=_us(eng.median - b, n),
        note=f"runs {eng.spread}; a running LocalCluster (start-up not counted); µs/step over "
        "the bare client executor, all submitted at once",
    )


def all_rows(quick: bool, big: bool, reps: int) -> list[Row]:
    """Figures 1, 2 and 5 (and the 100k-step chain with ``big``)."""
    n = 1_000 if quick else 10_000
    rows: list[Row] = []
    rows += chain_overhead(n, reps, "1a", f"chain {n:,} no-ops, sequential", 25.0)
    if n != 1_000:
        rows += chain_overhead(1_000, reps, "1p", "chain 1,000 (PEERS W1 size)", None)[:1]
    rows.append(chain_from_source(1_000, reps))
    chain_fsync = fsync_chain(100 if quick else 1_000, reps)
    group = fsync_parallel(200 if quick else 1_000, 8, reps)
    if group.per_step_us is not None and group.per_step_us > 0:
        per = chain_fsync.extra["fsync_us"] / group.per_step_us
        group.note += f"; ≈ {per:.1f} steps per fsync if an fsync costs as in 1b"
    rows += [chain_fsync, group]
    rows += resume(n, reps, "2a", None if quick else 0.5, None)
    if n != 1_000:
        rows += resume(1_000, reps, "2p", None, None)[:1]
    rows += resume(1_000, reps, "2f", None, None, from_file=True)[:1]
    if big:
        rows += resume(100_000, max(1, min(reps, 3)), "2b", 3.0, 50.0)
    rows.append(pool_overhead("thread", n, 4, reps, "5a"))
    rows.append(pool_overhead("process", 200 if quick else 1_000, 2, reps, "5b"))
    dask_row = dask_overhead(100 if quick else 500, 2, min(reps, 3), "5c")
    if dask_row is not None:
        rows.append(dask_row)
    return rows
