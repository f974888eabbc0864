"""Parallel scheduling: a fan-out of sleeping steps, and a critical path (figures 3 and 4)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

from benchmarks.harness import Fn, Row, fanout_flow, nap, repeat, state_dir, timed
from benchmarks.overhead import expect
from flowkit import Flow

SHORT, LONG, N_SHORT = 0.1, 1.0, 10


def nap_short() -> None:
    time.sleep(SHORT)


def nap_long() -> None:
    time.sleep(LONG)


def join() -> None:
    """The step after both branches."""


# --- figure 3: 64 sleeping steps on 8 threads --------------------------------------------------


def fanout_sleep(n: int, workers: int, reps: int) -> Row:
    """W3: n steps that sleep 0.05 s on ``workers`` threads; ideal n / workers × 0.05 s."""
    ideal = n / workers * 0.05
    bare: list[float] = []

    def plain() -> None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            wait([pool.submit(nap) for _ in range(n)])

    def trial() -> float:
        bare.append(timed(plain))
        f = fanout_flow(n, nap, "naps")
        with state_dir() as d:
            return timed(
                lambda: expect(f.run(state_dir=d, fresh=True, workers=workers), "succeeded", n)
            )

    eng = repeat(reps, trial)
    b = sorted(bare)[len(bare) // 2]
    return Row(
        "3",
        f"{n} × sleep 0.05 s, {workers} threads (W3)",
        eng.median,
        b,
        "bare thread pool",
        target=ideal * 1.1,
        target_text=f"≤ {ideal * 1.1:.2f} s (ideal {ideal:.2f} +10 %)",
        note=f"runs {eng.spread}; {eng.median / ideal:.3f}× the ideal {ideal:.2f} s",
    )


# --- figure 4: critical path vs tiers ----------------------------------------------------------


def branches_flow() -> Flow:
    """Branch a: 10 sequential steps of 0.1 s; branch b: one step of 1 s; then a join."""
    f = Flow("branches")
    prev: list[str] = []
    for i in range(1, N_SHORT + 1):
        f.step(name=f"a{i}", depends_on=prev)(nap_short)
        prev = [f"a{i}"]
    f.step(name="b1")(nap_long)
    f.step(name="join", depends_on=[*prev, "b1"])(join)
    return f


def _plain_critical_path() -> None:
    """The ideal with plain threads: each branch in its own thread, then the join."""

    def branch_a() -> None:
        for _ in range(N_SHORT):
            nap_short()

    threads = [threading.Thread(target=branch_a), threading.Thread(target=nap_long)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    join()


def _plain_tiers(tiers: list[list[str]], fns: dict[str, Fn], workers: int) -> None:
    """A tier-by-tier scheduler: each generation runs on the pool, with a barrier after it."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for tier in tiers:
            wait([pool.submit(fns[name]) for name in tier])


def critical_path(reps: int, workers: int = 2) -> Row:
    """Two branches and a join on 2 workers: a ready-set scheduler follows the critical path."""
    ideal: list[float] = []
    tiered: list[float] = []

    def trial() -> float:
        f = branches_flow()
        fns = {name: spec.fn for name, spec in f.steps.items()}
        ideal.append(timed(_plain_critical_path))
        tiered.append(timed(lambda: _plain_tiers(f.generations(), fns, workers)))
        with state_dir() as d:
            n = len(fns)
            return timed(
                lambda: expect(f.run(state_dir=d, fresh=True, workers=workers), "succeeded", n)
            )

    eng = repeat(reps, trial)
    mid = len(ideal) // 2
    cp, tier = sorted(ideal)[mid], sorted(tiered)[mid]
    return Row(
        "4",
        f"branches 10×0.1 s ∥ 1×1 s + join, {workers} threads",
        eng.median,
        cp,
        "plain threads",
        target=1.1,
        target_text="≈ 1.0 s (≤ 1.1)",
        note=(
            f"a tier-by-tier scheduler (plain pool, barrier per generation) took {tier:.2f} s: "
            f"flowkit is {tier / eng.median:.2f}× faster"
        ),
        extra={"tiered": tier},
    )


def all_rows(quick: bool, reps: int) -> list[Row]:
    """Figures 3 and 4."""
    return [fanout_sleep(64, 8, reps), critical_path(reps)]
